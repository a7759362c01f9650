//! Swapped language modelling (SLM).
//!
//! From "Structural Self-Supervised Objectives for Transformers" (Di Liello, 2023): replace
//! ~15% of the tokens with random tokens, never with `[MASK]`, and predict the original token
//! at those positions. The model is never shown a token that does not occur in real text.

use super::denoising::{choose_positions, random_other_char, rate_count};
use super::{Alignment, Question, Context, Mark, Objective, ObjectiveInfo, ParamInfo, Prepared, every_position_asked};
use crate::data::CleanBatch;
use crate::model::AttentionMode;
use crate::rng::Rng;

pub struct SwappedLm;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "swapped_lm",
    name: "swapped LM (SLM)",
    paper: "Di Liello 2023, \"Structural Self-Supervised Objectives for Transformers\"",
    definition: "replace ~15% of tokens with random tokens (no [MASK]); predict the original token at those positions; bidirectional attention",
    explanation: "Some characters are swapped for random other characters, with no [MASK] \
        token to say where. The model sees the whole text in both directions and is scored on \
        restoring the originals where swaps happened, so it must notice which characters do \
        not fit before it can fix them.",
    generates: false,
    asks: "names the character it expects at every position: type a word with a wrong letter and see whether it puts it right",
    alignment: Alignment::SameToken,
    params: &[ParamInfo::number("rate", "share of tokens swapped", 0.01, 0.5, 0.15, 0.01, "the thesis uses 15%")],
};

impl Objective for SwappedLm {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let rate = ctx.param(&INFO, "rate");
        let n_chars = ctx.tokenizer.n_chars();
        let inputs = clean.inputs();
        let mut p = Prepared::new(b, s, inputs, AttentionMode::Bidirectional);
        for r in 0..b {
            for i in choose_positions(s, rate_count(s, rate), rng) {
                let at = r * s + i;
                p.targets[at] = p.inputs[at] as i32;
                p.inputs[at] = random_other_char(p.inputs[at], n_chars, rng);
                p.marks[at] = Mark::Replaced;
            }
        }
        p
    }

    /// Every typed character is asked for its original: nothing says which were swapped, so
    /// the model answers everywhere, and a wrong letter may come back put right.
    fn question(&self, text: &[Option<u32>], _ctx: &Context) -> Option<Result<Question, String>> {
        Some(every_position_asked(text, "swapped LM", AttentionMode::Bidirectional).map(Question::Read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::{clean_batch, with_context};
    use crate::objectives::{IGNORE, Params};

    proptest::proptest! {
        /// Targets are exactly the swapped positions, each holding its original; no [MASK].
        #[test]
        fn targets_are_exactly_the_swapped_positions(batch in 1usize..5, seq in 2usize..64, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            with_context(&Params::new(), |ctx| {
                let p = SwappedLm.prepare(&clean, ctx, &mut Rng::seeded(seed));
                let mask = ctx.tokenizer.special_id("[MASK]");
                for r in 0..batch {
                    let row = clean.row(r);
                    assert_eq!(p.row_targets(r).iter().filter(|&&t| t != IGNORE).count(), ((seq as f64 * 0.15).round() as usize).clamp(1, seq));
                    for (i, &clean_token) in row.iter().enumerate().take(seq) {
                        let x = p.row_inputs(r)[i];
                        assert_ne!(x, mask);
                        if p.row_targets(r)[i] == IGNORE {
                            assert_eq!(x, clean_token);
                        } else {
                            assert_ne!(x, clean_token);
                            assert_eq!(p.row_targets(r)[i], clean_token as i32);
                        }
                    }
                }
            });
        }
    }
}
