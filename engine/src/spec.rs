//! `ExperimentSpec`: the one description of an experiment that drives the page, the worker,
//! the CLI and the URL. Presets give sensible whole specs; the URL and CLI override parts.

use serde::{Deserialize, Serialize};

use crate::model::{Architecture, ModelConfig};
use crate::objectives::{self, ParamValue, Params};

pub const SPEC_VERSION: u32 = 1;

/// Workers (the training worker and its helpers, `train::data_parallel`) a CPU run in the tab
/// uses when it does not say (`workers=0`): one per core up to this many. More would each get
/// fewer rows (3 of baby GPT's 12 at four) while the run sends every helper the whole batch's
/// gradients each step.
pub const AUTO_WORKERS: usize = 4;
/// The most workers a run may ask for (`workers=N`).
pub const MAX_WORKERS: usize = 8;

/// Where a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// WebGPU when a hardware adapter is there, else the CPU (also where the only adapter is
    /// a software renderer: [`is_software_adapter`]).
    Auto,
    /// GPU through wgpu; in the page, falls back to the CPU with a note when there is none.
    Gpu,
    /// burn's flex backend on the CPU.
    Cpu,
}

/// Whether a WebGPU adapter, by its name (vendor, architecture, description), is a software
/// renderer on the CPU: Chromium's SwiftShader, Mesa's llvmpipe, lavapipe or softpipe, or
/// Windows' basic render driver. There the lab's own CPU path trains far faster (`tiny` on the
/// dev VM: ~200 steps/s against ~3.6 on SwiftShader), so [`DeviceChoice::Auto`] takes the CPU.
pub fn is_software_adapter(name: &str) -> bool {
    let name = name.to_lowercase();
    ["swiftshader", "llvmpipe", "lavapipe", "softpipe", "basic render", "software"].iter().any(|s| name.contains(s))
}

impl DeviceChoice {
    pub const NAMES: &'static [&'static str] = &["auto", "gpu", "cpu"];

    /// The name [`DeviceChoice::parse`] reads (URLs, specs).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Gpu => "gpu",
            Self::Cpu => "cpu",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "gpu" | "webgpu" | "wgpu" => Ok(Self::Gpu),
            "cpu" | "flex" => Ok(Self::Cpu),
            _ => Err(format!("unknown device {s:?}; valid devices: {}", Self::NAMES.join(", "))),
        }
    }
}

/// Optimiser and loop settings (nanoGPT's names and defaults where it has them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Total optimiser steps; the cosine schedule decays over them.
    pub steps: usize,
    pub learning_rate: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
    /// Steps between validation-loss estimates.
    pub eval_every: usize,
    /// Held-out batches per validation estimate.
    pub eval_batches: usize,
    /// Steps between generated text samples (0 = never).
    pub sample_every: usize,
    pub sample_len: usize,
    pub temperature: f64,
    /// Steps between reads of the training loss from the device (one read per `log_every` steps).
    pub log_every: usize,
    /// Steps between representation snapshots (PCA views, probe, CKA, effective rank).
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: usize,
    /// Fault injection, for showing (and testing) what divergence looks like: the loss of this
    /// step (1-based) is made NaN, which poisons the weights as a real blow-up would. 0 = off.
    #[serde(default)]
    pub nan_at: usize,
    /// Fault injection, for testing that a run survives its second worker: the tab's helper
    /// worker (`train::data_parallel`) crashes on its first job for this step (1-based) or a
    /// later one, and the run computes that half and the rest alone. 0 = off; no effect where
    /// a run does not split.
    #[serde(default)]
    pub helper_fails_at: usize,
    /// Fault injection, for testing what a lost GPU looks like: after this step (1-based) the
    /// tab's worker destroys its WebGPU device, as a driver reset or a crashed GPU process
    /// would lose it. 0 = off; no effect on the CPU.
    #[serde(default)]
    pub lose_device_at: usize,
    /// Fault injection, for testing that a run survives a captured step that fails while it
    /// records (`train::captured_step`): this many of the run's first recordings upload a
    /// value while recording, which a recording cannot take, as a recording fails that meets
    /// anything it cannot record. The run starts over from its seed and tries once more, then without
    /// capture. 0 = off; no effect on the CPU.
    #[serde(default)]
    pub capture_fails: usize,
    /// How many workers share a CPU run's steps in the tab (`train::data_parallel`): 0 = one
    /// per core, up to [`AUTO_WORKERS`]; 1 = the training worker alone; at most
    /// [`MAX_WORKERS`]. Helpers started for a run stay for the page's later runs, and each
    /// run uses as many as it asks for.
    #[serde(default)]
    pub workers: usize,
    /// On a GPU, replay each step (forward, backward and AdamW) from a graph captured after a
    /// few steps (`train::captured_step`), where the run's steps allow it. Off: every step is
    /// launched kernel by kernel (for comparing, and a way out should a driver misbehave).
    #[serde(default = "default_capture")]
    pub capture: bool,
}

fn default_capture() -> bool {
    true
}

fn default_snapshot_every() -> usize {
    100
}

/// One objective of a run's mix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveChoice {
    pub id: String,
    pub weight: f64,
    #[serde(default)]
    pub params: Params,
}

/// One run: an objective mix (a weighted sum of objectives).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub objectives: Vec<ObjectiveChoice>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub version: u32,
    /// Built-in corpus name (see [`CORPORA`]), or a text of one's own (`file:…`, see
    /// [`crate::data::upload_corpus_name`]), which the page or the CLI supplies.
    pub corpus: String,
    /// The preset the spec started from (for display; `model` and `train` are authoritative).
    pub preset: String,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub seed: u64,
    pub device: DeviceChoice,
    pub runs: Vec<RunSpec>,
}

/// Built-in corpora: name and the asset file the page fetches / the CLI reads.
pub const CORPORA: &[(&str, &str)] = &[("tiny-shakespeare", "tinyshakespeare.txt"), (crate::digits::NAME, "digits.csv")];

/// What built-in corpus `name` is, in a line (`objlab list`, the page's hover text).
pub fn corpus_description(name: &str) -> &'static str {
    match name {
        "tiny-shakespeare" => "1.1 M characters of Shakespeare's plays (char-rnn's and nanoGPT's corpus), a token per character",
        crate::digits::NAME => "1,797 handwritten 8×8 digits read pixel by pixel, as Image GPT reads images; the probe asks which digit an image shows",
        _ => "",
    }
}

/// Distinct characters of each built-in corpus (checked against the asset by a test), so that
/// the page can tell a model's size before the worker has fetched the text.
const CORPUS_CHARS: &[(&str, usize)] = &[("tiny-shakespeare", 65), (crate::digits::NAME, 6)];

/// The model's vocabulary on a built-in corpus (its characters and the special tokens), or
/// `None` for a text of one's own (whose characters only its file knows).
pub fn builtin_vocab(corpus: &str) -> Option<usize> {
    CORPUS_CHARS.iter().find(|(n, _)| *n == corpus).map(|(_, chars)| crate::tokenizer::vocab_for_chars(*chars))
}

/// The options [`ExperimentSpec::set`] understands (besides `<objective>.<parameter>`).
pub const OPTIONS: &[&str] = &[
    "preset", "objective", "device", "seed", "steps", "lr", "batch", "corpus", "arch", "layers", "heads", "width",
    "context", "eval_every", "sample_every", "log_every", "snapshot_every", "temperature", "nan_at",
    "helper_fails_at", "lose_device_at", "capture_fails", "workers", "grad_clip", "capture",
];

/// A named starting point.
pub struct Preset {
    pub name: &'static str,
    pub description: &'static str,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

/// The presets, default first.
pub fn presets() -> Vec<Preset> {
    vec![
        Preset {
            name: "baby-gpt",
            description: "nanoGPT's CPU configuration: 4 layers, 4 heads, width 128, context 64, batch 12",
            model: ModelConfig { n_layer: 4, n_head: 4, d_model: 128, block_size: 64, arch: Default::default() },
            train: TrainConfig {
                batch_size: 12,
                steps: 2000,
                learning_rate: 1e-3,
                min_lr: 1e-4,
                warmup_steps: 100,
                weight_decay: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                grad_clip: 1.0,
                eval_every: 250,
                eval_batches: 20,
                sample_every: 500,
                sample_len: 200,
                temperature: 0.8,
                log_every: 10,
                snapshot_every: 100,
                nan_at: 0,
                helper_fails_at: 0,
                lose_device_at: 0,
                capture_fails: 0,
                workers: 0,
                capture: true,
            },
        },
        Preset {
            name: "tiny",
            description: "2 layers, 2 heads, width 32, context 32, batch 8: for slow devices and tests",
            model: ModelConfig { n_layer: 2, n_head: 2, d_model: 32, block_size: 32, arch: Default::default() },
            train: TrainConfig {
                batch_size: 8,
                steps: 1000,
                learning_rate: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 10,
                weight_decay: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                grad_clip: 1.0,
                eval_every: 50,
                eval_batches: 4,
                sample_every: 100,
                sample_len: 80,
                temperature: 0.8,
                log_every: 1,
                snapshot_every: 10,
                nan_at: 0,
                helper_fails_at: 0,
                lose_device_at: 0,
                capture_fails: 0,
                workers: 0,
                capture: true,
            },
        },
    ]
}

pub fn preset_names() -> Vec<&'static str> {
    presets().iter().map(|p| p.name).collect()
}

impl ExperimentSpec {
    /// The lab's default experiment: tiny shakespeare, baby GPT, next-token prediction.
    pub fn default_experiment() -> Self {
        Self::from_preset("baby-gpt").expect("default preset exists")
    }

    pub fn from_preset(name: &str) -> Result<Self, String> {
        let p = presets().into_iter().find(|p| p.name == name).ok_or_else(|| {
            format!("unknown preset {name:?}; valid presets: {}", preset_names().join(", "))
        })?;
        Ok(Self {
            version: SPEC_VERSION,
            corpus: CORPORA[0].0.to_string(),
            preset: p.name.to_string(),
            model: p.model,
            train: p.train,
            seed: 1337,
            device: DeviceChoice::Auto,
            runs: vec![RunSpec {
                objectives: vec![ObjectiveChoice { id: "causal_lm".into(), weight: 1.0, params: Params::new() }],
            }],
        })
    }

    /// Applies one `key=value` override (URL query pair or CLI `--set`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        /// Parses a number, and when it fails says why in the words of the one who typed it:
        /// `steps=-5` is negative, `steps=2.5` not whole, `steps=99999999999999` too large.
        fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
            if v.trim().is_empty() {
                // what a number field holds when what was typed in it is not a number
                return Err(format!("{key}: no number given"));
            }
            v.parse().map_err(|_| match v.trim().parse::<f64>() {
                Ok(x) if x < 0.0 => format!("{key}: {v:?} is negative; give a whole number ≥ 0"),
                Ok(x) if x.fract() != 0.0 => format!("{key}: {v:?} is not a whole number"),
                Ok(_) if v.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("{key}: {v:?} is too large")
                }
                _ => format!("{key}: {v:?} is not a valid number"),
            })
        }
        match key {
            "preset" => {
                // a preset is a size and its training settings: the text, the architecture,
                // the objective, the seed and where it trains are chosen apart and stay
                let kept = (self.seed, self.device, self.runs.clone(), self.corpus.clone(), self.model.arch, self.train.workers);
                *self = Self::from_preset(value)?;
                (self.seed, self.device, self.runs, self.corpus, self.model.arch, self.train.workers) = kept;
            }
            "objective" => self.runs = vec![RunSpec { objectives: parse_objective_mix(value)? }],
            "arch" => self.model.arch = Architecture::parse(value)?,
            "layers" => self.model.n_layer = num(key, value)?,
            "heads" => self.model.n_head = num(key, value)?,
            "width" => self.model.d_model = num(key, value)?,
            "context" => self.model.block_size = num(key, value)?,
            "eval_every" => self.train.eval_every = num(key, value)?,
            "sample_every" => self.train.sample_every = num(key, value)?,
            "log_every" => self.train.log_every = num(key, value)?,
            "snapshot_every" => self.train.snapshot_every = num(key, value)?,
            "nan_at" => self.train.nan_at = num(key, value)?,
            "helper_fails_at" => self.train.helper_fails_at = num(key, value)?,
            "lose_device_at" => self.train.lose_device_at = num(key, value)?,
            "capture_fails" => self.train.capture_fails = num(key, value)?,
            "workers" => self.train.workers = num(key, value)?,
            "capture" => {
                self.train.capture = match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(format!("capture: {value:?} is 0 (off) or 1 (on)")),
                }
            }
            "temperature" => self.train.temperature = num(key, value)?,
            // 0 turns clipping off (an ablation, and a benchmark lever: the norm costs kernels)
            "grad_clip" => self.train.grad_clip = num(key, value)?,
            // `masked_lm.rate=0.3`: a parameter of an objective of the mix.
            key if key.contains('.') => {
                let (id, param) = key.split_once('.').expect("contains a dot");
                let info = objectives::find(id)?.info();
                let v = objectives::parse_param(info, param, value)?;
                let mut found = false;
                for o in self.runs.iter_mut().flat_map(|r| r.objectives.iter_mut()).filter(|o| o.id == id) {
                    o.params.insert(param.to_string(), v.clone());
                    found = true;
                }
                if !found {
                    return Err(format!("{key}: the experiment's objective has no {id}; add it with objective={id}"));
                }
            }
            "device" => self.device = DeviceChoice::parse(value)?,
            "seed" => self.seed = num(key, value)?,
            "steps" => self.train.steps = num(key, value)?,
            "lr" => self.train.learning_rate = num(key, value)?,
            "batch" => self.train.batch_size = num(key, value)?,
            "corpus" => self.corpus = value.to_string(),
            _ => {
                return Err(format!(
                    "unknown option {key:?}; valid options: {}",
                    OPTIONS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Parses a URL query (`preset=tiny&device=cpu`, with or without the leading `?`).
    /// Returns the spec with every valid option applied, and the errors of the others, so the
    /// page can open with what it understood and say what it did not.
    pub fn from_query(query: &str) -> (Self, Vec<String>) {
        let mut spec = Self::default_experiment();
        let mut errors = Vec::new();
        let pairs: Vec<(String, String)> = query
            .trim_start_matches('?')
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        // The preset first, so that other options refine it whatever their order.
        let (presets, others): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "preset");
        for (k, v) in presets.into_iter().chain(others) {
            if let Err(e) = spec.set(&k, &v) {
                errors.push(e);
            }
        }
        if let Err(e) = spec.validate() {
            errors.push(e);
            spec = Self::default_experiment();
        }
        (spec, errors)
    }

    /// The URL query that [`ExperimentSpec::from_query`] reads back as this experiment: the
    /// preset, the objective mix, architecture, device, seed, steps and learning rate, then
    /// every other option that differs from the preset's.
    pub fn to_query(&self) -> String {
        let base = Self::from_preset(&self.preset).unwrap_or_else(|_| Self::default_experiment());
        let (m, b, t, u) = (&self.model, &base.model, &self.train, &base.train);
        let mut pairs: Vec<(&str, String)> = vec![
            ("preset", self.preset.clone()),
            ("objective", self.runs.first().map_or_else(|| "causal_lm".to_string(), |r| objective_mix_text(&r.objectives))),
            ("arch", m.arch.name().to_string()),
            ("device", self.device.name().to_string()),
            ("seed", self.seed.to_string()),
            ("steps", t.steps.to_string()),
            ("lr", t.learning_rate.to_string()),
        ];
        let mut differing = |key: &'static str, value: String, preset: String| {
            if value != preset {
                pairs.push((key, value));
            }
        };
        differing("corpus", self.corpus.clone(), base.corpus.clone());
        differing("layers", m.n_layer.to_string(), b.n_layer.to_string());
        differing("heads", m.n_head.to_string(), b.n_head.to_string());
        differing("width", m.d_model.to_string(), b.d_model.to_string());
        differing("context", m.block_size.to_string(), b.block_size.to_string());
        differing("batch", t.batch_size.to_string(), u.batch_size.to_string());
        differing("eval_every", t.eval_every.to_string(), u.eval_every.to_string());
        differing("sample_every", t.sample_every.to_string(), u.sample_every.to_string());
        differing("log_every", t.log_every.to_string(), u.log_every.to_string());
        differing("snapshot_every", t.snapshot_every.to_string(), u.snapshot_every.to_string());
        differing("temperature", t.temperature.to_string(), u.temperature.to_string());
        differing("grad_clip", t.grad_clip.to_string(), u.grad_clip.to_string());
        differing("workers", t.workers.to_string(), u.workers.to_string());
        differing("capture", u8::from(t.capture).to_string(), u8::from(u.capture).to_string());
        differing("nan_at", t.nan_at.to_string(), u.nan_at.to_string());
        differing("helper_fails_at", t.helper_fails_at.to_string(), u.helper_fails_at.to_string());
        differing("lose_device_at", t.lose_device_at.to_string(), u.lose_device_at.to_string());
        differing("capture_fails", t.capture_fails.to_string(), u.capture_fails.to_string());
        pairs.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect::<Vec<_>>().join("&")
    }

    /// Checks everything a run needs before it allocates anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != SPEC_VERSION {
            return Err(format!("spec version {} is not supported (this lab reads version {SPEC_VERSION})", self.version));
        }
        if !CORPORA.iter().any(|(n, _)| *n == self.corpus) && !crate::data::is_upload(&self.corpus) {
            let names: Vec<&str> = CORPORA.iter().map(|(n, _)| *n).collect();
            return Err(format!("unknown corpus {:?}; valid corpora: {}", self.corpus, names.join(", ")));
        }
        if crate::data::is_upload(&self.corpus) {
            crate::data::check_upload_name(&self.corpus)?;
        }
        let m = &self.model;
        if m.n_layer == 0 || m.n_head == 0 || m.d_model == 0 || m.block_size < 4 {
            return Err("model sizes must be positive (and context at least 4)".into());
        }
        if m.n_layer > 48 || m.d_model > 2048 || m.block_size > 2048 {
            return Err("model is too large for this lab: at most 48 layers, width 2048, context 2048".into());
        }
        if !m.d_model.is_multiple_of(m.n_head) {
            return Err(format!("width {} is not divisible by {} heads", m.d_model, m.n_head));
        }
        let t = &self.train;
        if !(1..=4096).contains(&t.batch_size) {
            return Err(format!("batch size {} is out of range: valid range is 1 to 4096", t.batch_size));
        }
        if t.steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if !(t.learning_rate > 0.0 && t.learning_rate <= 1.0) {
            return Err(format!("learning rate {} is out of range: valid range is (0, 1]", t.learning_rate));
        }
        if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
            return Err(format!("grad_clip {} is out of range: a norm ≥ 0 (0 turns clipping off)", t.grad_clip));
        }
        if t.workers > MAX_WORKERS {
            return Err(format!("workers {} is out of range: 0 (one per core, up to {AUTO_WORKERS}) to {MAX_WORKERS}", t.workers));
        }
        let every = [("log_every", t.log_every), ("eval_every", t.eval_every), ("eval_batches", t.eval_batches), ("snapshot_every", t.snapshot_every)];
        if let Some((name, _)) = every.iter().find(|(_, n)| *n == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if self.runs.is_empty() {
            return Err("an experiment needs at least one run".into());
        }
        for run in &self.runs {
            if run.objectives.is_empty() {
                return Err("a run needs at least one objective".into());
            }
            for o in &run.objectives {
                let obj = objectives::find(&o.id)?;
                objectives::check_params(obj.info(), &o.params)?;
                obj.check(&o.params)?;
                check_weight(&o.id, o.weight)?;
            }
            if run.objectives.iter().all(|o| o.weight == 0.0) {
                return Err("a mixture whose weights are all zero trains nothing; give one objective a weight above 0".into());
            }
        }
        Ok(())
    }

    /// Whether the model's size or the batch differ from its preset's (the page then shows the
    /// preset as "resized", and choosing it again restores its size).
    pub fn resized(&self) -> bool {
        let Ok(base) = Self::from_preset(&self.preset) else { return true };
        let (m, b) = (&self.model, &base.model);
        (m.n_layer, m.n_head, m.d_model, m.block_size, self.train.batch_size) != (b.n_layer, b.n_head, b.d_model, b.block_size, base.train.batch_size)
    }

    /// Tokens the model reads per optimiser step.
    pub fn tokens_per_step(&self) -> usize {
        self.train.batch_size * self.model.block_size
    }
}

/// A mixture weight must be a number ≥ 0.
fn check_weight(id: &str, weight: f64) -> Result<(), String> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(format!("weight of {id} must be a number ≥ 0, not {weight}"))
    }
}

/// `causal_lm` or `causal_lm=0.7,masked_lm=0.3` or `masked_lm:rate=0.4` (params after `:`,
/// separated by `;`; words of a word list separated by `|`).
pub fn parse_objective_mix(text: &str) -> Result<Vec<ObjectiveChoice>, String> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (head, params_text) = part.split_once(':').unwrap_or((part, ""));
        let (id, weight_text) = head.split_once('=').map_or((head.trim(), None), |(id, w)| (id.trim(), Some(w.trim())));
        // the name first, so that "=2" says which names there are rather than "weight of  …"
        let obj = objectives::find(id)?;
        let weight = weight_text.map_or(Ok(1.0), |w| w.parse::<f64>().map_err(|_| format!("weight {w:?} of {id} is not a number")))?;
        if out.iter().any(|o: &ObjectiveChoice| o.id == id) {
            return Err(format!("{id} appears twice in the objective mix; give it one weight"));
        }
        let mut params = Params::new();
        for kv in params_text.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("parameter {kv:?} of {id} should look like key=value"))?;
            // `rate=0.1:mean_span=8`: the second parameter after a second ':' (a natural guess)
            // would otherwise be refused as the first one's value, "not a number"
            if v.contains(':') {
                return Err(format!("{id}'s parameters are separated by ';', not ':': {id}:{}", params_text.replace(':', ";")));
            }
            let value = objectives::parse_param(obj.info(), k.trim(), &v.replace('|', ","))?;
            params.insert(k.trim().to_string(), value);
        }
        check_weight(id, weight)?;
        out.push(ObjectiveChoice { id: id.to_string(), weight, params });
    }
    if out.is_empty() {
        return Err("no objective given".into());
    }
    Ok(out)
}

/// The inverse of [`parse_objective_mix`], for URLs.
pub fn objective_mix_text(mix: &[ObjectiveChoice]) -> String {
    mix.iter()
        .map(|o| {
            let mut s = if mix.len() == 1 && o.weight == 1.0 { o.id.clone() } else { format!("{}={}", o.id, o.weight) };
            let params: Vec<String> = o
                .params
                .iter()
                .map(|(k, v)| match v {
                    ParamValue::Number(x) => format!("{k}={x}"),
                    ParamValue::Text(t) => format!("{k}={}", t.replace(',', "|")),
                })
                .collect();
            if !params.is_empty() {
                s.push(':');
                s.push_str(&params.join(";"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels for runs shown side by side: what differs between their specs (objective mix and
/// its parameters, architecture, model size, batch, seed, learning rate, steps, device), so that two
/// masked-LM runs read "masked_lm rate=0.15" and "masked_lm rate=0.4". A lone run, or runs
/// that differ in nothing, are labelled by their objective.
pub fn run_labels(specs: &[&ExperimentSpec]) -> Vec<String> {
    let describe = |s: &ExperimentSpec| -> Vec<(&'static str, String)> {
        let objective = objective_mix_text(&s.runs[0].objectives).replace([':', ';'], " ");
        let m = &s.model;
        vec![
            ("", objective),
            ("", s.model.arch.name().replace('_', "–")),
            ("", format!("{}L×{}", m.n_layer, m.d_model)),
            ("heads ", m.n_head.to_string()),
            ("context ", m.block_size.to_string()),
            ("batch ", s.train.batch_size.to_string()),
            ("lr ", format!("{}", s.train.learning_rate)),
            ("steps ", s.train.steps.to_string()),
            ("", s.device.name().to_string()),
            ("seed ", s.seed.to_string()),
            ("on ", crate::data::upload_file_name(&s.corpus).to_string()),
        ]
    };
    let all: Vec<Vec<(&str, String)>> = specs.iter().map(|s| describe(s)).collect();
    let n = all.first().map_or(0, |d| d.len());
    let differs: Vec<bool> = (0..n).map(|k| all.iter().any(|d| d[k].1 != all[0][k].1)).collect();
    all.iter()
        .map(|d| {
            let parts: Vec<String> = d.iter().zip(&differs).filter(|(_, diff)| **diff).map(|((key, v), _)| format!("{key}{v}")).collect();
            if parts.is_empty() { d[0].1.clone() } else { parts.join(", ") }
        })
        .collect()
}

/// `(run id, label)` pairs with the id added where two runs read the same ("causal_lm #1",
/// "causal_lm #4"): runs that differ in nothing [`run_labels`] shows (a fault injected, say)
/// still have names apart.
pub fn numbered_repeats(labels: Vec<(u32, String)>) -> Vec<(u32, String)> {
    let repeated = |label: &String| labels.iter().filter(|(_, l)| l == label).count() > 1;
    labels.iter().map(|(id, l)| (*id, if repeated(l) { format!("{l} #{id}") } else { l.clone() })).collect()
}

/// A link to a workspace: the experiment the controls show, then one `run=` per run side by
/// side, each that run's [`ExperimentSpec::to_query`] encoded as one value. `runs` may be
/// empty (the link then holds the controls' experiment alone).
pub fn workspace_query(controls: &ExperimentSpec, runs: &[ExperimentSpec]) -> String {
    let mut query = controls.to_query();
    for run in runs {
        query.push_str("&run=");
        query.push_str(&percent_encode(&run.to_query()));
    }
    query
}

/// Reads a [`workspace_query`]: the controls' experiment (as [`ExperimentSpec::from_query`]
/// reads it), the runs of the link, and what was not understood. A run with anything not
/// understood is left out and said why, rather than started as something else.
pub fn workspace_from_query(query: &str) -> (ExperimentSpec, Vec<ExperimentSpec>, Vec<String>) {
    let (mut own, mut runs, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for pair in query.trim_start_matches('?').split('&').filter(|s| !s.is_empty()) {
        match pair.split_once('=') {
            Some(("run", value)) => {
                let (spec, problems) = ExperimentSpec::from_query(&percent_decode(value));
                if problems.is_empty() {
                    runs.push(spec);
                } else {
                    errors.push(format!("run {} of the link is left out: {}", runs.len() + errors.len() + 1, problems.join("; ")));
                }
            }
            _ => own.push(pair),
        }
    }
    let (controls, mut problems) = ExperimentSpec::from_query(&own.join("&"));
    problems.append(&mut errors);
    (controls, runs, problems)
}

/// Encodes a query value: every byte but letters, digits and `-_.~,:;|=` (which the
/// objective mixes use and a query value may hold) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,:;|=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_the_same_experiment_are_numbered() {
        let labels = vec![(1, "causal_lm".to_string()), (2, "masked_lm".to_string()), (4, "causal_lm".to_string())];
        let named: Vec<String> = numbered_repeats(labels).into_iter().map(|(_, l)| l).collect();
        assert_eq!(named, ["causal_lm #1", "masked_lm", "causal_lm #4"]);
    }

    #[test]
    fn a_query_reads_back_as_the_same_experiment() {
        let mut specs = vec![ExperimentSpec::default_experiment()];
        for options in [
            "preset=tiny&objective=masked_lm:rate=0.3&seed=7&device=cpu&steps=500&lr=0.0025",
            "objective=causal_lm=0.5,span_corruption=0.5:mean_span=8&arch=encoder_decoder&snapshot_every=25&workers=3",
            "preset=tiny&width=48&heads=3&layers=3&context=16&batch=4&temperature=1.25&grad_clip=0&capture=0&nan_at=9&lose_device_at=3",
            "objective=conditional_training&eval_every=7&log_every=2&sample_every=0&helper_fails_at=4&capture_fails=2",
        ] {
            let (spec, errors) = ExperimentSpec::from_query(options);
            assert!(errors.is_empty(), "{options}: {errors:?}");
            specs.push(spec);
        }
        for spec in specs {
            let query = spec.to_query();
            let (back, errors) = ExperimentSpec::from_query(&query);
            assert!(errors.is_empty(), "{query}: {errors:?}");
            assert_eq!(back, spec, "{query}");
        }
        let tiny = ExperimentSpec::from_query("preset=tiny&objective=masked_lm:rate=0.3").0.to_query();
        assert_eq!(tiny, "preset=tiny&objective=masked_lm:rate=0.3&arch=decoder&device=auto&seed=1337&steps=1000&lr=0.003");
    }

    proptest::proptest! {
        /// Whatever an address holds, reading it as a workspace never panics, and every run
        /// it yields is one the lab can start.
        #[test]
        fn any_address_reads_without_panicking(query in "[a-z_=&%0-9A-F:;,.|?+-]{0,80}") {
            let (controls, runs, _) = workspace_from_query(&query);
            proptest::prop_assert!(controls.validate().is_ok());
            for run in runs {
                proptest::prop_assert!(run.validate().is_ok());
            }
        }
    }

    #[test]
    fn a_workspace_link_holds_its_runs_and_leaves_out_a_bad_one() {
        let controls = ExperimentSpec::from_query("preset=tiny&objective=span_corruption").0;
        let runs: Vec<ExperimentSpec> = ["preset=tiny&objective=causal_lm", "preset=tiny&objective=masked_lm:rate=0.4&seed=2"]
            .iter()
            .map(|q| ExperimentSpec::from_query(q).0)
            .collect();
        let query = workspace_query(&controls, &runs);
        assert_eq!(query.matches("&run=").count(), 2, "{query}");
        assert!(!query.contains("&run=preset=tiny&"), "a run's own pairs are one value: {query}");
        let (back, back_runs, errors) = workspace_from_query(&format!("?{query}"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((back, back_runs), (controls.clone(), runs.clone()));

        // a run the lab cannot read is left out, and the link says which and why
        let bad = format!("{query}&run={}", percent_encode("preset=tiny&objective=masked_lm:rate=9"));
        let (_, back_runs, errors) = workspace_from_query(&bad);
        assert_eq!(back_runs, runs);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("run 3 of the link is left out: ") && errors[0].contains("rate"), "{errors:?}");
        // and a link without runs is the controls' experiment alone
        assert_eq!(workspace_from_query(&controls.to_query()), (controls, Vec::new(), Vec::new()));
    }

    #[test]
    fn run_labels_name_what_differs() {
        let mut a = ExperimentSpec::default_experiment();
        a.set("objective", "masked_lm").unwrap();
        a.set("masked_lm.rate", "0.15").unwrap();
        let mut b = a.clone();
        b.set("masked_lm.rate", "0.4").unwrap();
        assert_eq!(run_labels(&[&a, &b]), ["masked_lm rate=0.15", "masked_lm rate=0.4"]);
        let mut c = a.clone();
        c.seed += 1;
        c.set("arch", "encoder_decoder").unwrap();
        let labels = run_labels(&[&a, &c]);
        assert_eq!(labels, ["decoder, seed 1337", "encoder–decoder, seed 1338"]);
        assert_eq!(run_labels(&[&a]), ["masked_lm rate=0.15"]);
        assert_eq!(run_labels(&[&a, &a.clone()]), ["masked_lm rate=0.15"; 2]);
        // a run on a text of one's own is told apart by its file
        let mut own = a.clone();
        own.set("corpus", &crate::data::upload_corpus_name("notes.txt", "some text")).unwrap();
        own.validate().unwrap();
        assert_eq!(run_labels(&[&a, &own]), ["on tiny-shakespeare", "on notes.txt"]);
        // as are runs that differ only in their heads or their batch
        let mut heads = a.clone();
        heads.set("heads", "2").unwrap();
        let mut batch = a.clone();
        batch.set("batch", "24").unwrap();
        assert_eq!(run_labels(&[&a, &heads, &batch]), ["heads 4, batch 12", "heads 2, batch 12", "heads 4, batch 24"]);
    }

    #[test]
    fn a_preset_sets_the_size_and_keeps_the_text_and_the_architecture() {
        let mut spec = ExperimentSpec::default_experiment();
        let own = crate::data::upload_corpus_name("notes.txt", "some text");
        for (k, v) in [("corpus", own.as_str()), ("arch", "encoder_decoder"), ("objective", "masked_lm"), ("seed", "7"), ("workers", "1"), ("layers", "6")] {
            spec.set(k, v).unwrap();
        }
        assert!(spec.resized());
        spec.set("preset", "tiny").unwrap();
        assert_eq!((spec.corpus.as_str(), spec.model.arch, spec.seed, spec.train.workers), (own.as_str(), Architecture::EncoderDecoder, 7, 1));
        assert_eq!(spec.runs[0].objectives[0].id, "masked_lm");
        assert_eq!((spec.model.n_layer, spec.model.d_model, spec.train.learning_rate), (2, 32, 3e-3), "the preset's size and settings");
        assert!(!spec.resized());
        spec.set("batch", "16").unwrap();
        assert!(spec.resized(), "the batch is part of the size");
    }

    #[test]
    fn the_built_in_corpus_vocabulary_is_its_texts() {
        for (name, file) in CORPORA {
            let text = std::fs::read_to_string(crate::repo_root().join("assets").join(file)).unwrap();
            let vocab = crate::data::Corpus::builtin(name, &text).unwrap().tokenizer.vocab_size();
            assert_eq!(builtin_vocab(name), Some(vocab), "{name}");
        }
        assert_eq!(builtin_vocab("tiny-shakespeare"), Some(65 + 7 + 32));
        assert!(CORPORA.iter().all(|(name, _)| !corpus_description(name).is_empty()), "every built-in corpus is described");
        assert_eq!(builtin_vocab(&crate::data::upload_corpus_name("notes.txt", "some text")), None);
    }

    #[test]
    fn default_is_baby_gpt_causal_lm_on_shakespeare() {
        let s = ExperimentSpec::default_experiment();
        assert_eq!(s.preset, "baby-gpt");
        assert_eq!(s.model, ModelConfig { n_layer: 4, n_head: 4, d_model: 128, block_size: 64, arch: Default::default() });
        assert_eq!(s.train.batch_size, 12);
        assert_eq!(s.corpus, "tiny-shakespeare");
        assert_eq!(s.runs[0].objectives[0].id, "causal_lm");
        s.validate().unwrap();
    }

    #[test]
    fn workers_is_an_option_of_zero_to_the_most() {
        let mut s = ExperimentSpec::default_experiment();
        assert_eq!(s.train.workers, 0, "one per core by default");
        s.set("workers", "3").unwrap();
        assert_eq!(s.train.workers, 3);
        s.validate().unwrap();
        s.set("workers", &(MAX_WORKERS + 1).to_string()).unwrap();
        assert!(s.validate().unwrap_err().contains("workers"));
        assert!(s.set("workers", "two").is_err());
    }

    #[test]
    fn grad_clip_is_an_option_and_must_be_a_norm() {
        let mut s = ExperimentSpec::default_experiment();
        s.set("grad_clip", "0").unwrap();
        assert_eq!(s.train.grad_clip, 0.0);
        s.validate().unwrap();
        s.set("grad_clip", "-1").unwrap();
        assert!(s.validate().unwrap_err().contains("grad_clip"));
        s.set("grad_clip", "NaN").unwrap();
        assert!(s.validate().is_err());
    }

    #[test]
    fn query_applies_preset_first_and_reports_bad_options() {
        let (s, errors) = ExperimentSpec::from_query("?device=cpu&preset=tiny&seed=7");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((s.preset.as_str(), s.device, s.seed), ("tiny", DeviceChoice::Cpu, 7));

        let (s, errors) = ExperimentSpec::from_query("preset=huge&colour=red&steps=abc&objective=gpt");
        assert_eq!(s, ExperimentSpec::default_experiment());
        assert!(errors[0].contains("valid presets: baby-gpt, tiny"), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("unknown option \"colour\"")));
        assert!(errors.iter().any(|e| e.contains("not a valid number")));
        let said = |query: &str| ExperimentSpec::from_query(query).1.join("; ");
        assert_eq!(said("steps=-5"), "steps: \"-5\" is negative; give a whole number ≥ 0");
        assert_eq!(said("steps=2.5"), "steps: \"2.5\" is not a whole number");
        assert_eq!(said("steps=99999999999999999999999"), "steps: \"99999999999999999999999\" is too large");
        assert_eq!(said("steps=1e3"), "steps: \"1e3\" is not a valid number");
        assert_eq!(said("seed="), "seed: no number given", "an emptied number field");
        assert_eq!(said("snapshot_every=0"), "snapshot_every must be at least 1");
        assert_eq!(said("lr=-0.1"), "learning rate -0.1 is out of range: valid range is (0, 1]", "floats keep their range check");
        assert!(errors.iter().any(|e| e.contains("valid objectives: causal_lm")));
        assert!(parse_objective_mix("=2").unwrap_err().contains("valid objectives"), "a weight without a name");
        assert!(parse_objective_mix("causal_lm=x").unwrap_err().contains("weight \"x\" of causal_lm is not a number"));
        assert!(parse_objective_mix("causal_lm=1,masked_lm,causal_lm=2").unwrap_err().contains("causal_lm appears twice"));

        // a text of one's own is named as the lab names it, or refused with the shape it takes
        let (s, errors) = ExperimentSpec::from_query("corpus=file:notes.txt:0123abcd");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.corpus, "file:notes.txt:0123abcd");
        for odd in ["corpus=file:", "corpus=file:notes.txt", "corpus=file::0123abcd"] {
            let (s, errors) = ExperimentSpec::from_query(odd);
            assert_eq!(s.corpus, "tiny-shakespeare", "{odd}");
            assert!(errors.iter().any(|e| e.contains("file:NAME:HASH")), "{odd}: {errors:?}");
        }
    }

    #[test]
    fn software_renderers_are_told_from_gpus() {
        for name in ["google swiftshader", "Google SwiftShader Device (Subzero)", "mesa llvmpipe (LLVM 19.1.7, 256 bits)", "lavapipe", "Microsoft Basic Render Driver"] {
            assert!(is_software_adapter(name), "{name}");
        }
        for name in ["nvidia ampere NVIDIA H100 80GB HBM3", "apple metal-3 Apple M2", "intel gen-12lp", "amd rdna-3", "WebGPU adapter"] {
            assert!(!is_software_adapter(name), "{name}");
        }
    }

    #[test]
    fn malformed_queries_never_panic() {
        for q in ["%", "%%%", "a=%zz", "=&=&", "preset", "preset=%74iny", "\u{0}=\u{1}", "seed=-1", "steps=0"] {
            let _ = ExperimentSpec::from_query(q);
        }
        assert_eq!(ExperimentSpec::from_query("preset=%74iny").0.preset, "tiny");
        assert!(!ExperimentSpec::from_query("steps=0").1.is_empty());
    }

    #[test]
    fn objective_mixes_parse_and_refuse_all_zero_weights() {
        let mix = parse_objective_mix("causal_lm=0.5").unwrap();
        assert_eq!(mix[0].weight, 0.5);
        assert!(parse_objective_mix("causal_lm:rate=0.2").unwrap_err().contains("has no parameter"));
        assert!(parse_objective_mix("masked_lm:rate=0.95").unwrap_err().contains("valid range is 0.01 to 0.9"));
        assert!(parse_objective_mix("masked_lm=-1").unwrap_err().contains("≥ 0"));
        // a second parameter after a second ':' is pointed to ';'
        assert_eq!(
            parse_objective_mix("span_corruption:rate=0.1:mean_span=8").unwrap_err(),
            "span_corruption's parameters are separated by ';', not ':': span_corruption:rate=0.1;mean_span=8"
        );
        assert_eq!(parse_objective_mix("span_corruption:rate=0.1;mean_span=8").unwrap()[0].params.len(), 2);
        let mix = parse_objective_mix("causal_lm=0.5,masked_lm=0.5:rate=0.3,conditional_training=1:bad_words=fool|rogue").unwrap();
        assert_eq!(mix.len(), 3);
        assert_eq!(mix[2].params["bad_words"], ParamValue::Text("fool,rogue".into()));
        assert_eq!(parse_objective_mix(&objective_mix_text(&mix)).unwrap(), mix);
        let mut s = ExperimentSpec::default_experiment();
        s.set("objective", "causal_lm=0").unwrap();
        assert!(s.validate().unwrap_err().contains("all zero"));
        s.set("objective", "ul2_mixture:weight_r=0;weight_x=0;weight_s=0").unwrap();
        assert!(s.validate().unwrap_err().contains("all zero"));
    }

    #[test]
    fn objective_parameters_and_architecture_can_be_set() {
        let mut s = ExperimentSpec::from_preset("tiny").unwrap();
        s.set("objective", "masked_lm").unwrap();
        s.set("masked_lm.rate", "0.25").unwrap();
        assert_eq!(s.runs[0].objectives[0].params["rate"], ParamValue::Number(0.25));
        assert!(s.set("masked_lm.rate", "2").unwrap_err().contains("valid range is 0.01 to 0.9"));
        assert!(s.set("swapped_lm.rate", "0.2").unwrap_err().contains("has no swapped_lm"));
        s.set("arch", "encoder_decoder").unwrap();
        assert_eq!(s.model.arch, Architecture::EncoderDecoder);
        assert!(s.set("arch", "rnn").unwrap_err().contains("valid architectures"));
        s.validate().unwrap();
    }

    #[test]
    fn spec_round_trips_through_json() {
        let s = ExperimentSpec::from_preset("tiny").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ExperimentSpec>(&json).unwrap(), s);
    }
}
