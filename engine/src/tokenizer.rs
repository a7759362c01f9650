//! Character tokenizer, as in nanoGPT's `shakespeare_char`: one id per distinct character,
//! followed by a few special tokens that objectives use (`[MASK]`, `[PAD]`, …).

use serde::{Deserialize, Serialize};

/// Special tokens appended after the characters. Objectives refer to them by name so that the
/// character ids stay exactly nanoGPT's (sorted distinct characters).
pub const SPECIALS: &[&str] = &["[PAD]", "[MASK]"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CharTokenizer {
    chars: Vec<char>,
}

impl CharTokenizer {
    /// Vocabulary = the sorted distinct characters of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }

    /// Number of character tokens (65 for tiny shakespeare).
    pub fn n_chars(&self) -> usize {
        self.chars.len()
    }

    /// Characters plus specials: the size of the model's embedding table.
    pub fn vocab_size(&self) -> usize {
        self.chars.len() + SPECIALS.len()
    }

    /// Id of a special token such as `"[MASK]"`.
    pub fn special(&self, name: &str) -> Option<u32> {
        SPECIALS
            .iter()
            .position(|s| *s == name)
            .map(|i| (self.chars.len() + i) as u32)
    }

    /// Encodes text; characters outside the vocabulary are an error naming the first one.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        text.chars()
            .map(|c| {
                self.chars
                    .binary_search(&c)
                    .map(|i| i as u32)
                    .map_err(|_| format!("character {c:?} is not in the corpus vocabulary"))
            })
            .collect()
    }

    /// Text of one token (specials as their names).
    pub fn token_text(&self, id: u32) -> String {
        let i = id as usize;
        if i < self.chars.len() {
            self.chars[i].to_string()
        } else {
            SPECIALS.get(i - self.chars.len()).map(|s| s.to_string()).unwrap_or_else(|| "�".into())
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&i| self.token_text(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_specials() {
        let t = CharTokenizer::from_text("hello world");
        assert_eq!(t.n_chars(), 8);
        assert_eq!(t.vocab_size(), 8 + SPECIALS.len());
        let ids = t.encode("hold").unwrap();
        assert_eq!(t.decode(&ids), "hold");
        assert_eq!(t.special("[PAD]"), Some(8));
        assert_eq!(t.token_text(t.special("[MASK]").unwrap()), "[MASK]");
        assert!(t.encode("xyz").unwrap_err().contains("'x'"));
    }
}
