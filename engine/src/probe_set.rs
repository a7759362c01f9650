//! A labelled probe set for the linear-probe and CKA views. On a corpus of labelled records
//! (the digits) it is the held-out images and the label is the digit, as Image GPT probes its
//! features ([`crate::digits`]). On a text it is sequences from K small random Markov sources,
//! and the label is which source wrote the sequence:
//!
//! Every source walks the same 8 letters (see `probe_letters`) and has the same (uniform) letter frequencies: from a
//! letter it goes to its own "favourite successor" (a permutation of the letters, different for
//! every source) with probability 3/4, else to any letter. A bag of letters therefore says
//! nothing about the label; the pairs of neighbouring letters say everything. A representation
//! that mixes context (attention) can expose the label to a linear classifier; one that only
//! averages token embeddings cannot. The sources are drawn from a fixed seed, so every run and
//! every page sees the same probe set.

use crate::data::Corpus;
use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;

/// The letters the sources walk (frequent in English text, so the model has seen them).
pub const LETTERS: &str = "etaoinsh";
/// Number of sources (= classes of the probe).
pub const SOURCES: usize = 4;
/// Held-out records of each label in the views' probe set on a corpus of records (the
/// digits: 12 images per digit; the page's probe hint says so).
pub const RECORDS_PER_CLASS: usize = 12;
/// Probability of the source's own successor.
const FAVOURITE: f64 = 0.75;
const SEED: u64 = 0x9e3779b97f4a7c15;

/// The letters the sources walk: [`LETTERS`] where the corpus has them all (English text), else
/// its first eight letters or digits (a text of one's own in another script), else its first
/// eight characters.
fn probe_letters(tokenizer: &CharTokenizer) -> Vec<u32> {
    if let Ok(ids) = tokenizer.encode(LETTERS) {
        return ids;
    }
    let chars = tokenizer.chars();
    let alphanumeric: Vec<u32> = (0..chars.len()).filter(|&i| chars[i].is_alphanumeric()).map(|i| i as u32).take(LETTERS.len()).collect();
    if alphanumeric.len() >= 2 { alphanumeric } else { (0..chars.len().min(LETTERS.len()) as u32).collect() }
}

pub struct ProbeSet {
    /// tokens: [rows, seq]
    pub rows: Vec<Vec<u32>>,
    /// Which source wrote each row; rows alternate so both halves (even rows train the probe,
    /// odd rows test it) hold every class.
    pub labels: Vec<usize>,
    pub classes: usize,
}

impl ProbeSet {
    /// The probe set the page's views read (the worker's snapshots, and natively the CLI's
    /// `train --link` table and `bench --snapshot`). On a text: 32 sequences of 16 letters per
    /// source, 128 in all, whose forward pass costs about half a baby-GPT step. On the digits:
    /// 12 held-out images per digit, 120 in all: its forward pass, a pause of ~0.5 s in the tab
    /// for baby GPT at context 64 (16 per digit paused ~0.65 s, against ~0.15 s for a text's set).
    pub fn of_views(corpus: &Corpus) -> Result<Self, String> {
        if corpus.records.is_some() { Self::of_records(corpus, RECORDS_PER_CLASS) } else { Self::markov(&corpus.tokenizer, 16, 32) }
    }

    /// Up to `per_class` validation records of each label, whole, in pairs of one label so
    /// that both halves (even rows train the probe, odd rows test it) hold every class.
    pub fn of_records(corpus: &Corpus, per_class: usize) -> Result<Self, String> {
        let records = corpus.records.as_ref().ok_or("this corpus has no labelled records")?;
        let of_label: Vec<Vec<usize>> =
            (0..records.classes).map(|c| (0..records.val_labels.len()).filter(|&i| records.val_labels[i] == c).collect()).collect();
        if of_label.iter().any(|ids| ids.len() < 2) {
            return Err("the probe set needs at least two held-out records of every label".into());
        }
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for pair in 0..per_class / 2 {
            for (label, ids) in of_label.iter().enumerate() {
                for &i in ids.iter().skip(2 * pair).take(2) {
                    rows.push(corpus.val[i * records.len..(i + 1) * records.len].to_vec());
                    labels.push(label);
                }
            }
        }
        Ok(Self { rows, labels, classes: records.classes })
    }

    /// `per_source` rows of `seq` tokens from each source.
    pub fn markov(tokenizer: &CharTokenizer, seq: usize, per_source: usize) -> Result<Self, String> {
        let letters = probe_letters(tokenizer);
        if letters.len() < 2 {
            return Err("the probe set needs at least two characters in the corpus".into());
        }
        let n = letters.len();
        let mut rng = Rng::seeded(SEED);
        // successor[k][i]: source k's favourite letter after letter i (a random permutation)
        let successor: Vec<Vec<usize>> = (0..SOURCES)
            .map(|_| {
                let mut perm: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    perm.swap(i, rng.below(i + 1));
                }
                perm
            })
            .collect();
        let mut rows = Vec::with_capacity(SOURCES * per_source);
        let mut labels = Vec::with_capacity(SOURCES * per_source);
        for r in 0..SOURCES * per_source {
            let label = (r / 2) % SOURCES;
            let mut at = rng.below(n);
            let mut row = Vec::with_capacity(seq);
            for _ in 0..seq {
                row.push(letters[at]);
                at = if rng.unit() < FAVOURITE { successor[label][at] } else { rng.below(n) };
            }
            rows.push(row);
            labels.push(label);
        }
        Ok(Self { rows, labels, classes: SOURCES })
    }

    /// tokens: [rows · seq], row-major
    pub fn flat(&self) -> Vec<u32> {
        self.rows.iter().flatten().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_share_letter_counts_but_not_pairs() {
        let tok = CharTokenizer::from_text("the quick brown fox jumps over the lazy dog, then sits");
        let set = ProbeSet::markov(&tok, 64, 40).unwrap();
        assert_eq!(set.rows.len(), 160);
        assert!(set.rows.iter().all(|r| r.len() == 64));
        for half in [0, 1] {
            let classes: std::collections::BTreeSet<usize> = set.labels.iter().skip(half).step_by(2).copied().collect();
            assert_eq!(classes.len(), SOURCES, "both halves hold every class");
        }
        // unigram frequencies: every source within a few percent of uniform
        let letters = tok.encode(LETTERS).unwrap();
        for k in 0..SOURCES {
            let rows: Vec<&Vec<u32>> = set.rows.iter().zip(&set.labels).filter(|(_, l)| **l == k).map(|(r, _)| r).collect();
            let total = rows.len() * 64;
            for &c in &letters {
                let share = rows.iter().flat_map(|r| r.iter()).filter(|&&t| t == c).count() as f64 / total as f64;
                assert!((share - 1.0 / 8.0).abs() < 0.05, "source {k}, letter {c}: {share}");
            }
        }
        // the same seed gives the same set
        assert_eq!(ProbeSet::markov(&tok, 64, 40).unwrap().rows, set.rows);
    }

    #[test]
    fn the_digits_probe_set_is_held_out_images_labelled_by_digit() {
        let csv = std::fs::read_to_string(crate::repo_root().join("assets/digits.csv")).unwrap();
        let corpus = crate::digits::corpus(&csv).unwrap();
        let set = ProbeSet::of_views(&corpus).unwrap();
        assert_eq!((set.rows.len(), set.classes), (120, 10));
        for half in [0, 1] {
            let mut counts = [0; 10];
            set.labels.iter().skip(half).step_by(2).for_each(|&l| counts[l] += 1);
            assert_eq!(counts, [6; 10], "each half holds 6 images of every digit");
        }
        // each row is a whole image of the validation part, and its label is the image's
        let images = crate::digits::parse(&csv).unwrap();
        let held_out = &images[1617..];
        for (row, &label) in set.rows.iter().zip(&set.labels) {
            let text = corpus.tokenizer.decode(row);
            let image = held_out.iter().find(|im| im.text() == text).expect("a held-out image");
            assert_eq!(image.label as usize, label);
        }
        // a text's probe set is the Markov sources'
        let text = Corpus::from_text("t", &"the quick brown fox jumps over the lazy dog. ".repeat(10)).unwrap();
        assert_eq!(ProbeSet::of_views(&text).unwrap().classes, SOURCES);
    }

    #[test]
    fn a_text_without_the_english_letters_walks_its_own() {
        let cjk = CharTokenizer::from_text("天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。");
        let set = ProbeSet::markov(&cjk, 16, 4).unwrap();
        let used: std::collections::BTreeSet<u32> = set.rows.iter().flatten().copied().collect();
        assert_eq!(used.len(), 8, "eight letters, none of them punctuation: {used:?}");
        assert!(used.iter().all(|&i| cjk.chars()[i as usize].is_alphanumeric()));
        // two characters are enough; one is not
        assert!(ProbeSet::markov(&CharTokenizer::from_text("ab"), 16, 4).is_ok());
        assert!(ProbeSet::markov(&CharTokenizer::from_text("aaaa"), 16, 4).is_err());
    }
}
