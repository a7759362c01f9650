//! UL2's mixture of denoisers.
//!
//! Tay et al. 2022, "UL2: Unifying Language Learning Paradigms". Each row draws a denoiser:
//! R (regular span corruption, μ = 3, r = 15%), X (extreme: μ = 32 with r = 15%, or μ = 3 with
//! r = 50%, each half the time) or S (sequential: prefix LM). A mode token `[R]`, `[X]` or
//! `[S]` is prepended to the input so the model knows which task it is doing.

use super::denoising::{Seq2SeqRow, corrupt_spans, fitting_length, pack, span_noise_mask};
use super::{Alignment, Context, Mark, Objective, ObjectiveInfo, ParamInfo, Params, Prepared, Question, number_param, spans_source};
use crate::data::CleanBatch;
use crate::rng::Rng;

pub struct Ul2Mixture;

static INFO: ObjectiveInfo = ObjectiveInfo {
    id: "ul2_mixture",
    name: "UL2 mixture of denoisers",
    paper: "Tay et al. 2022 (UL2)",
    definition: "per row, sample R (μ=3, r=15%), X (μ=32 or r=50%) or S (prefix LM) denoising; prepend the mode token [R]/[X]/[S]",
    explanation: "Every row gets one of three tasks, announced by a first token: [R] fill a few \
        short gaps (like T5), [X] fill very long or very many gaps, [S] continue the text from \
        a prefix (like a language model). One model learns all three and the mode token tells \
        it which one is asked.",
    generates: true,
    asks: "continues what you type; with [R], its regular denoiser, writes the stretch of text hidden behind each run of _",
    alignment: Alignment::Moved,
    params: &[
        ParamInfo::number("weight_r", "weight of R (regular)", 0.0, 1.0, 0.34, 0.01, "UL2 mixes the three about equally"),
        ParamInfo::number("weight_x", "weight of X (extreme)", 0.0, 1.0, 0.33, 0.01, ""),
        ParamInfo::number("weight_s", "weight of S (sequential)", 0.0, 1.0, 0.33, 0.01, ""),
    ],
};

/// Which denoiser a row got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denoiser {
    R,
    X,
    S,
}

impl Ul2Mixture {
    fn weights(ctx: &Context) -> [f64; 3] {
        let w = [ctx.param(&INFO, "weight_r"), ctx.param(&INFO, "weight_x"), ctx.param(&INFO, "weight_s")];
        if w.iter().sum::<f64>() > 0.0 { w } else { [1.0; 3] }
    }

    fn draw(weights: [f64; 3], rng: &mut Rng) -> Denoiser {
        let mut u = rng.unit() * weights.iter().sum::<f64>();
        for (d, w) in [Denoiser::R, Denoiser::X, Denoiser::S].into_iter().zip(weights) {
            if u < w {
                return d;
            }
            u -= w;
        }
        Denoiser::S
    }
}

impl Objective for Ul2Mixture {
    fn info(&self) -> &'static ObjectiveInfo {
        &INFO
    }

    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared {
        let tok = ctx.tokenizer;
        let s = clean.seq;
        let weights = Self::weights(ctx);
        let rows = (0..clean.batch)
            .map(|r| {
                let row = clean.row(r);
                match Self::draw(weights, rng) {
                    Denoiser::S => {
                        // "[S] prefix" ⧺ "suffix": s + 1 tokens
                        let p = 1 + rng.below(s.saturating_sub(1).max(1));
                        let mut source = vec![tok.special_id("[S]")];
                        source.extend_from_slice(&row[..p]);
                        let mut marks = vec![Mark::Control];
                        marks.extend(std::iter::repeat_n(Mark::Plain, p));
                        Seq2SeqRow { source, source_marks: marks, target: row[p..s].to_vec() }
                    }
                    mode => {
                        let (id, rate, mean) = match mode {
                            Denoiser::R => ("[R]", 0.15, 3.0),
                            _ if rng.unit() < 0.5 => ("[X]", 0.15, 32.0),
                            _ => ("[X]", 0.5, 3.0),
                        };
                        let len = fitting_length(s + 1, rate, mean, 1);
                        let mask = span_noise_mask(len, rate, mean, rng);
                        let mut corrupted = corrupt_spans(&row[..len], &mask, tok);
                        corrupted.source.insert(0, tok.special_id(id));
                        corrupted.source_marks.insert(0, Mark::Control);
                        corrupted
                    }
                }
            })
            .collect();
        pack(rows, tok)
    }

    fn check(&self, params: &Params) -> Result<(), String> {
        let w = |k: &str| number_param(&INFO, params, k);
        if w("weight_r") + w("weight_x") + w("weight_s") <= 0.0 {
            return Err("ul2_mixture: the weights of R, X and S are all zero; give one of them a weight above 0".into());
        }
        Ok(())
    }

    /// A line with blanks goes to the R-denoiser: `[R]`, then the line with each run of
    /// blanks one sentinel, whose stretches the model writes after it. A line without one is
    /// continued (UL2 generates).
    fn question(&self, text: &[Option<u32>], ctx: &Context) -> Option<Result<Question, String>> {
        if text.iter().all(Option::is_some) {
            return None;
        }
        Some(spans_source(text, ctx.tokenizer, "UL2").map(|(mut source, mut marks)| {
            source.insert(0, ctx.tokenizer.special_id("[R]"));
            marks.insert(0, Mark::Control);
            Question::WriteSpans { source, marks }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectives::ParamValue;
    use crate::objectives::testing::{clean_batch, with_context};

    proptest::proptest! {
        /// Every row starts with a mode token, and the packed batch fits the context.
        #[test]
        fn every_row_starts_with_a_mode_token(batch in 1usize..8, seq in 8usize..64, seed in 0u64..1000) {
            let clean = clean_batch(batch, seq, seed);
            with_context(&Params::new(), |ctx| {
                let p = Ul2Mixture.prepare(&clean, ctx, &mut Rng::seeded(seed));
                assert!(p.seq <= seq, "{} > {seq}", p.seq);
                let modes = ["[R]", "[X]", "[S]"].map(|m| ctx.tokenizer.special_id(m));
                for r in 0..batch {
                    assert!(modes.contains(&p.row_inputs(r)[0]));
                    assert_eq!(p.row_marks(r)[0], Mark::Control);
                }
            });
        }
    }

    #[test]
    fn mixing_weights_steer_the_modes() {
        let clean = clean_batch(200, 32, 1);
        let params: Params = [("weight_r".to_string(), ParamValue::Number(0.0)), ("weight_x".to_string(), ParamValue::Number(0.0))].into();
        with_context(&params, |ctx| {
            let p = Ul2Mixture.prepare(&clean, ctx, &mut Rng::seeded(2));
            let s_id = ctx.tokenizer.special_id("[S]");
            assert!((0..200).all(|r| p.row_inputs(r)[0] == s_id), "only S when R and X weigh 0");
        });
        with_context(&Params::new(), |ctx| {
            let p = Ul2Mixture.prepare(&clean, ctx, &mut Rng::seeded(2));
            for m in ["[R]", "[X]", "[S]"] {
                let id = ctx.tokenizer.special_id(m);
                let n = (0..200).filter(|&r| p.row_inputs(r)[0] == id).count();
                assert!((40..95).contains(&n), "{m}: {n} of 200");
            }
        });
        let zero: Params = ["weight_r", "weight_x", "weight_s"].map(|k| (k.to_string(), ParamValue::Number(0.0))).into();
        assert!(Ul2Mixture.check(&zero).unwrap_err().contains("all zero"));
    }
}
