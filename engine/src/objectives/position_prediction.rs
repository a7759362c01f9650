//! Position prediction (MP3).
//!
//! Zhai et al. 2022, "Position Prediction as an Effective Pretraining Strategy" (MP3). The
//! input carries no position embedding; a classifier over `seq_len` classes predicts every
//! token's position; optionally a ratio of the keys is masked out of attention so the task
//! cannot be solved from every neighbour.
//!
//! Text differs from MP3's image patches in one way that matters: a bidirectional transformer
//! without positions is permutation-equivariant, so two equal characters would get the same
//! answer whatever their place. We therefore use the causal mask, which breaks that symmetry
//! (a token can count what precedes it; Haviv et al. 2022 show causal models without position
//! embeddings learn positions this way).

use super::denoising::choose_positions;
use super::{Alignment, Question, Context, Mark, Objective, ObjectiveInfo, ParamInfo, Prepared, every_position_asked};
use crate::data::CleanBatch;
use crate::model::{AttentionMode, Head};
use crate::rng::Rng;

pub struct PositionPrediction;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "position_prediction",
    name: "position prediction (MP3)",
    paper: "Zhai et al. 2022 (MP3)",
    definition: "no position embedding in the input; classify every token's position among seq_len classes; optionally mask a ratio of the keys from attention (causal mask, see the file's notes)",
    explanation: "The model is not told where each character stands. It must work out, for every \
        character, its position in the window, from what it can see. To do so it has to learn \
        how text is put together; hiding some keys from attention makes the puzzle harder.",
    generates: false,
    asks: "names each character's position, which it is not told",
    alignment: Alignment::InputOnly,
    params: &[ParamInfo::number("key_mask", "share of keys hidden from attention", 0.0, 0.9, 0.0, 0.05, "MP3 masks keys to make the task harder")],
};

impl Objective for PositionPrediction {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let ratio = ctx.param(&INFO, "key_mask");
        let inputs = clean.inputs();
        let attention = if ratio > 0.0 {
            let mut visible = vec![true; b * s];
            for r in 0..b {
                let n = ((s as f64) * ratio).round() as usize;
                for k in choose_positions(s, n, rng) {
                    visible[r * s + k] = false;
                }
            }
            AttentionMode::KeyMask { causal: true, seq: s, visible }
        } else {
            AttentionMode::Causal
        };
        let mut p = Prepared::new(b, s, inputs, attention);
        if let AttentionMode::KeyMask { visible, .. } = &p.attention {
            for (m, v) in p.marks.iter_mut().zip(visible) {
                if !v {
                    *m = Mark::HiddenKey;
                }
            }
        }
        p.use_positions = false;
        p.head = Head::Position;
        p.targets = (0..b).flat_map(|_| 0..s as i32).collect();
        assert!(s <= ctx.block_size, "positions are classes of the position head");
        p
    }

    /// Every typed character is asked its position, with no position embedding, as in
    /// training (no keys hidden); here the right answers are known.
    fn question(&self, text: &[Option<u32>], _ctx: &Context) -> Option<Result<Question, String>> {
        Some(every_position_asked(text, "position prediction", AttentionMode::Causal).map(|mut p| {
            p.use_positions = false;
            p.head = Head::Position;
            p.targets = (0..p.seq as i32).collect();
            Question::Read(p)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::{clean_batch, with_context};
    use crate::objectives::{ParamValue, Params};

    proptest::proptest! {
        /// No position embedding is passed; the target of position i is i; the masked-key
        /// ratio is exact per row.
        #[test]
        fn targets_are_positions_and_no_position_embedding(batch in 1usize..5, seq in 2usize..64, ratio in 0.0f64..0.9, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            let params: Params = [("key_mask".to_string(), ParamValue::Number(ratio))].into();
            with_context(&params, |ctx| {
                let p = PositionPrediction.prepare(&clean, ctx, &mut Rng::seeded(seed));
                assert!(!p.use_positions);
                assert_eq!(p.head, Head::Position);
                for r in 0..batch {
                    assert_eq!(p.row_targets(r), &(0..seq as i32).collect::<Vec<_>>()[..]);
                    assert_eq!(p.row_inputs(r), &clean.row(r)[..seq]);
                    let hidden = p.row_marks(r).iter().filter(|&&m| m == Mark::HiddenKey).count();
                    assert_eq!(hidden, ((seq as f64) * ratio).round() as usize);
                }
            });
        }
    }
}
