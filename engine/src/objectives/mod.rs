//! Pretraining objectives: how a clean batch becomes a training signal.
//!
//! One objective = one file implementing [`Objective`], listed once in [`REGISTRY`]. The page
//! and the CLI build their choices and parameter controls from the registry, so adding an
//! objective needs no UI code. The trait does not assume next-token prediction: an objective
//! decides the model's input, the attention pattern, whether positions are given, which head
//! scores the output (vocabulary, binary, position, projection), the targets and the loss.
//! A weighted mixture of objectives is a run's objective (see `train.rs`).
//!
//! The model architecture is a separate choice (UL2: architecture ≠ objective): an objective
//! describes its batch for a decoder-only stack; on the encoder–decoder architecture a prefix
//! becomes the encoder's input and the rest the decoder's (see `model.rs`).

mod causal_lm;
mod conditional_training;
mod contrastive;
pub mod denoising;
mod masked_lm;
mod position_prediction;
mod prefix_lm;
mod random_token_detection;
mod span_corruption;
mod swapped_lm;
mod ul2_mixture;

use std::collections::BTreeMap;

#[cfg(feature = "training")]
use burn::tensor::activation::{log_sigmoid, log_softmax};
#[cfg(feature = "training")]
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::CleanBatch;
use crate::model::{AttentionMode, Head};
#[cfg(feature = "training")]
use crate::model::{ModelOutput, cross_entropy};
use crate::rng::Rng;
use crate::tokenizer::CharTokenizer;

pub use causal_lm::CausalLm;
pub use conditional_training::ConditionalTraining;
pub use contrastive::Contrastive;
pub use masked_lm::MaskedLm;
pub use position_prediction::PositionPrediction;
pub use prefix_lm::PrefixLm;
pub use random_token_detection::RandomTokenDetection;
pub use span_corruption::SpanCorruption;
pub use swapped_lm::SwappedLm;
pub use ul2_mixture::Ul2Mixture;

/// Target value meaning "no loss at this position".
pub const IGNORE: i32 = -1;

/// The target of a position a person asks about ("ask the model"): the model answers there,
/// but no right answer is known. Never reaches a loss.
pub const ASKED: i32 = -2;

/// What a person types for a hidden character when asking a model ("ask the model").
pub const BLANK: char = '_';

/// What kind of value a parameter takes.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ParamKind {
    /// A number in `[min, max]`, shown as a slider with `step`.
    Number { min: f64, max: f64, default: f64, step: f64 },
    /// A comma-separated list of words (e.g. the "bad" words of conditional training).
    Words { default: &'static str },
}

/// One adjustable parameter of an objective (a rate, a span length, a temperature, …).
#[derive(Clone, Debug, Serialize)]
pub struct ParamInfo {
    pub key: &'static str,
    pub label: &'static str,
    #[serde(flatten)]
    pub kind: ParamKind,
    pub help: &'static str,
}

impl ParamInfo {
    /// A numeric parameter (the common case), for terse declarations.
    pub const fn number(key: &'static str, label: &'static str, min: f64, max: f64, default: f64, step: f64, help: &'static str) -> Self {
        Self { key, label, kind: ParamKind::Number { min, max, default, step }, help }
    }

    pub fn default_value(&self) -> ParamValue {
        match self.kind {
            ParamKind::Number { default, .. } => ParamValue::Number(default),
            ParamKind::Words { default } => ParamValue::Text(default.to_string()),
        }
    }

    /// "0 to 1" / "a comma-separated word list", for messages and docs.
    pub fn range_text(&self) -> String {
        match self.kind {
            ParamKind::Number { min, max, .. } => format!("{min} to {max}"),
            ParamKind::Words { .. } => "a comma-separated word list".into(),
        }
    }
}

/// How an objective's example lines up with the clean text it came from: the page draws an
/// example on the digits as images where the input keeps the text's positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Alignment {
    /// The input keeps every position; the target at a position is the token after it
    /// (next-token prediction and its kin).
    NextToken,
    /// The input keeps every position; the target at a position is that position's own token
    /// (masking, swapping).
    SameToken,
    /// The input keeps every position; its targets are not tokens (verdicts, positions).
    InputOnly,
    /// The input does not keep the text's positions (sentinels stand for spans, views are
    /// cropped): no image.
    Moved,
}

/// What the registry tells the UI and the CLI about an objective.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectiveInfo {
    /// Stable id used in specs, URLs and the CLI (`causal_lm`).
    pub id: &'static str,
    pub name: &'static str,
    /// The paper(s) it comes from.
    pub paper: &'static str,
    /// The definition, in one or two sentences (the docs table).
    pub definition: &'static str,
    /// A plain-language paragraph for students (beside "what the model sees").
    pub explanation: &'static str,
    /// Whether a model trained on it can generate text left to right (so samples are shown).
    pub generates: bool,
    /// What a model trained on it does with a text a person types (the page's "ask the
    /// model"), or "" where it answers none: see [`Objective::question`]. It names `_`
    /// ([`BLANK`]) where the objective answers blanks (the page then offers a line with one).
    pub asks: &'static str,
    /// How its example lines up with the clean text, for drawing it as an image (the digits).
    pub alignment: Alignment,
    pub params: &'static [ParamInfo],
}

/// One parameter value: a number, or text for word lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Number(f64),
    Text(String),
}

/// Parameter values of one objective in one run, checked against its [`ParamInfo`]s.
pub type Params = BTreeMap<String, ParamValue>;

/// What happened to one input position, for the "what the model sees" view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// Untouched text.
    Plain,
    /// Replaced by `[MASK]`.
    Masked,
    /// Replaced by another token.
    Replaced,
    /// Chosen for prediction but left unchanged (BERT's 10%).
    Kept,
    /// A sentinel standing for a removed span (T5).
    Sentinel,
    /// A token the decoder reads back: the target part of an "input ⧺ target" sequence.
    Target,
    /// A mode token (`[R]`, `[X]`, `[S]`) or control tag (`<good>`, `<bad>`).
    Control,
    /// Padding.
    Pad,
    /// A key hidden from attention (position prediction's key masking).
    HiddenKey,
}

/// A clean batch turned into what the model sees and what it is scored on (CPU side).
/// Serialisable, so that half of a batch can go to a second worker (`train/data_parallel.rs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prepared {
    /// Rows (contrastive objectives have two views per clean row).
    pub batch: usize,
    pub seq: usize,
    /// inputs: [batch, seq] token ids
    pub inputs: Vec<u32>,
    pub attention: AttentionMode,
    /// Whether the model adds position embeddings.
    pub use_positions: bool,
    pub head: Head,
    /// targets: [batch, seq]; [`IGNORE`] where there is no loss. Class ids for the vocabulary
    /// and position heads, 0/1 for the binary head; unused by the projection head.
    pub targets: Vec<i32>,
    /// Projection head only: `positives[r]` is the row that is row `r`'s positive.
    pub positives: Vec<usize>,
    /// Projection head only: InfoNCE temperature.
    pub temperature: f64,
    /// Dropout probability applied to the input embeddings (SimCSE's two dropout views).
    pub embed_dropout: f64,
    /// marks: [batch, seq], for the teaching view.
    pub marks: Vec<Mark>,
}

impl Prepared {
    /// A batch with every position plain, no targets yet, vocabulary head.
    pub fn new(batch: usize, seq: usize, inputs: Vec<u32>, attention: AttentionMode) -> Self {
        assert_eq!(inputs.len(), batch * seq, "inputs must be [batch, seq]");
        Self {
            batch,
            seq,
            inputs,
            attention,
            use_positions: true,
            head: Head::Vocab,
            targets: vec![IGNORE; batch * seq],
            positives: Vec::new(),
            temperature: 1.0,
            embed_dropout: 0.0,
            marks: vec![Mark::Plain; batch * seq],
        }
    }

    /// Number of positions that carry a loss.
    pub fn n_targets(&self) -> usize {
        if self.head == Head::Projection {
            return self.batch;
        }
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }

    pub fn row_inputs(&self, r: usize) -> &[u32] {
        &self.inputs[r * self.seq..(r + 1) * self.seq]
    }

    pub fn row_targets(&self, r: usize) -> &[i32] {
        &self.targets[r * self.seq..(r + 1) * self.seq]
    }

    pub fn row_marks(&self, r: usize) -> &[Mark] {
        &self.marks[r * self.seq..(r + 1) * self.seq]
    }

    /// Rows `start..start + len` as a batch of their own. Not for the projection head, whose
    /// loss compares every row with every other (the rows do not split).
    pub fn rows(&self, start: usize, len: usize) -> Prepared {
        assert!(self.head != Head::Projection, "a contrastive batch does not split by rows");
        assert!(start + len <= self.batch, "rows {start}..{} of a batch of {}", start + len, self.batch);
        let s = self.seq;
        let cells = start * s..(start + len) * s;
        let attention = match &self.attention {
            AttentionMode::Prefix(prefix) => AttentionMode::Prefix(prefix[start..start + len].to_vec()),
            AttentionMode::KeyMask { causal, seq, visible } => {
                AttentionMode::KeyMask { causal: *causal, seq: *seq, visible: visible[start * seq..(start + len) * seq].to_vec() }
            }
            mode => mode.clone(),
        };
        Prepared {
            batch: len,
            seq: s,
            inputs: self.inputs[cells.clone()].to_vec(),
            attention,
            use_positions: self.use_positions,
            head: self.head,
            targets: self.targets[cells.clone()].to_vec(),
            positives: Vec::new(),
            temperature: self.temperature,
            embed_dropout: self.embed_dropout,
            marks: self.marks[cells].to_vec(),
        }
    }
}

/// Prepared targets on the device, for [`Objective::loss`]: each uploaded for the head whose
/// loss reads it, and only then (a step uploads one or two of them).
#[cfg(feature = "training")]
pub struct DeviceTargets {
    /// ids: [batch * seq] 0/1 labels, ignored positions hold 0 (binary head only)
    pub ids: Option<Tensor<1, Int>>,
    /// weights: [batch * seq], 1 where a target counts, 0 where ignored (binary head only)
    pub weights: Option<Tensor<1>>,
    /// classes: [batch * seq], the class ids as floats, −1 where ignored: the fused
    /// cross-entropy's targets, `model::cross_entropy` (vocabulary and position heads only)
    pub classes: Option<Tensor<1>>,
    /// Number of targets that count, known on the CPU so the mean needs no device read.
    pub count: usize,
    /// positives: `[batch]` (projection head only)
    pub positives: Option<Tensor<1, Int>>,
    /// not_self: `[batch, batch]`, −1e9 on the diagonal and 0 elsewhere, so that no row picks
    /// itself (projection head only; uploaded, where `Tensor::eye` would launch four kernels)
    pub not_self: Option<Tensor<2>>,
}

#[cfg(feature = "training")]
impl DeviceTargets {
    pub fn new(prepared: &Prepared, device: &Device) -> Self {
        let n = prepared.targets.len();
        let binary = prepared.head == Head::Binary;
        let ids = binary.then(|| {
            let ids: Vec<i32> = prepared.targets.iter().map(|&t| t.max(0)).collect();
            Tensor::from_data(TensorData::new(ids, [n]), device)
        });
        let weights = binary.then(|| {
            let weights: Vec<f32> = prepared.targets.iter().map(|&t| if t == IGNORE { 0.0 } else { 1.0 }).collect();
            Tensor::from_data(TensorData::new(weights, [n]), device)
        });
        let classes = matches!(prepared.head, Head::Vocab | Head::Position).then(|| {
            let classes: Vec<f32> = prepared.targets.iter().map(|&t| if t == IGNORE { -1.0 } else { t as f32 }).collect();
            Tensor::from_data(TensorData::new(classes, [n]), device)
        });
        let positives = (prepared.head == Head::Projection).then(|| {
            let p: Vec<i32> = prepared.positives.iter().map(|&p| p as i32).collect();
            Tensor::from_data(TensorData::new(p, [prepared.batch]), device)
        });
        let not_self = (prepared.head == Head::Projection).then(|| {
            let n = prepared.batch;
            let values: Vec<f32> = (0..n * n).map(|i| if i / n == i % n { -1e9 } else { 0.0 }).collect();
            Tensor::from_data(TensorData::new(values, [n, n]), device)
        });
        Self {
            ids,
            weights,
            classes,
            count: prepared.n_targets(),
            positives,
            not_self,
        }
    }
}

/// Everything an objective may need besides the batch.
pub struct Context<'a> {
    pub tokenizer: &'a CharTokenizer,
    pub params: &'a Params,
    /// Character ids from the most to the least frequent in the training text (C-RTS builds
    /// its clusters of similar tokens as buckets of this list).
    pub by_frequency: &'a [u32],
    /// The model's longest sequence (the position head's number of classes).
    pub block_size: usize,
}

/// The value of parameter `key` in `params`, or its declared default when unset. The key
/// must be declared by `info` (asking for another is a programming error).
pub fn param_value(info: &ObjectiveInfo, params: &Params, key: &str) -> ParamValue {
    params.get(key).cloned().unwrap_or_else(|| {
        info.params
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("{} declares no parameter {key}", info.id))
            .default_value()
    })
}

/// [`param_value`] of a numeric parameter.
pub fn number_param(info: &ObjectiveInfo, params: &Params, key: &str) -> f64 {
    match param_value(info, params, key) {
        ParamValue::Number(v) => v,
        ParamValue::Text(_) => panic!("{}.{key} is not a number", info.id),
    }
}

impl Context<'_> {
    /// The run's value of a numeric parameter (its default when unset).
    pub fn param(&self, info: &ObjectiveInfo, key: &str) -> f64 {
        number_param(info, self.params, key)
    }

    /// The run's value of a text parameter (its default when unset).
    pub fn text(&self, info: &ObjectiveInfo, key: &str) -> String {
        match param_value(info, self.params, key) {
            ParamValue::Text(v) => v,
            ParamValue::Number(_) => panic!("{}.{key} is not text", info.id),
        }
    }
}

/// How a clean example becomes a training signal.
pub trait Objective: Sync {
    fn info(&self) -> &'static ObjectiveInfo;

    /// CPU side, deterministic given the RNG: corrupt/split the clean batch.
    fn prepare(&self, clean: &CleanBatch, ctx: &Context, rng: &mut Rng) -> Prepared;

    /// Device side: the scalar loss from the model's outputs. The default scores the head the
    /// prepared batch asked for: cross-entropy (vocabulary, position), binary cross-entropy
    /// (binary), InfoNCE (projection).
    #[cfg(feature = "training")]
    fn loss(&self, out: &ModelOutput, prepared: &Prepared, targets: &DeviceTargets) -> Tensor<1> {
        match prepared.head {
            Head::Vocab | Head::Position => token_cross_entropy(out.logits.clone(), targets),
            Head::Binary => binary_cross_entropy(out.logits.clone(), targets),
            Head::Projection => info_nce(out.pooled.clone().expect("projection head gives pooled vectors"), targets, prepared.temperature),
        }
    }

    /// Checks that go beyond each parameter's own range (e.g. weights that must not all be 0).
    fn check(&self, _params: &Params) -> Result<(), String> {
        Ok(())
    }

    /// A count the page shows beside generated samples, as (hits, out of): conditional
    /// training counts bad words. None for objectives that have nothing to count.
    fn score_sample(&self, _text: &str, _ctx: &Context) -> Option<(usize, usize)> {
        None
    }

    /// Tokens put before the prompt when sampling (conditional training asks for `<good>`).
    fn sample_prefix(&self, _tokenizer: &CharTokenizer) -> Vec<u32> {
        Vec::new()
    }

    /// The question a person puts to a model trained with this objective about a text they
    /// typed (the page's "ask the model"): one row for the model to read, in this objective's
    /// own terms (its corruption, attention and head), with the positions to answer scored
    /// ([`ASKED`] where no right answer is known). `text` holds the typed characters, `None`
    /// where the person typed [`BLANK`] for a hidden one. `None` for an objective that answers
    /// no typed text (the generators continue it instead, `Trainer::ask`); `Some(Err(hint))`
    /// says how to ask it.
    fn question(&self, _text: &[Option<u32>], _ctx: &Context) -> Option<Result<Question, String>> {
        None
    }
}

/// What an objective asks of a typed line (see [`Objective::question`]).
#[derive(Clone, Debug)]
pub enum Question {
    /// One row to read once: the answers are the head's outputs at the asked positions.
    Read(Prepared),
    /// A source in T5's format (each run of blanks one sentinel, [`spans_source`]) after which
    /// the model writes each sentinel's stretch of text, one character at a time
    /// (`Trainer::ask`): span corruption and UL2's R-denoiser.
    WriteSpans { source: Vec<u32>, marks: Vec<Mark> },
}

/// A typed line in T5's span-corruption format: each run of [`BLANK`]s becomes one sentinel
/// `<Sk>` (the model decides how long the stretch behind it is). `name` says who refuses a
/// line without a blank, or with more stretches than there are sentinels.
pub fn spans_source(text: &[Option<u32>], tokenizer: &CharTokenizer, name: &str) -> Result<(Vec<u32>, Vec<Mark>), String> {
    let (mut source, mut marks, mut k) = (Vec::new(), Vec::new(), 0);
    for (i, t) in text.iter().enumerate() {
        match t {
            Some(t) => {
                source.push(*t);
                marks.push(Mark::Plain);
            }
            None if i > 0 && text[i - 1].is_none() => {}
            None => {
                if k == crate::tokenizer::N_SENTINELS {
                    return Err(format!("{name} hides at most {} stretches; join some of the {BLANK}s", crate::tokenizer::N_SENTINELS));
                }
                source.push(tokenizer.sentinel(k));
                marks.push(Mark::Sentinel);
                k += 1;
            }
        }
    }
    if k == 0 {
        return Err(format!("{name} writes the stretches of text hidden behind {BLANK}: type one or more {BLANK} in a row for each"));
    }
    Ok((source, marks))
}

/// A typed text as [`Objective::question`] takes it: each character's id, `None` for a
/// [`BLANK`] (a typed ⏎ is a new line, [`CharTokenizer::encode_typed`]). Refuses characters
/// the run's text never had.
pub fn typed(text: &str, tokenizer: &CharTokenizer) -> Result<Vec<Option<u32>>, String> {
    text.chars()
        .map(|c| if c == BLANK { Ok(None) } else { tokenizer.encode_typed(c.encode_utf8(&mut [0; 4])).map(|ids| Some(ids[0])) })
        .collect()
}

/// What a model that writes left to right can be given of a typed line: the text before its
/// first [`BLANK`] (the whole line where it has none).
pub fn before_blank(text: &str) -> &str {
    text.split(BLANK).next().unwrap_or_default()
}

/// The question's row for an objective that answers at every position and has no hidden
/// token (`name` says which, in the hint): the typed characters, every one asked.
pub fn every_position_asked(text: &[Option<u32>], name: &str, attention: AttentionMode) -> Result<Prepared, String> {
    let inputs: Vec<u32> = text.iter().map(|t| t.ok_or_else(|| format!("{name} has no hidden character: type the text without {BLANK}"))).collect::<Result<_, _>>()?;
    let mut p = Prepared::new(1, inputs.len(), inputs, attention);
    p.targets = vec![ASKED; p.seq];
    Ok(p)
}

/// Leaves the vocabulary head's answers among the characters alone: a person asks for
/// characters, and `[MASK]` or a sentinel is never the hidden one. logits: [seq, classes],
/// row-major; the special tokens' classes (after the `n_chars` characters) are set to −∞.
pub fn only_characters(logits: &mut [f32], seq: usize, n_chars: usize) {
    let classes = logits.len() / seq.max(1);
    for (k, v) in logits.iter_mut().enumerate() {
        if k % classes >= n_chars {
            *v = f32::NEG_INFINITY;
        }
    }
}

/// What a run's model answers about a text a person typed (the page's "ask the model").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    /// The text the model writes after the typed one, where an objective of the run generates.
    pub continuation: Option<String>,
    /// One example per objective of the run that answers typed text: the row the model read
    /// and its answers at the asked positions ([`Example::answer`]).
    pub examples: Vec<Example>,
    /// How to ask the objectives that answered nothing of this text, or why they could not.
    pub notes: Vec<String>,
}

#[cfg(feature = "training")]
/// Mean cross-entropy of `logits` against the targets that count.
/// logits: `[batch, seq, classes]` -> loss: `[1]`
pub fn token_cross_entropy(logits: Tensor<3>, targets: &DeviceTargets) -> Tensor<1> {
    let [b, s, v] = logits.dims();
    // One operation forward and one backward (model/cross_entropy.rs), where burn's
    // log-softmax, gather and weighted mean take ~16 GPU launches.
    let classes = targets.classes.clone().expect("vocabulary and position targets carry classes");
    cross_entropy(logits.reshape([b * s, v]), classes, targets.count)
}

#[cfg(feature = "training")]
/// Mean binary cross-entropy of one logit per position against 0/1 labels (ELECTRA's
/// discriminator loss). logits: `[batch, seq, 1]` -> loss: `[1]`
pub fn binary_cross_entropy(logits: Tensor<3>, targets: &DeviceTargets) -> Tensor<1> {
    let [b, s, _] = logits.dims();
    // z: [batch * seq]
    let z = logits.reshape([b * s]);
    let y = targets.ids.clone().expect("binary targets carry labels").float();
    // -(y log σ(z) + (1 - y) log σ(-z))
    let per = (y.clone() * log_sigmoid(z.clone()) + (y.neg().add_scalar(1.0)) * log_sigmoid(z.neg())).neg();
    (per * targets.weights.clone().expect("binary targets carry weights")).sum().mul_scalar(1.0 / targets.count.max(1) as f64)
}

#[cfg(feature = "training")]
/// InfoNCE (NT-Xent, as SimCLR and SimCSE): each row must pick its positive among all other
/// rows of the batch by cosine similarity / temperature. pooled: [rows, dim], unit length.
pub fn info_nce(pooled: Tensor<2>, targets: &DeviceTargets, temperature: f64) -> Tensor<1> {
    let [n, _] = pooled.dims();
    // sim: [rows, rows]
    let sim = pooled.clone().matmul(pooled.transpose()).mul_scalar(1.0 / temperature);
    // A row is never its own candidate.
    let not_self = targets.not_self.clone().expect("projection targets carry the diagonal mask");
    let logp = log_softmax(sim + not_self, 1);
    let positives = targets.positives.clone().expect("projection targets carry positives");
    let picked = logp.gather(1, positives.reshape([n, 1])).reshape([n]);
    picked.mean().neg().reshape([1])
}

/// Every objective the lab knows, in the order the UI lists them.
pub static REGISTRY: &[&dyn Objective] = &[
    &CausalLm,
    &PrefixLm,
    &MaskedLm,
    &SpanCorruption,
    &Ul2Mixture,
    &RandomTokenDetection,
    &SwappedLm,
    &PositionPrediction,
    &Contrastive,
    &ConditionalTraining,
];

/// Looks an objective up by id; the error lists the valid ids.
pub fn find(id: &str) -> Result<&'static dyn Objective, String> {
    REGISTRY.iter().copied().find(|o| o.info().id == id).ok_or_else(|| {
        let ids: Vec<&str> = REGISTRY.iter().map(|o| o.info().id).collect();
        format!("unknown objective {id:?}; valid objectives: {}", ids.join(", "))
    })
}

/// Checks a run's parameter values against the objective's declared kinds and ranges.
pub fn check_params(info: &ObjectiveInfo, params: &Params) -> Result<(), String> {
    for (key, value) in params {
        let Some(p) = info.params.iter().find(|p| p.key == key) else {
            let keys: Vec<&str> = info.params.iter().map(|p| p.key).collect();
            return Err(format!(
                "objective {} has no parameter {key:?}; its parameters: {}",
                info.id,
                if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
            ));
        };
        match (&p.kind, value) {
            (ParamKind::Number { min, max, .. }, ParamValue::Number(v)) => {
                if !v.is_finite() || v < min || v > max {
                    return Err(format!("{}.{key} = {v} is out of range: valid range is {min} to {max}", info.id));
                }
            }
            (ParamKind::Number { min, max, .. }, ParamValue::Text(t)) => {
                return Err(format!("{}.{key} = {t:?} is not a number: valid range is {min} to {max}", info.id));
            }
            (ParamKind::Words { .. }, ParamValue::Text(t)) => {
                if t.split(',').all(|w| w.trim().is_empty()) {
                    return Err(format!("{}.{key} needs at least one word (a comma-separated list)", info.id));
                }
            }
            (ParamKind::Words { .. }, ParamValue::Number(v)) => {
                return Err(format!("{}.{key} = {v} should be a comma-separated word list", info.id));
            }
        }
    }
    Ok(())
}

/// Parses `text` as the value of parameter `key` of `info` (a number, or words).
pub fn parse_param(info: &ObjectiveInfo, key: &str, text: &str) -> Result<ParamValue, String> {
    let p = info.params.iter().find(|p| p.key == key).ok_or_else(|| {
        let keys: Vec<&str> = info.params.iter().map(|p| p.key).collect();
        format!(
            "objective {} has no parameter {key:?}; its parameters: {}",
            info.id,
            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
        )
    })?;
    let value = match p.kind {
        ParamKind::Number { min, max, .. } => ParamValue::Number(
            text.trim().parse().map_err(|_| format!("{}.{key} = {text:?} is not a number: valid range is {min} to {max}", info.id))?,
        ),
        ParamKind::Words { .. } => ParamValue::Text(text.trim().to_string()),
    };
    let mut one = Params::new();
    one.insert(key.to_string(), value.clone());
    check_params(info, &one)?;
    Ok(value)
}

/// One row of a prepared batch as the model gets it, for the "what the model sees" view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExampleRow {
    /// Text of each input token.
    pub tokens: Vec<String>,
    pub marks: Vec<Mark>,
    /// What each position is scored on ("" where nothing): a token, "replaced"/"original",
    /// or a position number.
    pub targets: Vec<String>,
}

/// One example of the current batch, as the model sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub objective: String,
    pub head: Head,
    /// The attention pattern of the first row: `attention[q][k]` = may query q see key k.
    pub attention: Vec<Vec<bool>>,
    pub rows: Vec<ExampleRow>,
    /// For contrastive objectives: the rows shown are the two views of one text.
    pub note: String,
    /// The model's answer, when read, at each position of the first row that is scored: its
    /// most likely class, written as `rows[0].targets` writes the target (so the two compare),
    /// "" where nothing is scored, and also at an asked sentinel whose stretch the model leaves
    /// empty (a target of "?": see `Trainer::ask`). Empty where not read (contrastive
    /// objectives, whose score compares rows rather than positions).
    #[serde(default)]
    pub answers: Vec<String>,
    /// The probability the model gives each of `answers` (0 where there is none).
    #[serde(default)]
    pub confidence: Vec<f32>,
}

impl Example {
    /// Row 0 of `prepared` (and its positive, for contrastive objectives).
    pub fn from_prepared(objective: &str, prepared: &Prepared, tokenizer: &CharTokenizer) -> Self {
        let mut rows = vec![0];
        let mut note = String::new();
        if prepared.head == Head::Projection {
            rows.push(prepared.positives[0]);
            note = format!("rows 1 and 2 are two views of the same text (its positive pair); the other {} rows are negatives", prepared.batch.saturating_sub(2));
        }
        let s = prepared.seq;
        let attention = (0..s).map(|q| (0..s).map(|k| prepared.attention.allows(0, q, k)).collect()).collect();
        let rows = rows
            .into_iter()
            .map(|r| {
                let tokens = prepared.row_inputs(r).iter().map(|&t| tokenizer.token_text(t)).collect();
                let targets = prepared
                    .row_targets(r)
                    .iter()
                    .map(|&t| match (prepared.head, t) {
                        (Head::Projection, _) => String::new(),
                        (_, IGNORE) => String::new(),
                        (_, ASKED) => "?".into(),
                        (Head::Vocab, t) => tokenizer.token_text(t as u32),
                        (Head::Binary, 1) => "replaced".into(),
                        (Head::Binary, _) => "original".into(),
                        (Head::Position, t) => t.to_string(),
                    })
                    .collect();
                ExampleRow { tokens, marks: prepared.row_marks(r).to_vec(), targets }
            })
            .collect();
        Self { objective: objective.to_string(), head: prepared.head, attention, rows, note, answers: Vec::new(), confidence: Vec::new() }
    }

    /// Fills `answers` and `confidence` from the model's `logits` for the first row,
    /// [seq, classes] row-major: at each scored position the most likely class (for the binary
    /// head, "replaced" where the replaced-probability is at least one half) and its probability.
    pub fn answer(&mut self, logits: &[f32], tokenizer: &CharTokenizer) {
        let Some(row) = self.rows.first() else { return };
        let seq = row.targets.len();
        if seq == 0 || logits.is_empty() || !logits.len().is_multiple_of(seq) || self.head == Head::Projection {
            return;
        }
        let classes = logits.len() / seq;
        let (answers, confidence) = row
            .targets
            .iter()
            .zip(logits.chunks_exact(classes))
            .map(|(target, l)| {
                if target.is_empty() {
                    return (String::new(), 0.0);
                }
                match self.head {
                    Head::Binary => {
                        let p = 1.0 / (1.0 + (-l[0]).exp());
                        if p >= 0.5 { ("replaced".to_string(), p) } else { ("original".to_string(), 1.0 - p) }
                    }
                    _ => {
                        // softmax's top class: exp(l_best - max) / Σ exp(l - max), max = l_best
                        let (best, top) = l.iter().enumerate().fold((0, f32::NEG_INFINITY), |(b, m), (k, &v)| if v > m { (k, v) } else { (b, m) });
                        let total: f32 = l.iter().map(|v| (v - top).exp()).sum();
                        let text = if self.head == Head::Position { best.to_string() } else { tokenizer.token_text(best as u32) };
                        (text, 1.0 / total)
                    }
                }
            })
            .unzip();
        self.answers = answers;
        self.confidence = confidence;
    }
}

/// The objectives table of `docs/objectives.md`, generated from the registry.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "# Objectives\n\n\
         Generated from the registry in `engine/src/objectives/` by `objlab objectives --markdown`; \
         a test fails when this file is stale. Each objective is one file there, citing its paper.\n\n\
         | id | name | paper | definition | parameters | asked about a typed line (the page's \"ask the model\") |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for o in REGISTRY {
        let i = o.info();
        let params: Vec<String> = i
            .params
            .iter()
            .map(|p| match p.kind {
                ParamKind::Number { min, max, default, .. } => format!("`{}` {} ({min}–{max}, default {default})", p.key, p.label),
                ParamKind::Words { default } => format!("`{}` {} (words, default \"{default}\")", p.key, p.label),
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            i.id,
            i.name,
            i.paper,
            i.definition,
            if params.is_empty() { "none".to_string() } else { params.join("<br>") },
            if i.asks.is_empty() { "—" } else { i.asks }
        ));
    }
    out.push_str(
        "\nA run's objective is any weighted mixture of these (`causal_lm=0.5,masked_lm=0.5`); \
         weights are normalised to sum to 1 and a mixture whose weights are all zero is refused.\n",
    );
    out
}

/// Fixtures for the objectives' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz .,";

    pub fn tokenizer() -> CharTokenizer {
        CharTokenizer::from_text(ALPHABET)
    }

    /// A clean batch of random characters: [batch, seq + 1].
    pub fn clean_batch(batch: usize, seq: usize, seed: u64) -> CleanBatch {
        let n = tokenizer().n_chars();
        let mut rng = Rng::derive(seed, 99);
        CleanBatch { batch, seq, tokens: (0..batch * (seq + 1)).map(|_| rng.below(n) as u32).collect() }
    }

    /// Runs `f` with a context over [`tokenizer`], frequency order = id order, block size 128.
    pub fn with_context<R>(params: &Params, f: impl FnOnce(&Context) -> R) -> R {
        let tok = tokenizer();
        let by_frequency: Vec<u32> = (0..tok.n_chars() as u32).collect();
        let ctx = Context { tokenizer: &tok, params, by_frequency: &by_frequency, block_size: 128 };
        f(&ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each objective's declared `alignment` holds for what its `prepare` makes (the page draws
    /// its example on the digits as images by it): where the input keeps the text's positions,
    /// every untouched input token is the clean one there, and a target is the next token
    /// (`NextToken`) or the same one (`SameToken`).
    #[test]
    fn each_objective_lines_up_as_its_alignment_says() {
        let tok = testing::tokenizer();
        let clean = testing::clean_batch(4, 24, 5);
        let text: Vec<String> = clean.row(0).iter().map(|&t| tok.token_text(t)).collect();
        for o in REGISTRY {
            let info = o.info();
            if info.alignment == Alignment::Moved {
                continue;
            }
            let p = testing::with_context(&Params::new(), |ctx| o.prepare(&clean, ctx, &mut Rng::seeded(3)));
            let row = &Example::from_prepared(info.id, &p, &tok).rows[0];
            // (a control token such as conditional training's <good> may come first)
            let start = row.marks.iter().take_while(|m| **m == Mark::Control).count();
            let mut scored = 0;
            for k in 0..row.tokens.len() - start {
                let (t, m, y) = (&row.tokens[start + k], row.marks[start + k], &row.targets[start + k]);
                if !matches!(m, Mark::Masked | Mark::Replaced) {
                    assert_eq!(t, &text[k], "{}: input position {k} is the text's", info.id);
                }
                if y.is_empty() {
                    continue;
                }
                scored += 1;
                match info.alignment {
                    Alignment::NextToken => assert_eq!(y, &text[k + 1], "{}: the target at {k} is the next token", info.id),
                    Alignment::SameToken => assert_eq!(y, &text[k], "{}: the target at {k} is its own token", info.id),
                    _ => {}
                }
            }
            assert!(scored > 0, "{}: something is scored", info.id);
        }
    }

    #[test]
    fn answers_are_the_top_class_at_the_scored_positions_only() {
        let tok = CharTokenizer::from_text("abc");
        let v = tok.vocab_size();
        // vocabulary head: "abc" scored on b, nothing, a
        let mut p = Prepared::new(1, 3, tok.encode("abc").unwrap(), AttentionMode::Causal);
        p.targets = vec![1, IGNORE, 0];
        let mut logits = vec![0.0f32; 3 * v];
        logits[1] = 2.0; // position 0: b most likely
        logits[v + 2] = 9.0; // position 1 (unscored): c
        logits[2 * v + 2] = 1.0; // position 2: c, where a is the target
        let mut e = Example::from_prepared("causal_lm", &p, &tok);
        assert!(e.answers.is_empty(), "unanswered until read");
        e.answer(&logits, &tok);
        assert_eq!(e.answers, vec!["b", "", "c"]);
        let top = |l: f32| l.exp() / (l.exp() + (v - 1) as f32);
        assert!((e.confidence[0] - top(2.0)).abs() < 1e-6 && e.confidence[1] == 0.0 && (e.confidence[2] - top(1.0)).abs() < 1e-6, "{:?}", e.confidence);
        assert_eq!(e.rows[0].targets[0], e.answers[0], "an answer is written as its target is");
        // binary head: the replaced-probability's side, and how sure
        let mut p = Prepared::new(1, 2, tok.encode("ab").unwrap(), AttentionMode::Bidirectional);
        p.head = Head::Binary;
        p.targets = vec![0, 1];
        let mut e = Example::from_prepared("random_token_detection", &p, &tok);
        e.answer(&[2.0, -1.0], &tok);
        assert_eq!(e.answers, vec!["replaced", "original"]);
        assert!((e.confidence[0] - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6 && (e.confidence[1] - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6, "{:?}", e.confidence);
        // position head: a class number
        let mut p = Prepared::new(1, 2, tok.encode("ab").unwrap(), AttentionMode::Causal);
        p.head = Head::Position;
        p.targets = vec![0, 1];
        let mut e = Example::from_prepared("position_prediction", &p, &tok);
        e.answer(&[0.0, 3.0, 0.0, 0.0, 5.0, 0.0], &tok);
        assert_eq!(e.answers, vec!["1", "1"]);
        // logits that do not fit the row are left unread, and contrastive rows go unanswered
        e.answers.clear();
        e.answer(&[1.0; 5], &tok);
        assert!(e.answers.is_empty());
        let mut p = Prepared::new(2, 2, tok.encode("abba").unwrap(), AttentionMode::Bidirectional);
        p.head = Head::Projection;
        p.positives = vec![1, 0];
        let mut e = Example::from_prepared("contrastive", &p, &tok);
        e.answer(&[1.0; 4], &tok);
        assert!(e.answers.is_empty());
    }

    #[test]
    fn registry_ids_are_unique_and_findable() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|o| o.info().id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(find("causal_lm").unwrap().info().id, "causal_lm");
        let err = find("gpt").err().unwrap();
        assert!(err.contains("valid objectives: causal_lm, prefix_lm"), "{err}");
    }

    #[test]
    fn declared_defaults_are_within_their_ranges() {
        for o in REGISTRY {
            let info = o.info();
            let defaults: Params = info.params.iter().map(|p| (p.key.to_string(), p.default_value())).collect();
            check_params(info, &defaults).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn out_of_range_parameters_name_the_range() {
        let info = find("masked_lm").unwrap().info();
        let err = parse_param(info, "rate", "0.95").unwrap_err();
        assert!(err.contains("valid range is 0.01 to 0.9"), "{err}");
        assert!(parse_param(info, "rate", "lots").unwrap_err().contains("not a number"));
        assert!(parse_param(info, "colour", "1").unwrap_err().contains("has no parameter"));
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_vocab() {
        let device = Device::flex();
        let logits = Tensor::<3>::zeros([2, 3, 5], &device);
        let mut prepared = Prepared::new(2, 3, vec![0; 6], AttentionMode::Causal);
        prepared.targets = vec![1, 2, IGNORE, 0, 4, IGNORE];
        let t = DeviceTargets::new(&prepared, &device);
        assert_eq!(t.count, 4);
        let loss: f32 = token_cross_entropy(logits, &t).into_scalar();
        assert!((loss - 5f32.ln()).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn binary_cross_entropy_matches_the_formula() {
        let device = Device::flex();
        let z = [0.5f32, -1.0, 2.0, 0.0];
        let logits = Tensor::<3>::from_data(TensorData::new(z.to_vec(), [1, 4, 1]), &device);
        let mut prepared = Prepared::new(1, 4, vec![0; 4], AttentionMode::Bidirectional);
        prepared.head = Head::Binary;
        prepared.targets = vec![1, 0, 0, IGNORE];
        let t = DeviceTargets::new(&prepared, &device);
        let loss: f32 = binary_cross_entropy(logits, &t).into_scalar();
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let expected = -((sig(0.5)).ln() + (1.0 - sig(-1.0)).ln() + (1.0 - sig(2.0)).ln()) / 3.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn info_nce_prefers_the_positive() {
        let device = Device::flex();
        // Rows 0 and 1 are identical; rows 2 and 3 are identical and orthogonal to them.
        let v = [1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
        let pooled = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [4, 2]), &device);
        let mut prepared = Prepared::new(4, 1, vec![0; 4], AttentionMode::Bidirectional);
        prepared.head = Head::Projection;
        prepared.positives = vec![1, 0, 3, 2];
        let good: f32 = info_nce(pooled.clone(), &DeviceTargets::new(&prepared, &device), 0.1).into_scalar();
        prepared.positives = vec![2, 3, 0, 1];
        let bad: f32 = info_nce(pooled, &DeviceTargets::new(&prepared, &device), 0.1).into_scalar();
        assert!(good < 0.01 && bad > 5.0, "{good} {bad}");
    }

    /// `docs/objectives.md` is generated from the registry; this fails when it is stale.
    #[test]
    fn docs_table_is_up_to_date() {
        let path = crate::repo_root().join("docs/objectives.md");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            on_disk == markdown_table(),
            "docs/objectives.md is stale: regenerate it with `cargo run --release -p objlab-cli -- objectives --markdown > docs/objectives.md`"
        );
    }

    /// Each objective's question about a typed text: masked LM asks for its blanks alone,
    /// behind [MASK]; swapped LM and the detector ask every position and refuse blanks;
    /// position prediction asks every position's (known) place with no position embedding;
    /// the rest ask nothing (the generators continue the text instead).
    #[test]
    fn each_objective_asks_its_own_question_of_a_typed_text() {
        testing::with_context(&Params::new(), |ctx| {
            let tok = ctx.tokenizer;
            let [a, b, c, d] = <[u32; 4]>::try_from(tok.encode("abcd").unwrap()).unwrap();
            let with_blank = typed("ab_c", tok).unwrap();
            let plain = typed("abc", tok).unwrap();
            assert_eq!(with_blank[2], None);
            assert_eq!((before_blank("ab_c_d"), before_blank("abc"), before_blank("_a")), ("ab", "abc", ""));
            assert!(typed("a€", tok).unwrap_err().contains("'€'"), "a character the text never had is refused");
            for o in REGISTRY {
                let id = o.info().id;
                let read = |q: Option<Result<Question, String>>| q.map(|q| q.map(|q| match q {
                    Question::Read(p) => p,
                    Question::WriteSpans { .. } => panic!("{id} reads, it does not write spans"),
                }));
                let spans = |q: Option<Result<Question, String>>| q.map(|q| q.map(|q| match q {
                    Question::WriteSpans { source, marks } => (source, marks),
                    Question::Read(_) => panic!("{id} writes spans"),
                }));
                if matches!(id, "span_corruption" | "ul2_mixture") {
                    let (source, marks) = spans(o.question(&typed("ab__c_", tok).unwrap(), ctx)).unwrap().unwrap();
                    let mode = if id == "ul2_mixture" { vec![tok.special_id("[R]")] } else { vec![] };
                    assert_eq!(source, [mode.clone(), vec![a, b, tok.sentinel(0), c, tok.sentinel(1)]].concat(), "{id}: one sentinel per run of blanks");
                    assert_eq!(marks.last(), Some(&Mark::Sentinel));
                    if id == "span_corruption" {
                        assert!(o.question(&plain, ctx).unwrap().unwrap_err().contains("type one or more _"));
                    } else {
                        assert!(o.question(&plain, ctx).is_none(), "UL2 continues a line without a blank");
                    }
                    continue;
                }
                let (q_blank, q_plain) = (read(o.question(&with_blank, ctx)), read(o.question(&plain, ctx)));
                assert_eq!(o.info().asks.is_empty(), q_plain.is_none() && !o.info().generates, "{id}: `asks` says what it does with a typed text");
                match id {
                    "masked_lm" => {
                        let p = q_blank.unwrap().unwrap();
                        assert_eq!(p.inputs, vec![a, b, tok.special_id("[MASK]"), c]);
                        assert_eq!(p.targets, vec![IGNORE, IGNORE, ASKED, IGNORE]);
                        assert_eq!((p.marks[2], p.attention.is_causal(), p.head), (Mark::Masked, false, Head::Vocab));
                        assert!(q_plain.unwrap().unwrap_err().contains('_'), "no blank: says how to ask");
                    }
                    "swapped_lm" | "random_token_detection" => {
                        let p = q_plain.unwrap().unwrap();
                        assert_eq!((p.inputs.clone(), p.targets.clone()), (vec![a, b, c], vec![ASKED; 3]));
                        assert!(!p.attention.is_causal());
                        assert_eq!(p.head, if id == "swapped_lm" { Head::Vocab } else { Head::Binary });
                        assert!(q_blank.unwrap().unwrap_err().contains("without _"));
                    }
                    "position_prediction" => {
                        let p = q_plain.unwrap().unwrap();
                        assert_eq!((p.targets.clone(), p.use_positions, p.head), (vec![0, 1, 2], false, Head::Position));
                        assert!(q_blank.unwrap().is_err());
                    }
                    _ => assert!(q_blank.is_none() && q_plain.is_none(), "{id} asks nothing"),
                }
            }
            // `asks` names the blank exactly where a line with one is answered, not refused
            for o in REGISTRY {
                let answered = matches!(o.question(&with_blank, ctx), Some(Ok(_)));
                assert_eq!(o.info().asks.contains(BLANK), answered, "{}: {:?}", o.info().id, o.info().asks);
            }
            // an asked position shows "?" as its target and gets an answer
            let Question::Read(p) = MaskedLm.question(&with_blank, ctx).unwrap().unwrap() else { panic!("masked LM reads") };
            let mut e = Example::from_prepared("masked_lm", &p, tok);
            assert_eq!(e.rows[0].targets, vec!["", "", "?", ""]);
            let v = tok.vocab_size();
            let mut logits = vec![0.0f32; 4 * v];
            logits[2 * v + d as usize] = 5.0; // position 2: 'd' most likely
            e.answer(&logits, tok);
            assert_eq!(e.answers, vec!["", "", "d", ""]);
            // a special token more likely than any character: the answer is still a character
            logits[2 * v + tok.special_id("[MASK]") as usize] = 9.0;
            only_characters(&mut logits, 4, tok.n_chars());
            e.answer(&logits, tok);
            assert_eq!(e.answers[2], "d");
        });
    }
}
