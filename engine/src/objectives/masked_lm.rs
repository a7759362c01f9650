//! Masked language modelling (BERT).
//!
//! Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding". Choose 15% of positions; of those, 80% become `[MASK]`, 10% a random token
//! and 10% stay unchanged; predict the original token at the chosen positions, with
//! bidirectional attention.
//!
//! The rate goes up to 90 % so that MAE's choice can be tried on the digits: He et al. 2022,
//! "Masked Autoencoders Are Scalable Vision Learners", hide 75 % of an image, since pixels
//! are far more redundant than words.

use super::denoising::{choose_positions, random_other_char, rate_count};
use super::{Alignment, Question, ASKED, BLANK, Context, Mark, Objective, ObjectiveInfo, ParamInfo, Prepared};
use crate::data::CleanBatch;
use crate::model::AttentionMode;
use crate::rng::Rng;

pub struct MaskedLm;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "masked_lm",
    name: "masked LM (BERT)",
    paper: "Devlin et al. 2019 (BERT)",
    definition: "choose 15% of positions; of those 80% → [MASK], 10% → a random token, 10% unchanged; predict the originals at the chosen positions; bidirectional attention",
    explanation: "Some characters are hidden behind a [MASK] token (and a few are swapped or \
        left alone, so the model cannot trust any single token). Every token may look at every \
        other token, left and right, and the model is scored only on restoring the chosen \
        ones. It learns context from both sides, but cannot generate text left to right.",
    generates: false,
    asks: "fills in each _ you type (a hidden character) from both sides",
    alignment: Alignment::SameToken,
    params: &[
        ParamInfo::number("rate", "share of positions chosen", 0.01, 0.9, 0.15, 0.01, "BERT uses 15%; MAE hides 75% of an image"),
        ParamInfo::number("mask_share", "chosen → [MASK]", 0.0, 1.0, 0.8, 0.05, "BERT: 80%"),
        ParamInfo::number("random_share", "chosen → random token", 0.0, 1.0, 0.1, 0.05, "BERT: 10%; the rest stay unchanged"),
    ],
};

impl Objective for MaskedLm {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let rate = ctx.param(&INFO, "rate");
        let mask_share = ctx.param(&INFO, "mask_share");
        let random_share = ctx.param(&INFO, "random_share").min(1.0 - mask_share);
        let mask_id = ctx.tokenizer.special_id("[MASK]");
        let n_chars = ctx.tokenizer.n_chars();
        let inputs = clean.inputs();
        let mut p = Prepared::new(b, s, inputs, AttentionMode::Bidirectional);
        for r in 0..b {
            for i in choose_positions(s, rate_count(s, rate), rng) {
                let at = r * s + i;
                let original = p.inputs[at];
                p.targets[at] = original as i32;
                let u = rng.unit();
                if u < mask_share {
                    p.inputs[at] = mask_id;
                    p.marks[at] = Mark::Masked;
                } else if u < mask_share + random_share {
                    p.inputs[at] = random_other_char(original, n_chars, rng);
                    p.marks[at] = Mark::Replaced;
                } else {
                    p.marks[at] = Mark::Kept;
                }
            }
        }
        p
    }

    /// Each typed blank becomes `[MASK]` and is asked for its character, read in both
    /// directions as in training.
    fn question(&self, text: &[Option<u32>], ctx: &Context) -> Option<Result<Question, String>> {
        if text.iter().all(Option::is_some) {
            return Some(Err(format!("masked LM answers where a character is hidden: type {BLANK} in its place")));
        }
        let mask_id = ctx.tokenizer.special_id("[MASK]");
        let mut p = Prepared::new(1, text.len(), text.iter().map(|t| t.unwrap_or(mask_id)).collect(), AttentionMode::Bidirectional);
        for (i, _) in text.iter().enumerate().filter(|(_, t)| t.is_none()) {
            p.targets[i] = ASKED;
            p.marks[i] = Mark::Masked;
        }
        Some(Ok(Question::Read(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::testing::{clean_batch, with_context};
    use crate::objectives::{IGNORE, ParamValue, Params};

    proptest::proptest! {
        /// Targets sit exactly at the chosen positions and hold the originals; unchosen inputs
        /// are untouched; the rate is exact per row.
        #[test]
        fn targets_are_the_originals_at_chosen_positions(batch in 1usize..5, seq in 4usize..64, rate in 0.05f64..0.9, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            let params: Params = [("rate".to_string(), ParamValue::Number(rate))].into();
            with_context(&params, |ctx| {
                let p = MaskedLm.prepare(&clean, ctx, &mut Rng::seeded(seed));
                for r in 0..batch {
                    let row = clean.row(r);
                    let chosen = p.row_targets(r).iter().filter(|&&t| t != IGNORE).count();
                    assert_eq!(chosen, ((seq as f64 * rate).round() as usize).clamp(1, seq));
                    for (i, &clean_token) in row.iter().enumerate().take(seq) {
                        let (x, y, m) = (p.row_inputs(r)[i], p.row_targets(r)[i], p.row_marks(r)[i]);
                        if y == IGNORE {
                            assert_eq!((x, m), (clean_token, Mark::Plain));
                        } else {
                            assert_eq!(y, clean_token as i32);
                            match m {
                                Mark::Masked => assert_eq!(x, ctx.tokenizer.special_id("[MASK]")),
                                Mark::Replaced => assert!(x != clean_token && ctx.tokenizer.is_char(x)),
                                Mark::Kept => assert_eq!(x, clean_token),
                                other => panic!("unexpected mark {other:?}"),
                            }
                        }
                    }
                }
            });
        }
    }

    /// Over many draws: 15% chosen, and of those 80% masked / 10% random / 10% unchanged.
    #[test]
    fn bert_rates_hold_over_many_draws() {
        let clean = clean_batch(64, 64, 7);
        with_context(&Params::new(), |ctx| {
            let mut rng = Rng::seeded(1);
            let (mut chosen, mut masked, mut replaced, mut kept, mut total) = (0, 0, 0, 0, 0);
            for _ in 0..20 {
                let p = MaskedLm.prepare(&clean, ctx, &mut rng);
                total += p.inputs.len();
                chosen += p.n_targets();
                masked += p.marks.iter().filter(|&&m| m == Mark::Masked).count();
                replaced += p.marks.iter().filter(|&&m| m == Mark::Replaced).count();
                kept += p.marks.iter().filter(|&&m| m == Mark::Kept).count();
            }
            let f = |n: usize, d: usize| n as f64 / d as f64;
            assert!((f(chosen, total) - 0.15).abs() < 0.01, "chosen {}", f(chosen, total));
            assert!((f(masked, chosen) - 0.8).abs() < 0.02, "masked {}", f(masked, chosen));
            assert!((f(replaced, chosen) - 0.1).abs() < 0.02, "random {}", f(replaced, chosen));
            assert!((f(kept, chosen) - 0.1).abs() < 0.02, "kept {}", f(kept, chosen));
        });
    }
}
