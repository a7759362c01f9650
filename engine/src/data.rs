//! Corpora and batches. A corpus is split 90/10 by position into train and validation
//! (as nanoGPT does for tiny shakespeare); batches are windows at seeded random offsets.

use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;

/// A tokenized text corpus with its train/validation split.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub name: String,
    pub tokenizer: CharTokenizer,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// Clean (uncorrupted) rows of `seq + 1` consecutive tokens: objectives decide what becomes
/// input and what becomes target (causal LM shifts by one; others use the first `seq`).
#[derive(Clone, Debug)]
pub struct CleanBatch {
    pub batch: usize,
    pub seq: usize,
    /// tokens: [batch, seq + 1], row-major
    pub tokens: Vec<u32>,
}

impl CleanBatch {
    pub fn row(&self, r: usize) -> &[u32] {
        &self.tokens[r * (self.seq + 1)..(r + 1) * (self.seq + 1)]
    }

    /// The first `seq` tokens of every row: [batch, seq], the clean input of objectives that
    /// keep the text in place (masking, replacing, position prediction, …).
    pub fn inputs(&self) -> Vec<u32> {
        (0..self.batch).flat_map(|r| self.row(r)[..self.seq].iter().copied()).collect()
    }
}

impl Corpus {
    /// Tokenizes `text` with its own character vocabulary and splits it 90/10.
    pub fn from_text(name: &str, text: &str) -> Result<Self, String> {
        if text.chars().count() < 100 {
            return Err(format!("corpus {name:?} is too short to train on ({} characters; at least 100 needed)", text.chars().count()));
        }
        let tokenizer = CharTokenizer::from_text(text);
        let ids = tokenizer.encode(text)?;
        let n_train = ids.len() * 9 / 10;
        Ok(Self { name: name.to_string(), tokenizer, train: ids[..n_train].to_vec(), val: ids[n_train..].to_vec() })
    }

    fn tokens(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Checks that both splits hold at least one window of `seq + 1` tokens.
    pub fn check_block(&self, seq: usize) -> Result<(), String> {
        for split in [Split::Train, Split::Val] {
            if self.tokens(split).len() <= seq + 1 {
                return Err(format!(
                    "corpus {:?} is too short for context {seq}: its {split:?} split has {} tokens",
                    self.name,
                    self.tokens(split).len()
                ));
            }
        }
        Ok(())
    }

    /// `batch` windows of `seq + 1` tokens at random offsets of `split`.
    pub fn sample(&self, split: Split, batch: usize, seq: usize, rng: &mut Rng) -> CleanBatch {
        let data = self.tokens(split);
        let mut tokens = Vec::with_capacity(batch * (seq + 1));
        for _ in 0..batch {
            let start = rng.below(data.len() - seq - 1);
            tokens.extend_from_slice(&data[start..start + seq + 1]);
        }
        CleanBatch { batch, seq, tokens }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_ninety_ten_by_position() {
        let text: String = "abcdefghij".repeat(20);
        let c = Corpus::from_text("t", &text).unwrap();
        assert_eq!(c.train.len(), 180);
        assert_eq!(c.val.len(), 20);
        assert_eq!(c.tokenizer.decode(&c.val[..10]), "abcdefghij");
    }

    #[test]
    fn windows_are_consecutive_text_and_seeded() {
        let text: String = (0..500).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let c = Corpus::from_text("t", &text).unwrap();
        let b1 = c.sample(Split::Train, 4, 8, &mut Rng::seeded(1));
        let b2 = c.sample(Split::Train, 4, 8, &mut Rng::seeded(1));
        assert_eq!(b1.tokens, b2.tokens);
        for r in 0..4 {
            let row = b1.row(r);
            assert_eq!(row.len(), 9);
            for w in row.windows(2) {
                assert_eq!((w[0] + 1) % 26, w[1] % 26);
            }
        }
    }

    #[test]
    fn too_short_corpus_is_a_clear_error() {
        assert!(Corpus::from_text("t", "short").unwrap_err().contains("too short"));
        let c = Corpus::from_text("t", &"x".repeat(120)).unwrap();
        assert!(c.check_block(64).unwrap_err().contains("context 64"));
    }
}
