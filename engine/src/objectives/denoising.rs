//! Building blocks shared by the corruption objectives: choosing positions, drawing
//! replacement tokens, T5's span noise masks, and packing a (source, target) pair as one
//! decoder sequence "source ⧺ target" with prefix attention over the source.

use super::{IGNORE, Mark, Prepared};
use crate::model::AttentionMode;
use crate::rng::Rng;
use crate::tokenizer::{CharTokenizer, N_SENTINELS};

/// `count` distinct positions of `0..len`, in increasing order (partial Fisher–Yates).
pub fn choose_positions(len: usize, count: usize, rng: &mut Rng) -> Vec<usize> {
    let count = count.min(len);
    let mut all: Vec<usize> = (0..len).collect();
    for i in 0..count {
        let j = i + rng.below(len - i);
        all.swap(i, j);
    }
    let mut chosen = all[..count].to_vec();
    chosen.sort_unstable();
    chosen
}

/// round(len · rate), at least 1 and at most `len`.
pub fn rate_count(len: usize, rate: f64) -> usize {
    ((len as f64 * rate).round() as usize).clamp(1, len.max(1))
}

/// A character id drawn uniformly among the characters other than `original`.
pub fn random_other_char(original: u32, n_chars: usize, rng: &mut Rng) -> u32 {
    if n_chars < 2 {
        return original;
    }
    let r = rng.below(n_chars - 1) as u32;
    if r >= original { r + 1 } else { r }
}

/// T5's span counts for a sequence of `len` tokens: (noise tokens, spans). Exactly
/// round(len · rate) noise tokens in round(noise / mean_span) spans, as T5's
/// `random_spans_noise_mask`; at least one of each, at most [`N_SENTINELS`] spans.
pub fn span_counts(len: usize, rate: f64, mean_span: f64) -> (usize, usize) {
    assert!(len >= 2, "span corruption needs at least 2 tokens");
    let noise = ((len as f64 * rate).round() as usize).clamp(1, len - 1);
    let spans = ((noise as f64 / mean_span).round() as usize).clamp(1, noise.min(len - noise)).min(N_SENTINELS);
    (noise, spans)
}

/// Splits `n` items into `k` non-empty segments at random; returns their lengths.
fn random_segmentation(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    assert!(k >= 1 && k <= n);
    // k - 1 distinct cut points among 1..n
    let cuts: Vec<usize> = choose_positions(n - 1, k - 1, rng).into_iter().map(|c| c + 1).collect();
    let mut lengths = Vec::with_capacity(k);
    let mut prev = 0;
    for c in cuts.into_iter().chain(std::iter::once(n)) {
        lengths.push(c - prev);
        prev = c;
    }
    lengths
}

/// T5's noise mask: `true` at corrupted positions, which form `spans` runs; the sequence
/// starts with clean text, and clean and corrupted runs alternate.
pub fn span_noise_mask(len: usize, rate: f64, mean_span: f64, rng: &mut Rng) -> Vec<bool> {
    let (noise, spans) = span_counts(len, rate, mean_span);
    let noise_lengths = random_segmentation(noise, spans, rng);
    let clean_lengths = random_segmentation(len - noise, spans, rng);
    let mut mask = Vec::with_capacity(len);
    for (c, n) in clean_lengths.iter().zip(&noise_lengths) {
        mask.extend(std::iter::repeat_n(false, *c));
        mask.extend(std::iter::repeat_n(true, *n));
    }
    mask
}

/// The longest `len` whose corrupted form (source + target + `extra` leading tokens) is at
/// most `budget` tokens long: source = len − noise + spans, target = noise + spans.
pub fn fitting_length(budget: usize, rate: f64, mean_span: f64, extra: usize) -> usize {
    let mut len = budget.saturating_sub(extra);
    while len > 2 {
        let (_, spans) = span_counts(len, rate, mean_span);
        if len + 2 * spans + extra <= budget {
            return len;
        }
        len -= 1;
    }
    2
}

/// One row as (source, target): the encoder's part and the decoder's part.
#[derive(Clone, Debug, PartialEq)]
pub struct Seq2SeqRow {
    pub source: Vec<u32>,
    pub source_marks: Vec<Mark>,
    pub target: Vec<u32>,
}

/// T5 span corruption of `tokens` under `mask`: every corrupted span becomes one sentinel
/// `<Sk>` in the source; the target lists each sentinel followed by the span it replaced.
pub fn corrupt_spans(tokens: &[u32], mask: &[bool], tok: &CharTokenizer) -> Seq2SeqRow {
    let mut row = Seq2SeqRow { source: Vec::new(), source_marks: Vec::new(), target: Vec::new() };
    let mut k = 0;
    for (i, (&t, &noisy)) in tokens.iter().zip(mask).enumerate() {
        if !noisy {
            row.source.push(t);
            row.source_marks.push(Mark::Plain);
        } else {
            if i == 0 || !mask[i - 1] {
                let s = tok.sentinel(k);
                k += 1;
                row.source.push(s);
                row.source_marks.push(Mark::Sentinel);
                row.target.push(s);
            }
            row.target.push(t);
        }
    }
    row
}

/// Inverse of [`corrupt_spans`]: puts each span back in place of its sentinel.
pub fn reconstruct(source: &[u32], target: &[u32], tok: &CharTokenizer) -> Vec<u32> {
    let mut out = Vec::new();
    for &t in source {
        match tok.sentinel_index(t) {
            None => out.push(t),
            Some(_) => {
                let start = target.iter().position(|&x| x == t).map(|p| p + 1).unwrap_or(target.len());
                out.extend(target[start..].iter().take_while(|&&x| tok.sentinel_index(x).is_none()));
            }
        }
    }
    out
}

/// Packs rows as decoder sequences "source ⧺ target": the input is that sequence without its
/// last token, attention is bidirectional over the source and causal after it (a non-causal
/// decoder; on the encoder–decoder architecture the source goes to the encoder), and the loss
/// is on predicting each target token (from the last source position on). Rows of different
/// lengths are padded with `[PAD]`, which carries no loss.
pub fn pack(rows: Vec<Seq2SeqRow>, tok: &CharTokenizer) -> Prepared {
    let pad = tok.special_id("[PAD]");
    let batch = rows.len();
    let seq = rows.iter().map(|r| r.source.len() + r.target.len() - 1).max().unwrap_or(1);
    let mut inputs = Vec::with_capacity(batch * seq);
    let mut targets = Vec::with_capacity(batch * seq);
    let mut marks = Vec::with_capacity(batch * seq);
    let mut prefix = Vec::with_capacity(batch);
    for row in rows {
        assert!(!row.source.is_empty() && !row.target.is_empty(), "a seq2seq row needs a source and a target");
        let full: Vec<u32> = row.source.iter().chain(&row.target).copied().collect();
        let n = full.len() - 1;
        let p = row.source.len();
        prefix.push(p);
        for i in 0..seq {
            if i < n {
                inputs.push(full[i]);
                targets.push(if i + 1 >= p { full[i + 1] as i32 } else { IGNORE });
                marks.push(if i < p { row.source_marks[i] } else { Mark::Target });
            } else {
                inputs.push(pad);
                targets.push(IGNORE);
                marks.push(Mark::Pad);
            }
        }
    }
    let mut prepared = Prepared::new(batch, seq, inputs, AttentionMode::Prefix(prefix));
    prepared.targets = targets;
    prepared.marks = marks;
    prepared
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};
    use crate::rng::Rng;

    fn tok() -> CharTokenizer {
        CharTokenizer::from_text("abcdefghijklmnopqrstuvwxyz")
    }

    #[test]
    fn fitting_length_fits() {
        for budget in [9, 17, 33, 65] {
            for (rate, mean) in [(0.15, 3.0), (0.5, 3.0), (0.15, 32.0), (0.5, 32.0)] {
                let len = fitting_length(budget, rate, mean, 1);
                let (_, spans) = span_counts(len, rate, mean);
                assert!(len + 2 * spans < budget, "{budget} {rate} {mean}");
            }
        }
    }

    proptest! {
        /// Source + target reconstruct the original exactly; one sentinel per span; the
        /// noise count is exactly round(len · rate).
        #[test]
        fn span_corruption_round_trips(len in 2usize..80, rate in 0.05f64..0.6, mean in 1.0f64..16.0, seed in 0u64..10_000) {
            let t = tok();
            let mut rng = Rng::seeded(seed);
            let tokens: Vec<u32> = (0..len).map(|_| rng.below(26) as u32).collect();
            let mask = span_noise_mask(len, rate, mean, &mut rng);
            prop_assert_eq!(mask.len(), len);
            let (noise, spans) = span_counts(len, rate, mean);
            prop_assert_eq!(mask.iter().filter(|&&m| m).count(), noise);
            let runs = (0..len).filter(|&i| mask[i] && (i == 0 || !mask[i - 1])).count();
            prop_assert_eq!(runs, spans);
            let row = corrupt_spans(&tokens, &mask, &t);
            let sentinels = row.source.iter().filter(|&&x| t.sentinel_index(x).is_some()).count();
            prop_assert_eq!(sentinels, spans);
            prop_assert_eq!(row.source.len() + row.target.len(), len + 2 * spans);
            prop_assert_eq!(reconstruct(&row.source, &row.target, &t), tokens);
        }

        /// Packing: the loss falls only on target tokens, each the next token of "source ⧺ target".
        #[test]
        fn packing_scores_only_the_target(src in 1usize..20, tgt in 1usize..20, seed in 0u64..1000) {
            let t = tok();
            let mut rng = Rng::seeded(seed);
            let source: Vec<u32> = (0..src).map(|_| rng.below(26) as u32).collect();
            let target: Vec<u32> = (0..tgt).map(|_| rng.below(26) as u32).collect();
            let row = Seq2SeqRow { source: source.clone(), source_marks: vec![Mark::Plain; src], target: target.clone() };
            let p = pack(vec![row], &t);
            prop_assert_eq!(p.n_targets(), tgt);
            prop_assert_eq!(p.attention.clone(), AttentionMode::Prefix(vec![src]));
            for (i, &y) in p.targets.iter().enumerate() {
                if y != IGNORE {
                    prop_assert!(i + 1 >= src);
                    prop_assert_eq!(y as u32, target[i + 1 - src]);
                }
            }
        }
    }

    #[test]
    fn mean_span_length_is_near_mu() {
        let mut rng = Rng::seeded(3);
        let (mut noise, mut spans) = (0, 0);
        for _ in 0..200 {
            let mask = span_noise_mask(200, 0.15, 3.0, &mut rng);
            noise += mask.iter().filter(|&&m| m).count();
            spans += (0..200).filter(|&i| mask[i] && (i == 0 || !mask[i - 1])).count();
        }
        let mean = noise as f64 / spans as f64;
        assert!((mean - 3.0).abs() < 0.2, "{mean}");
    }
}
