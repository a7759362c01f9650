//! Span corruption (T5).
//!
//! Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
//! Transformer" (T5); also CodeT5+ and UL2's R-denoiser. Corrupt 15% of the tokens in spans of
//! mean length 3; each span becomes one sentinel `<Sk>` in the input; the target is the
//! sentinels each followed by the span it replaced. On a decoder it trains as "input ⧺ target"
//! with prefix attention over the input; on the encoder–decoder architecture the input goes to
//! the encoder and the target to the decoder.

use super::denoising::{corrupt_spans, fitting_length, pack, span_noise_mask};
use super::{Alignment, Context, Objective, ObjectiveInfo, ParamInfo, Prepared, Question, spans_source};
use crate::data::CleanBatch;
use crate::rng::Rng;

pub struct SpanCorruption;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "span_corruption",
    name: "span corruption (T5)",
    paper: "Raffel et al. 2020 (T5); Wang et al. 2023 (CodeT5+); Tay et al. 2022 (UL2 R-denoiser)",
    definition: "corrupt 15% of tokens in spans of mean length 3; each span → one sentinel in the input; target = each sentinel followed by its span; input ⧺ target with prefix attention (or encoder–decoder)",
    explanation: "Short stretches of text are cut out and each hole is marked by a numbered \
        sentinel such as <S0>. The model reads the holed text in full and then writes, after \
        it, each sentinel followed by the characters that were cut out. It learns to fill gaps \
        of several characters at once, using the text on both sides.",
    generates: false,
    asks: "writes the stretch of text hidden behind each run of _ you type",
    alignment: Alignment::Moved,
    params: &[
        ParamInfo::number("rate", "share of tokens corrupted", 0.05, 0.5, 0.15, 0.01, "T5 uses 15%"),
        ParamInfo::number("mean_span", "mean span length", 1.0, 16.0, 3.0, 1.0, "T5 uses 3"),
    ],
};

impl Objective for SpanCorruption {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let rate = ctx.param(&INFO, "rate");
        let mean = ctx.param(&INFO, "mean_span");
        // Use as much of each row as fits: source + target ≤ seq + 1 tokens.
        let len = fitting_length(clean.seq + 1, rate, mean, 0).min(clean.seq + 1);
        let rows = (0..clean.batch)
            .map(|r| {
                let tokens = &clean.row(r)[..len];
                let mask = span_noise_mask(len, rate, mean, rng);
                corrupt_spans(tokens, &mask, ctx.tokenizer)
            })
            .collect();
        pack(rows, ctx.tokenizer)
    }

    /// Each run of typed blanks becomes one sentinel, and the model writes the stretches
    /// after the line, as its training targets are written.
    fn question(&self, text: &[Option<u32>], ctx: &Context) -> Option<Result<Question, String>> {
        Some(spans_source(text, ctx.tokenizer, "span corruption").map(|(source, marks)| Question::WriteSpans { source, marks }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttentionMode;
    use crate::objectives::denoising::reconstruct;
    use crate::objectives::testing::{clean_batch, with_context};
    use crate::objectives::{IGNORE, Mark, Params};

    proptest::proptest! {
        /// Each row's input and target reconstruct the original text; the prefix is the input;
        /// the batch fits the context.
        #[test]
        fn input_and_target_reconstruct_the_row(batch in 1usize..5, seq in 8usize..64, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            with_context(&Params::new(), |ctx| {
                let p = SpanCorruption.prepare(&clean, ctx, &mut Rng::seeded(seed));
                assert!(p.seq <= seq);
                let AttentionMode::Prefix(prefix) = &p.attention else { panic!("prefix attention") };
                for r in 0..batch {
                    let inputs = p.row_inputs(r);
                    let source = &inputs[..prefix[r]];
                    // The target: the next-token labels from the last source position on.
                    let target: Vec<u32> = p.row_targets(r).iter().filter(|&&t| t != IGNORE).map(|&t| t as u32).collect();
                    let original = reconstruct(source, &target, ctx.tokenizer);
                    assert_eq!(&original[..], &clean.row(r)[..original.len()]);
                    let sentinels = source.iter().filter(|&&t| ctx.tokenizer.sentinel_index(t).is_some()).count();
                    assert_eq!(sentinels, p.row_marks(r).iter().filter(|&&m| m == Mark::Sentinel).count());
                    assert!(sentinels >= 1);
                }
            });
        }
    }
}
