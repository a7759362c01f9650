//! Contrastive pretraining (InfoNCE over two views of each row).
//!
//! "A Primer on Contrastive Pretraining in Language Processing" (Rethmeier & Augenstein 2023);
//! SimCSE (Gao et al. 2021: two dropout views of the same sentence); E2S2 and span-level
//! variants (random span crops). Each row becomes two views; a pooled projection of each view
//! must pick out the other view of the same row among all views in the batch (InfoNCE with
//! temperature τ).

use super::{Alignment, Context, Objective, ObjectiveInfo, ParamInfo, Prepared};
use crate::data::CleanBatch;
use crate::model::{AttentionMode, Head};
use crate::rng::Rng;

pub struct Contrastive;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "contrastive",
    name: "contrastive (InfoNCE, SimCSE)",
    paper: "Rethmeier & Augenstein 2023 (primer); Gao et al. 2021 (SimCSE); E2S2",
    definition: "two views per row (dropout noise, or random span crops); InfoNCE over the batch with temperature τ on pooled, projected representations",
    explanation: "Each piece of text is shown twice, slightly changed: with random dropout noise, \
        or as two overlapping crops. The model turns each view into one vector and must match \
        the two views of the same text against all the other texts in the batch. It learns \
        what a whole passage is about rather than the next character.",
    generates: false,
    asks: "",
    alignment: Alignment::Moved,
    params: &[
        ParamInfo::number("temperature", "temperature τ", 0.02, 1.0, 0.1, 0.01, "SimCSE uses 0.05"),
        ParamInfo::number("view", "views: dropout (0) or span crops (1)", 0.0, 1.0, 0.0, 1.0, "SimCSE: dropout; span-level methods: crops"),
        ParamInfo::number("dropout", "dropout of the dropout view", 0.0, 0.5, 0.1, 0.01, "SimCSE's standard dropout 0.1"),
        ParamInfo::number("crop", "crop length (share of the row)", 0.3, 0.9, 0.6, 0.05, "both crops have this length"),
    ],
};

impl Objective for Contrastive {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let crops = ctx.param(&INFO, "view") >= 0.5;
        // Views: rows 0..b are the first view of each clean row, rows b..2b the second.
        let (len, inputs) = if crops {
            let len = ((s as f64 * ctx.param(&INFO, "crop")).round() as usize).clamp(2.min(s), s);
            let mut views = vec![Vec::new(); 2];
            for view in views.iter_mut() {
                for r in 0..b {
                    let start = rng.below(s - len + 1);
                    view.extend_from_slice(&clean.row(r)[start..start + len]);
                }
            }
            (len, views.concat())
        } else {
            let one = clean.inputs();
            (s, [one.clone(), one].concat())
        };
        let mut p = Prepared::new(2 * b, len, inputs, AttentionMode::Bidirectional);
        p.head = Head::Projection;
        p.positives = (0..2 * b).map(|r| (r + b) % (2 * b)).collect();
        p.temperature = ctx.param(&INFO, "temperature");
        p.embed_dropout = if crops { 0.0 } else { ctx.param(&INFO, "dropout") };
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::{clean_batch, with_context};
    use crate::objectives::{ParamValue, Params};

    proptest::proptest! {
        /// Row r's positive is the other view of the same clean row; both views come from it.
        #[test]
        fn positives_are_the_two_views_of_one_row(batch in 1usize..6, seq in 4usize..48, crops in 0u8..2, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            let params: Params = [("view".to_string(), ParamValue::Number(crops as f64))].into();
            with_context(&params, |ctx| {
                let p = Contrastive.prepare(&clean, ctx, &mut Rng::seeded(seed));
                assert_eq!(p.batch, 2 * batch);
                for r in 0..2 * batch {
                    let q = p.positives[r];
                    assert_ne!(q, r);
                    assert_eq!(p.positives[q], r, "positives pair up");
                    assert_eq!(q % batch, r % batch, "both views come from the same clean row");
                    let row = clean.row(r % batch);
                    let view = p.row_inputs(r);
                    assert!(row.windows(view.len()).any(|w| w == view), "a view is a piece of its row");
                }
                if crops == 0 {
                    assert!(p.embed_dropout > 0.0, "dropout views differ by dropout noise");
                }
            });
        }
    }
}
