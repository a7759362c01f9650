//! Corpora and batches. A corpus is split 90/10 by position into train and validation
//! (as nanoGPT does for tiny shakespeare); batches are windows at seeded random offsets (for a
//! corpus of records, the digits' images, at the start of a random record).

use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;

/// A tokenized text corpus with its train/validation split.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub name: String,
    pub tokenizer: CharTokenizer,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    /// Where the text is a run of equal records (the digits' images, [`crate::digits`]): their
    /// length and the validation records' labels. `None` for a text.
    pub records: Option<Records>,
}

/// A corpus made of records of one length, each labelled (the digits: an image each).
#[derive(Clone, Debug, PartialEq)]
pub struct Records {
    /// Tokens per record; windows start at multiples of it.
    pub len: usize,
    /// The label of each validation record, in order (the probe set's labels).
    pub val_labels: Vec<usize>,
    /// How many labels there are.
    pub classes: usize,
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

/// The most a text file of one's own may hold: the page keeps it in memory, and its tokens as
/// 32-bit ids four times over (a copy per worker).
pub const MAX_UPLOAD_BYTES: usize = 16 << 20;

/// The most distinct characters a text of one's own may have: each is a row of the embedding
/// table and a column of the logits (a CJK text has a few thousand; binary data has them all).
pub const MAX_UPLOAD_CHARS: usize = 4000;

/// Corpus names of texts of one's own start with this; the built-in ones are `spec::CORPORA`.
pub const UPLOAD_PREFIX: &str = "file:";

/// Whether corpus `name` is a text of one's own (a file chosen on the page or `--data`), which
/// a link cannot carry.
pub fn is_upload(name: &str) -> bool {
    name.starts_with(UPLOAD_PREFIX)
}

/// The most characters of a file's name that its corpus name keeps ([`upload_corpus_name`]).
const MAX_NAME_CHARS: usize = 40;

/// Whether a corpus name keeps character `c` of a file's name as it is (others become `_`):
/// what an address may carry unescaped.
fn kept_in_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Refuses a `file:` corpus name that [`upload_corpus_name`] could not have written (an
/// address edited by hand): `file:NAME:HASH`, NAME of at most 40 letters, digits, `.`, `-` or
/// `_`, HASH 8 hexadecimal digits. Without it such a name would only be refused at Start, as a
/// file "" the page does not hold.
pub fn check_upload_name(name: &str) -> Result<(), String> {
    let well_formed = name.strip_prefix(UPLOAD_PREFIX).and_then(|rest| rest.rsplit_once(':')).is_some_and(|(file, hash)| {
        (1..=MAX_NAME_CHARS).contains(&file.len())
            && file.chars().all(kept_in_name)
            && hash.len() == 8
            && hash.chars().all(|c| c.is_ascii_hexdigit())
    });
    if well_formed {
        Ok(())
    } else {
        Err(format!("corpus {name:?} is not a text of one's own as the lab names one (file:NAME:HASH, given when a file is chosen under Text)"))
    }
}

/// The file name an upload's corpus name was made from (`file:notes.txt:1a2b3c4d` → `notes.txt`).
pub fn upload_file_name(name: &str) -> &str {
    let rest = name.strip_prefix(UPLOAD_PREFIX).unwrap_or(name);
    rest.rsplit_once(':').map_or(rest, |(file, _)| file)
}

/// Refuses a file of `bytes` bytes as too large for a text of one's own (checked before it is
/// read, so that a page never reads a huge file into memory).
pub fn check_upload_size(file_name: &str, bytes: u64) -> Result<(), String> {
    if bytes > MAX_UPLOAD_BYTES as u64 {
        return Err(format!(
            "{file_name} is {:.1} MB; the lab takes text files of at most {} MB",
            bytes as f64 / (1 << 20) as f64,
            MAX_UPLOAD_BYTES >> 20
        ));
    }
    Ok(())
}

/// How corpus `name` is called in messages: an upload by its file name.
fn shown_name(name: &str) -> &str {
    if is_upload(name) { upload_file_name(name) } else { name }
}

/// A corpus name for the text of file `file_name`: its name kept to characters that read well
/// in an address (at most 40), and a hash of its content, so that two files of the same name
/// are two corpora.
pub fn upload_corpus_name(file_name: &str, text: &str) -> String {
    let clean: String = file_name
        .chars()
        .map(|c| if kept_in_name(c) { c } else { '_' })
        .take(MAX_NAME_CHARS)
        .collect();
    // FNV-1a: stable across builds and targets (std's hasher is not)
    let hash = text.bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193));
    format!("{UPLOAD_PREFIX}{}:{hash:08x}", if clean.is_empty() { "text" } else { &clean })
}

/// A file of one's own that [`check_upload`] accepted: its corpus name, its text and its
/// vocabulary. What the page needs of it; [`Corpus::from_upload`] goes on to tokenize it.
pub struct CheckedUpload<'a> {
    pub name: String,
    pub text: &'a str,
    pub tokenizer: CharTokenizer,
}

/// Checks the bytes of a file of one's own, or says why it cannot be a corpus: too large, not
/// UTF-8 text, binary (NUL bytes), too short, one character repeated, or too many distinct
/// characters. The text is not tokenized (the page checks a file and sends it on; the worker
/// tokenizes it).
pub fn check_upload<'a>(file_name: &str, bytes: &'a [u8]) -> Result<CheckedUpload<'a>, String> {
    check_upload_size(file_name, bytes.len() as u64)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!("{file_name} is not UTF-8 text (first bad byte at offset {}): the lab trains on plain text", e.valid_up_to())
    })?;
    if let Some(at) = text.find('\0') {
        return Err(format!("{file_name} looks binary (a NUL byte at offset {at}): the lab trains on plain text"));
    }
    let name = upload_corpus_name(file_name, text);
    check_length(&name, text)?;
    let tokenizer = CharTokenizer::from_text(text);
    if tokenizer.n_chars() == 1 {
        return Err(format!("{file_name} repeats one character: there is nothing to learn from it"));
    }
    if tokenizer.n_chars() > MAX_UPLOAD_CHARS {
        return Err(format!(
            "{file_name} has {} distinct characters; the lab's character models take at most {MAX_UPLOAD_CHARS}",
            tokenizer.n_chars()
        ));
    }
    Ok(CheckedUpload { name, text, tokenizer })
}

/// Refuses a text too short to train on, named as corpus `name`.
fn check_length(name: &str, text: &str) -> Result<(), String> {
    let count = text.chars().count();
    if count < 100 {
        return Err(format!("corpus {:?} is too short to train on ({count} characters; at least 100 needed)", shown_name(name)));
    }
    Ok(())
}

impl Corpus {
    /// A corpus from the bytes of a file of one's own, or why it cannot be one ([`check_upload`]).
    pub fn from_upload(file_name: &str, bytes: &[u8]) -> Result<Self, String> {
        let checked = check_upload(file_name, bytes)?;
        Self::tokenize(&checked.name, checked.text, checked.tokenizer)
    }

    /// Tokenizes `text` with its own character vocabulary and splits it 90/10.
    pub fn from_text(name: &str, text: &str) -> Result<Self, String> {
        check_length(name, text)?;
        Self::tokenize(name, text, CharTokenizer::from_text(text))
    }

    /// Encodes `text` with `tokenizer` (built from it) and splits it 90/10.
    fn tokenize(name: &str, text: &str, tokenizer: CharTokenizer) -> Result<Self, String> {
        let ids = tokenizer.encode(text)?;
        let n_train = ids.len() * 9 / 10;
        Ok(Self { name: name.to_string(), tokenizer, train: ids[..n_train].to_vec(), val: ids[n_train..].to_vec(), records: None })
    }

    /// Built-in corpus `name` from the text of its asset file (`spec::CORPORA`): the digits'
    /// CSV becomes images ([`crate::digits`]), any other asset is a text.
    pub fn builtin(name: &str, asset: &str) -> Result<Self, String> {
        if name == crate::digits::NAME { crate::digits::corpus(asset) } else { Self::from_text(name, asset) }
    }

    fn tokens(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Checks that both splits hold at least one window of `seq + 1` tokens (more than
    /// `seq + 1`: a window starts anywhere below the last). The refusal says how long a text
    /// would do: the validation part is the last tenth, ⌈n / 10⌉ of n characters, so n must be
    /// at least 10 × (seq + 1) + 1.
    pub fn check_block(&self, seq: usize) -> Result<(), String> {
        for split in [Split::Train, Split::Val] {
            let has = self.tokens(split).len();
            if has <= seq + 1 {
                let part = match split {
                    Split::Train => "training part (the first 90 %)",
                    Split::Val => "validation part (the last 10 %)",
                };
                return Err(format!(
                    "corpus {:?} is too short for context {seq}: its {part} has {has} characters, and a window needs {}; \
                     give a text of at least {} characters, or choose a smaller context",
                    shown_name(&self.name),
                    seq + 2,
                    10 * (seq + 1) + 1
                ));
            }
        }
        Ok(())
    }

    /// `batch` windows of `seq + 1` tokens at random offsets of `split` (at the start of a
    /// random record, where the corpus has records: a row then begins with a whole image).
    pub fn sample(&self, split: Split, batch: usize, seq: usize, rng: &mut Rng) -> CleanBatch {
        let data = self.tokens(split);
        let mut tokens = Vec::with_capacity(batch * (seq + 1));
        for _ in 0..batch {
            let start = match &self.records {
                // records that start early enough to hold a whole window (at least the first:
                // `check_block` asks for more than `seq + 1` tokens)
                Some(r) => r.len * rng.below((data.len() - seq - 1) / r.len + 1),
                None => rng.below(data.len() - seq - 1),
            };
            tokens.extend_from_slice(&data[start..start + seq + 1]);
        }
        CleanBatch { batch, seq, tokens }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_of_ones_own_becomes_a_corpus_named_by_file_and_content() {
        let text = "the cat sat on the mat. ".repeat(20);
        let c = Corpus::from_upload("my notes (v2).txt", text.as_bytes()).unwrap();
        assert!(is_upload(&c.name), "{}", c.name);
        assert_eq!(upload_file_name(&c.name), "my_notes__v2_.txt");
        assert_eq!(c.name, upload_corpus_name("my notes (v2).txt", &text), "the name is stable");
        // what the page checks (without tokenizing) is the corpus the worker builds
        let checked = check_upload("my notes (v2).txt", text.as_bytes()).unwrap();
        assert_eq!((checked.name.as_str(), checked.text, &checked.tokenizer), (c.name.as_str(), text.as_str(), &c.tokenizer));
        let other = Corpus::from_upload("my notes (v2).txt", text.replace("cat", "dog").as_bytes()).unwrap();
        assert_ne!(c.name, other.name, "another content under the same file name is another corpus");
        assert!(!is_upload("tiny-shakespeare"));
        assert_eq!(check_upload_name(&c.name), Ok(()));
        assert_eq!(check_upload_name(&upload_corpus_name("", &text)), Ok(()), "a nameless file is \"text\"");
        for odd in ["file:", "file::", "file:x.txt", "file:x.txt:abc", "file::1a2b3c4d", "file:a b:1a2b3c4d", "file:\0:1a2b3c4d", "file:x:1a2b3c4g"] {
            let e = check_upload_name(odd).unwrap_err();
            assert!(e.contains("file:NAME:HASH"), "{odd}: {e}");
        }
    }

    #[test]
    fn odd_files_are_refused_with_the_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "too short to train on (0 characters"),
            (b"tiny".to_vec(), "too short to train on (4 characters"),
            (vec![0xff, 0xfe, b'a', b'b'], "not UTF-8 text (first bad byte at offset 0)"),
            ([b"hello".as_slice(), &[0u8; 200]].concat(), "looks binary (a NUL byte at offset 5)"),
            ((0..5000u32).filter_map(|i| char::from_u32(0x4e00 + i)).collect::<String>().into_bytes(), "5000 distinct characters"),
            (vec![b'a'; MAX_UPLOAD_BYTES + 1], "at most 16 MB"),
            (vec![b'a'; 500], "repeats one character"),
        ];
        for (bytes, expected) in cases {
            let e = Corpus::from_upload("odd.txt", &bytes).unwrap_err();
            assert_eq!(check_upload("odd.txt", &bytes).err(), Some(e.clone()), "the page refuses it alike");
            assert!(e.contains(expected), "expected {expected:?} in {e:?}");
            assert!(!e.contains("file:"), "messages name the file, not the corpus id: {e}");
        }
        let short = Corpus::from_upload("short.txt", "ab".repeat(60).as_bytes()).unwrap();
        let e = short.check_block(64).unwrap_err();
        assert!(e.contains("\"short.txt\" is too short for context 64"), "{e}");
        assert!(e.contains("validation part (the last 10 %) has 12 characters, and a window needs 66; give a text of at least 651 characters"), "{e}");
        // the length it names is enough, one character less is not
        let text: String = (0..651).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        Corpus::from_upload("enough.txt", text.as_bytes()).unwrap().check_block(64).unwrap();
        assert!(Corpus::from_upload("short.txt", &text.as_bytes()[..650]).unwrap().check_block(64).is_err());
    }

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
    fn windows_of_records_start_where_a_record_starts() {
        // 30 records of 8 tokens, "^" then a letter of its own 7 times
        let text: String = (0..30u8).map(|i| format!("^{}", char::from(b'a' + i % 26).to_string().repeat(7))).collect();
        let mut c = Corpus::from_text("t", &text).unwrap();
        c.records = Some(Records { len: 8, val_labels: vec![0; 3], classes: 1 });
        let caret = c.tokenizer.encode("^").unwrap()[0];
        let mut rng = Rng::seeded(3);
        for (split, seq) in [(Split::Train, 5), (Split::Train, 12), (Split::Val, 7), (Split::Val, 20)] {
            let b = c.sample(split, 16, seq, &mut rng);
            for r in 0..16 {
                assert_eq!(b.row(r)[0], caret, "{split:?} row {r} starts a record");
                assert_eq!(b.row(r).len(), seq + 1);
            }
        }
        // every record that holds a whole window is drawn, the last too: the validation
        // part's three records at seq 7, and only its first at seq 20
        let drawn = |seq: usize| -> std::collections::BTreeSet<String> {
            (0..200).map(|i| c.tokenizer.decode(&c.sample(Split::Val, 1, seq, &mut Rng::seeded(i)).row(0)[1..2])).collect()
        };
        assert_eq!(drawn(7).into_iter().collect::<String>(), "bcd");
        assert_eq!(drawn(20).into_iter().collect::<String>(), "b");
    }

    #[test]
    fn too_short_corpus_is_a_clear_error() {
        assert!(Corpus::from_text("t", "short").unwrap_err().contains("too short"));
        let c = Corpus::from_text("t", &"x".repeat(120)).unwrap();
        assert!(c.check_block(64).unwrap_err().contains("context 64"));
    }
}
