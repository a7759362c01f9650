//! Random token detection: RTS and C-RTS.
//!
//! Di Liello 2023, "Structural Self-Supervised Objectives for Transformers" (RTS, C-RTS), a
//! simplification of ELECTRA's replaced token detection (Clark et al. 2020) without the
//! generator. Replace ~15% of the tokens, either uniformly at random (RTS) or with a token
//! from the same cluster of similar tokens (C-RTS: clusters are buckets of tokens of similar
//! corpus frequency), and train a binary head at every position: replaced or original?

use super::denoising::{choose_positions, random_other_char, rate_count};
use super::{Alignment, Question, Context, Mark, Objective, ObjectiveInfo, ParamInfo, Prepared, every_position_asked};
use crate::data::CleanBatch;
use crate::model::{AttentionMode, Head};
use crate::rng::Rng;

pub struct RandomTokenDetection;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "random_token_detection",
    name: "random token detection (RTS / C-RTS)",
    paper: "Di Liello 2023 (RTS, C-RTS); Clark et al. 2020 (ELECTRA)",
    definition: "replace ~15% of tokens with random (RTS) or same-cluster (C-RTS, frequency buckets) tokens; a binary head predicts replaced vs original at every position; bidirectional attention",
    explanation: "Some characters are replaced by other characters, and the model must say for \
        every single position whether it is the original or a replacement. It gets a signal \
        from every position, not just the 15% changed. In C-RTS the replacements come from the \
        same group of similarly common characters, so they are harder to spot.",
    generates: false,
    asks: "marks the characters it thinks were swapped in: type a word with a wrong letter",
    alignment: Alignment::InputOnly,
    params: &[
        ParamInfo::number("rate", "share of tokens replaced", 0.01, 0.5, 0.15, 0.01, "15% as in the thesis"),
        ParamInfo::number("clustered", "C-RTS (1) or RTS (0)", 0.0, 1.0, 0.0, 1.0, "1: replacements from the same frequency cluster"),
        ParamInfo::number("cluster_size", "tokens per cluster (C-RTS)", 2.0, 32.0, 8.0, 1.0, "characters of similar frequency grouped together"),
    ],
};

impl RandomTokenDetection {
    /// A replacement for `original` from its frequency bucket (C-RTS), other than itself.
    fn clustered_replacement(original: u32, ctx: &Context, cluster_size: usize, rng: &mut Rng) -> u32 {
        let order = ctx.by_frequency;
        let Some(rank) = order.iter().position(|&c| c == original) else {
            return random_other_char(original, ctx.tokenizer.n_chars(), rng);
        };
        let start = rank / cluster_size * cluster_size;
        let bucket = &order[start..(start + cluster_size).min(order.len())];
        if bucket.len() < 2 {
            return random_other_char(original, ctx.tokenizer.n_chars(), rng);
        }
        let i = rng.below(bucket.len() - 1);
        let pick = if i >= rank - start { bucket[i + 1] } else { bucket[i] };
        debug_assert_ne!(pick, original);
        pick
    }

    /// The cluster of a character (its frequency bucket), for tests and the docs.
    pub fn cluster_of(c: u32, ctx: &Context, cluster_size: usize) -> Option<usize> {
        ctx.by_frequency.iter().position(|&x| x == c).map(|rank| rank / cluster_size)
    }
}

impl Objective for RandomTokenDetection {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let (b, s) = (clean.batch, clean.seq);
        let rate = ctx.param(&INFO, "rate");
        let clustered = ctx.param(&INFO, "clustered") >= 0.5;
        let cluster_size = ctx.param(&INFO, "cluster_size") as usize;
        let n_chars = ctx.tokenizer.n_chars();
        let inputs = clean.inputs();
        let mut p = Prepared::new(b, s, inputs, AttentionMode::Bidirectional);
        p.head = Head::Binary;
        p.targets = vec![0; b * s];
        for r in 0..b {
            for i in choose_positions(s, rate_count(s, rate), rng) {
                let at = r * s + i;
                let original = p.inputs[at];
                p.inputs[at] = if clustered {
                    Self::clustered_replacement(original, ctx, cluster_size, rng)
                } else {
                    random_other_char(original, n_chars, rng)
                };
                p.targets[at] = 1;
                p.marks[at] = Mark::Replaced;
            }
        }
        p
    }

    /// Every typed character is asked whether it was swapped in.
    fn question(&self, text: &[Option<u32>], _ctx: &Context) -> Option<Result<Question, String>> {
        Some(every_position_asked(text, "random token detection", AttentionMode::Bidirectional).map(|mut p| {
            p.head = Head::Binary;
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
        /// The labels are 1 exactly where the input differs from the clean text; every position
        /// is labelled; C-RTS replacements stay in the original's cluster.
        #[test]
        fn labels_are_exactly_the_replaced_positions(batch in 1usize..5, seq in 2usize..64, clustered in 0u8..2, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            let params: Params = [("clustered".to_string(), ParamValue::Number(clustered as f64))].into();
            with_context(&params, |ctx| {
                let p = RandomTokenDetection.prepare(&clean, ctx, &mut Rng::seeded(seed));
                assert_eq!(p.head, Head::Binary);
                assert_eq!(p.n_targets(), batch * seq);
                for r in 0..batch {
                    for i in 0..seq {
                        let (x, orig) = (p.row_inputs(r)[i], clean.row(r)[i]);
                        assert_eq!(p.row_targets(r)[i], (x != orig) as i32);
                        if x != orig && clustered == 1 {
                            assert_eq!(RandomTokenDetection::cluster_of(x, ctx, 8), RandomTokenDetection::cluster_of(orig, ctx, 8));
                        }
                    }
                }
            });
        }
    }
}
