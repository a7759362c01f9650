//! Character tokenizer, as in nanoGPT's `shakespeare_char`: one id per distinct character,
//! followed by the special tokens that objectives use: `[PAD]`, `[MASK]`, UL2's mode tokens
//! `[R]` `[X]` `[S]`, conditional training's `<good>` `<bad>`, and T5's sentinels `<S0>`…

use serde::{Deserialize, Serialize};

/// Special tokens appended after the characters. Objectives refer to them by name so that the
/// character ids stay exactly nanoGPT's (sorted distinct characters).
pub const NAMED_SPECIALS: &[&str] = &["[PAD]", "[MASK]", "[R]", "[X]", "[S]", "<good>", "<bad>"];

/// How the page writes a new line on one line (and what a person types for one).
pub const NEW_LINE_SIGN: char = '⏎';

/// Number of T5 sentinel tokens `<S0>`…`<S31>` (one per corrupted span), after the named ones.
pub const N_SENTINELS: usize = 32;

/// The vocabulary of a text with `chars` distinct characters: they plus the special tokens.
pub fn vocab_for_chars(chars: usize) -> usize {
    chars + NAMED_SPECIALS.len() + N_SENTINELS
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CharTokenizer {
    chars: Vec<char>,
}

impl CharTokenizer {
    /// Vocabulary = the sorted distinct characters of `text`.
    pub fn from_text(text: &str) -> Self {
        // a set of the few distinct characters, not a sorted copy of every one (a 16 MB text
        // of one's own is read on the page's thread)
        let mut ascii = [false; 128];
        let mut other = std::collections::BTreeSet::new();
        for c in text.chars() {
            match ascii.get_mut(c as usize) {
                Some(seen) => *seen = true,
                None => {
                    other.insert(c);
                }
            }
        }
        let chars = (0..128u8).filter(|&b| ascii[b as usize]).map(char::from).chain(other).collect();
        Self { chars }
    }

    /// The characters, sorted: character `i` has id `i`.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Number of character tokens (65 for tiny shakespeare).
    pub fn n_chars(&self) -> usize {
        self.chars.len()
    }

    /// Characters plus specials: the size of the model's embedding table.
    pub fn vocab_size(&self) -> usize {
        vocab_for_chars(self.chars.len())
    }

    /// Id of a named special token such as `"[MASK]"`.
    pub fn special(&self, name: &str) -> Option<u32> {
        NAMED_SPECIALS
            .iter()
            .position(|s| *s == name)
            .map(|i| (self.chars.len() + i) as u32)
    }

    /// Id of a named special token the lab always has (panics on a typo, a programming error).
    pub fn special_id(&self, name: &str) -> u32 {
        self.special(name).unwrap_or_else(|| panic!("no special token {name}"))
    }

    /// Id of sentinel `k` (`<Sk>`), `k < N_SENTINELS`.
    pub fn sentinel(&self, k: usize) -> u32 {
        assert!(k < N_SENTINELS, "sentinel {k} out of range");
        (self.chars.len() + NAMED_SPECIALS.len() + k) as u32
    }

    /// Which sentinel `id` is, if it is one.
    pub fn sentinel_index(&self, id: u32) -> Option<usize> {
        let first = self.chars.len() + NAMED_SPECIALS.len();
        let i = id as usize;
        (i >= first && i < first + N_SENTINELS).then(|| i - first)
    }

    /// Whether `id` is a character (not a special token).
    pub fn is_char(&self, id: u32) -> bool {
        (id as usize) < self.chars.len()
    }

    /// The text samples start from: a new line, as nanoGPT's samples do, or the vocabulary's
    /// first character where the text has no new lines (a text of one's own may not).
    pub fn sample_prompt(&self) -> String {
        if self.chars.binary_search(&'\n').is_ok() { "\n".to_string() } else { self.chars.first().map_or_else(String::new, |c| c.to_string()) }
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

    /// Encodes text a person typed on one line: [`NEW_LINE_SIGN`] stands for a new line where
    /// the vocabulary has one and not the sign itself (the page shows new lines as it).
    pub fn encode_typed(&self, text: &str) -> Result<Vec<u32>, String> {
        let sign_is_new_line = self.chars.binary_search(&'\n').is_ok() && self.chars.binary_search(&NEW_LINE_SIGN).is_err();
        if !sign_is_new_line {
            return self.encode(text);
        }
        self.encode(&text.replace(NEW_LINE_SIGN, "\n"))
    }

    /// Text of one token (specials as their names).
    pub fn token_text(&self, id: u32) -> String {
        let i = id as usize;
        if i < self.chars.len() {
            self.chars[i].to_string()
        } else {
            let j = i - self.chars.len();
            match NAMED_SPECIALS.get(j) {
                Some(s) => s.to_string(),
                None if j - NAMED_SPECIALS.len() < N_SENTINELS => format!("<S{}>", j - NAMED_SPECIALS.len()),
                None => "�".into(),
            }
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&i| self.token_text(i)).collect()
    }
}

/// What kind of character a token is, for colouring the token-embedding projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharClass {
    Vowel,
    /// A letter that is not a vowel.
    Letter,
    Digit,
    Punctuation,
    Space,
    /// A special token (mask, sentinel, control).
    Special,
}

impl CharClass {
    pub const ALL: [CharClass; 6] = [Self::Vowel, Self::Letter, Self::Digit, Self::Punctuation, Self::Space, Self::Special];

    /// The class of a token's text (as [`CharTokenizer::token_text`] gives it).
    pub fn of(text: &str) -> Self {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if "aeiouAEIOU".contains(c) => Self::Vowel,
            (Some(c), None) if c.is_alphabetic() => Self::Letter,
            (Some(c), None) if c.is_numeric() => Self::Digit,
            (Some(c), None) if c.is_whitespace() => Self::Space,
            (Some(_), None) => Self::Punctuation,
            _ => Self::Special,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Vowel => "vowel",
            Self::Letter => "consonant",
            Self::Digit => "digit",
            Self::Punctuation => "punctuation",
            Self::Space => "space",
            Self::Special => "special",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_classes() {
        let classes: Vec<&str> = ["a", "b", "Z", "7", " ", "\n", ",", "[MASK]"].iter().map(|t| CharClass::of(t).name()).collect();
        assert_eq!(classes, ["vowel", "consonant", "consonant", "digit", "space", "space", "punctuation", "special"]);
    }

    #[test]
    fn round_trip_and_specials() {
        let t = CharTokenizer::from_text("hello world");
        assert_eq!(t.n_chars(), 8);
        assert_eq!(t.vocab_size(), 8 + NAMED_SPECIALS.len() + N_SENTINELS);
        let ids = t.encode("hold").unwrap();
        assert_eq!(t.decode(&ids), "hold");
        assert_eq!(t.special("[PAD]"), Some(8));
        assert_eq!(t.token_text(t.special("[MASK]").unwrap()), "[MASK]");
        assert!(t.encode("xyz").unwrap_err().contains("'x'"));
        // samples start from a new line where the text has one, else from a character it has
        assert_eq!(CharTokenizer::from_text("oh\nho").sample_prompt(), "\n");
        // a typed ⏎ is a new line, where the text has new lines and not the sign
        let lines = CharTokenizer::from_text("oh\nho");
        assert_eq!(lines.encode_typed("oh⏎ho").unwrap(), lines.encode("oh\nho").unwrap());
        assert!(CharTokenizer::from_text("oh ho").encode_typed("oh⏎").is_err(), "no new line to stand for");
        let signs = CharTokenizer::from_text("a⏎b\nc");
        assert_ne!(signs.encode_typed("⏎").unwrap(), signs.encode("\n").unwrap(), "a text that has the sign keeps it");
        assert_eq!(CharTokenizer::from_text("hello").sample_prompt(), "e");
        let s3 = t.sentinel(3);
        assert_eq!(t.token_text(s3), "<S3>");
        assert_eq!(t.sentinel_index(s3), Some(3));
        assert_eq!(t.sentinel_index(t.special_id("<bad>")), None);
        assert!(t.is_char(0) && !t.is_char(s3));
    }
}
