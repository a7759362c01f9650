//! The "digits" corpus: handwritten digits read as sequences of pixels, the way Image GPT reads
//! images (Chen et al. 2020, "Generative Pretraining from Pixels"). Each 8×8 image becomes a
//! new line (where an image starts) and its 64 pixels in raster order, one token per pixel,
//! its intensity (0–16) quantised to one of five grey levels (iGPT: 512 colour clusters). Every
//! objective then applies to images unchanged: next-token prediction is iGPT's autoregressive
//! objective, masked LM its BERT objective, position prediction is MP3's image task; and the
//! linear probe asks what iGPT asked of its features: which digit an image shows.
//!
//! The labels never enter the training text: they only label the probe set (held-out images,
//! [`crate::probe_set::ProbeSet::of_views`]). Windows start where an image starts
//! ([`crate::data::Corpus::sample`]), so that at context 64 a row is one whole image, as in iGPT.
//!
//! Data: the UCI "Optical Recognition of Handwritten Digits" test set (Alpaydin & Kaynak,
//! 1998; CC BY 4.0), 1,797 images, as scikit-learn ships it: `assets/digits.csv`, one image
//! per line, 64 intensities then the label.

use crate::data::{Corpus, Records};
use crate::tokenizer::CharTokenizer;

/// The built-in corpus name.
pub const NAME: &str = "digits";
/// Pixels per side of an image.
pub const SIDE: usize = 8;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Tokens per image in the text: the new line that starts it, then its pixels.
pub const RECORD: usize = PIXELS + 1;
/// The grey levels, from the paper's background (0) to full ink (4): characters that read as
/// an image where a token is shown as text (the attention map's axes, the token projection).
pub const PALETTE: [char; 5] = ['·', '░', '▒', '▓', '█'];
/// Classes of the probe: the ten digits.
pub const CLASSES: usize = 10;

/// A held-out 3 (image 1,625 of the data set, in the validation part), as the page offers it
/// to a run on the digits: to continue, to fill in, to read the attention of.
pub const HELD_OUT_THREE: &str = "··▓██▓···▒█▓██░···░▒██·····▓█░·····░█▒······▓▓····░▒██····███▒··";

/// The grey level (0–4) of an intensity 0–16: the nearest of 0, 4, 8, 12, 16.
pub fn level(intensity: u8) -> usize {
    (intensity.min(16) as usize + 2) / 4
}

/// How dark pixel character `c` is, from 0 (background) to 1 (full ink); `None` for a
/// character that is not a pixel (the new line, a special token's text).
pub fn ink(c: &str) -> Option<f32> {
    let mut chars = c.chars();
    let (Some(ch), None) = (chars.next(), chars.next()) else { return None };
    PALETTE.iter().position(|&p| p == ch).map(|l| l as f32 / (PALETTE.len() - 1) as f32)
}

/// One image of the data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// intensities 0–16: [SIDE, SIDE], row-major
    pub pixels: [u8; PIXELS],
    pub label: u8,
}

impl Image {
    /// The image as the corpus writes it: a new line, then a character per pixel.
    pub fn text(&self) -> String {
        std::iter::once('\n').chain(self.pixels.iter().map(|&v| PALETTE[level(v)])).collect()
    }
}

/// Reads the CSV: one image per line, 64 intensities 0–16 then the label 0–9.
pub fn parse(csv: &str) -> Result<Vec<Image>, String> {
    csv.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let bad = |why: &str| format!("digits line {}: {why}", i + 1);
            let values: Vec<u8> = line
                .split(',')
                .map(|v| v.trim().parse::<u8>().map_err(|_| bad(&format!("{v:?} is not a whole number 0–16"))))
                .collect::<Result<_, _>>()?;
            if values.len() != PIXELS + 1 {
                return Err(bad(&format!("{} values, where an image has {PIXELS} pixels and a label", values.len())));
            }
            if values[..PIXELS].iter().any(|&v| v > 16) || values[PIXELS] >= CLASSES as u8 {
                return Err(bad("a pixel above 16 or a label above 9"));
            }
            Ok(Image { pixels: values[..PIXELS].try_into().expect("64 values"), label: values[PIXELS] })
        })
        .collect()
}

/// The corpus of `csv`: its first 90 % of images train, the last 10 % validate (by image, so
/// that no image is cut in two) and label the probe set.
pub fn corpus(csv: &str) -> Result<Corpus, String> {
    let images = parse(csv)?;
    if images.len() < 20 {
        return Err(format!("the digits data holds {} images; at least 20 are needed", images.len()));
    }
    let n_train = images.len() * 9 / 10;
    let text = |part: &[Image]| part.iter().map(Image::text).collect::<String>();
    let (train_text, val_text) = (text(&images[..n_train]), text(&images[n_train..]));
    // the vocabulary of every level and the new line, whichever the images use
    let tokenizer = CharTokenizer::from_text(&std::iter::once('\n').chain(PALETTE).collect::<String>());
    Ok(Corpus {
        name: NAME.to_string(),
        train: tokenizer.encode(&train_text)?,
        val: tokenizer.encode(&val_text)?,
        tokenizer,
        records: Some(Records { len: RECORD, val_labels: images[n_train..].iter().map(|im| im.label as usize).collect(), classes: CLASSES }),
    })
}

/// The images a text of the digits holds, as runs of its items (its characters, or the
/// page's cells of them; `is_new_line` tells a new line): an image starts at each new line,
/// and one runs over into another after 64 pixels (a model may not yet end its images); the
/// opening items before any new line are an image too. Nothing before the first new line or
/// after the last is no image; a new line right after another is an empty one.
pub fn split_images<T: Clone>(items: impl IntoIterator<Item = T>, is_new_line: impl Fn(&T) -> bool) -> Vec<Vec<T>> {
    let mut parts: Vec<Vec<T>> = vec![Vec::new()];
    for item in items {
        match is_new_line(&item) {
            true => parts.push(Vec::new()),
            false => parts.last_mut().expect("one part at least").push(item),
        }
    }
    let last = parts.len() - 1;
    let mut images = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        if part.is_empty() && (i == 0 || i == last) {
            continue;
        }
        let mut chunks: Vec<Vec<T>> = part.chunks(PIXELS).map(<[T]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        images.extend(chunks);
    }
    images
}

/// A text of the digits drawn for a terminal: each image ([`split_images`], as the page draws
/// them) as 8 rows of 8, up to `across` images side by side, each row of pixels doubled so that
/// an image looks square in a terminal's tall cells.
pub fn drawn(text: &str, across: usize) -> String {
    let images = split_images(text.chars(), |c| *c == '\n');
    let mut out = String::new();
    for strip in images.chunks(across.max(1)) {
        // (an unfinished image takes only the rows it has begun)
        let rows = strip.iter().map(|image| image.len().div_ceil(SIDE)).max().unwrap_or(0);
        for row in 0..rows {
            let line: Vec<String> = strip.iter().map(|image| {
                (0..SIDE).map(|x| image.get(row * SIDE + x).map_or("  ".to_string(), |c| format!("{c}{c}"))).collect()
            }).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out.push('\n');
    }
    out.trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_drawn_for_a_terminal_as_square_images_side_by_side() {
        let three = format!("\n{HELD_OUT_THREE}\n{HELD_OUT_THREE}\n██");
        let two = drawn(&three, 2);
        let lines: Vec<&str> = two.lines().collect();
        assert_eq!(lines.len(), SIDE + 2, "a strip of 8 rows, a blank line, the unfinished image's one row: {two}");
        assert_eq!(lines[0], "····▓▓████▓▓····  ····▓▓████▓▓····", "two images side by side, each pixel doubled");
        assert_eq!(lines[SIDE], "", "the strips apart");
        assert_eq!(lines[SIDE + 1], "████", "an unfinished image's first pixels");
        assert_eq!(two.chars().filter(|c| PALETTE.contains(c)).count(), 2 * (2 * PIXELS + 2));
        assert_eq!(drawn(&format!("\n{HELD_OUT_THREE}"), 8).lines().count(), SIDE, "a whole image, nothing after it");
    }

    /// The shipped asset.
    fn shipped() -> String {
        std::fs::read_to_string(crate::repo_root().join("assets/digits.csv")).unwrap()
    }

    #[test]
    fn the_asset_holds_the_uci_test_set() {
        let images = parse(&shipped()).unwrap();
        assert_eq!(images.len(), 1797);
        for d in 0..10u8 {
            let n = images.iter().filter(|im| im.label == d).count();
            assert!((174..=183).contains(&n), "digit {d}: {n} images");
        }
        // the first image is a 0: ink around an empty middle
        let zero = &images[0];
        assert_eq!(zero.label, 0);
        assert_eq!(zero.text().chars().count(), RECORD);
        assert_eq!(&zero.text()[..1], "\n");
        // and the asset is the shared data set, byte for byte, where the checkout has it beside
        let shared = crate::repo_root().join("../shared/data/digits.csv.gz");
        if shared.exists() {
            let out = std::process::Command::new("gzip").arg("-dc").arg(&shared).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), shipped(), "assets/digits.csv is ../shared/data/digits.csv.gz unpacked");
        }
    }

    #[test]
    fn the_offered_three_is_a_held_out_image() {
        let images = parse(&shipped()).unwrap();
        let n_train = images.len() * 9 / 10;
        let at = images.iter().position(|im| im.text() == format!("\n{HELD_OUT_THREE}")).expect("an image of the data set");
        assert!(at >= n_train, "held out: never trained on");
        assert_eq!(images[at].label, 3);
    }

    #[test]
    fn intensities_fall_into_five_levels() {
        let levels: Vec<usize> = (0..=16).map(level).collect();
        assert_eq!(levels, [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4]);
        assert_eq!(ink("·"), Some(0.0));
        assert_eq!(ink("█"), Some(1.0));
        assert_eq!(ink("\n"), None);
        assert_eq!(ink("[MASK]"), None);
    }

    #[test]
    fn the_corpus_is_images_after_new_lines_split_by_image() {
        let c = corpus(&shipped()).unwrap();
        assert_eq!(c.tokenizer.n_chars(), 6, "the new line and five levels");
        assert_eq!(crate::spec::builtin_vocab(NAME), Some(c.tokenizer.vocab_size()));
        let records = c.records.as_ref().unwrap();
        assert_eq!((c.train.len() / RECORD, c.val.len() / RECORD), (1617, 180));
        assert_eq!((c.train.len() % RECORD, c.val.len() % RECORD), (0, 0));
        assert_eq!(records.val_labels.len(), 180);
        let nl = c.tokenizer.encode("\n").unwrap()[0];
        for split in [&c.train, &c.val] {
            for (i, &t) in split.iter().enumerate() {
                assert_eq!(t == nl, i % RECORD == 0, "a new line exactly where each image starts");
            }
        }
    }

    #[test]
    fn odd_data_is_refused_with_the_line() {
        assert!(parse("1,2,3\n").unwrap_err().contains("line 1: 3 values"));
        let mut row = vec!["0"; 64];
        row.push("3");
        let good = row.join(",");
        assert_eq!(parse(&good).unwrap()[0].label, 3);
        assert!(parse(&format!("{good}\n{}", good.replacen('0', "17", 1))).unwrap_err().contains("line 2: a pixel above 16"));
        assert!(parse(&good.replacen('0', "x", 1)).unwrap_err().contains("\"x\" is not a whole number"));
        assert!(corpus(&good).unwrap_err().contains("1 images"));
    }
}
