//! Prefix language modelling: a non-causal decoder.
//!
//! Wang et al. 2022, "What Language Model Architecture and Pretraining Objective Work Best for
//! Zero-Shot Generalization?" (non-causal decoder); the S-denoiser of Tay et al. 2022, UL2.
//! Each row is split at a random point: attention is bidirectional over the prefix and causal
//! after it, and the loss is on the suffix only.

use super::denoising::{Seq2SeqRow, pack};
use super::{Alignment, Context, Mark, Objective, ObjectiveInfo, Prepared};
use crate::data::CleanBatch;
use crate::rng::Rng;

pub struct PrefixLm;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "prefix_lm",
    name: "prefix LM (non-causal decoder)",
    paper: "Wang et al. 2022; Tay et al. 2022 (UL2, S-denoiser)",
    definition: "split each row at a random point; bidirectional attention over the prefix, causal after it; loss on the suffix only",
    explanation: "The text is cut in two at a random place. The first part (the prefix) is given \
        in full: every prefix token may look at every other prefix token, in both directions. \
        The model then continues the text left to right and is scored only on the continuation. \
        It learns to read a prompt fully before it writes.",
    generates: true,
    asks: "continues what you type",
    alignment: Alignment::NextToken,
    params: &[],
};

impl Objective for PrefixLm {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let s = clean.seq;
        let rows = (0..clean.batch)
            .map(|r| {
                let row = clean.row(r);
                // split: prefix row[..p], suffix row[p..]; p in [1, s - 1] (or 1 if s is 1)
                let p = 1 + rng.below(s.saturating_sub(1).max(1));
                Seq2SeqRow { source: row[..p].to_vec(), source_marks: vec![Mark::Plain; p], target: row[p..].to_vec() }
            })
            .collect();
        pack(rows, ctx.tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttentionMode;
    use crate::objectives::IGNORE;
    use crate::objectives::testing::{clean_batch, with_context};

    proptest::proptest! {
        /// No loss on the prefix: the scored positions are exactly p-1..s-1, each on the next token.
        #[test]
        fn no_loss_on_the_prefix(batch in 1usize..6, seq in 2usize..40, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            with_context(&Default::default(), |ctx| {
                let p = PrefixLm.prepare(&clean, ctx, &mut Rng::seeded(seed));
                assert_eq!(p.seq, seq);
                let AttentionMode::Prefix(prefix) = &p.attention else { panic!("prefix attention") };
                assert_eq!(prefix.len(), batch, "one prefix length per row");
                for (r, &prefix_len) in prefix.iter().enumerate() {
                    let row = clean.row(r);
                    assert_eq!(p.row_inputs(r), &row[..seq]);
                    for (i, &t) in p.row_targets(r).iter().enumerate() {
                        if i + 1 < prefix_len {
                            assert_eq!(t, IGNORE, "prefix position {i} carries no loss");
                        } else {
                            assert_eq!(t, row[i + 1] as i32);
                        }
                    }
                }
            });
        }
    }
}
