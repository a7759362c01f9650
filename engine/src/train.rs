//! The training loop, written by hand (burn's `Learner` is not for the browser).
//!
//! One [`Trainer`] = one run: its model, its AdamW state and its own RNG streams (data,
//! corruption, sampling) derived from the spec seed and the run index, so a run's curve does
//! not depend on what else trains beside it. [`Trainer::step`] never reads from the device:
//! the losses wait on the device until [`Trainer::read_losses`] fetches them all in one read.

use std::sync::Arc;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::{CleanBatch, Corpus, Split};
use crate::model::{Architecture, AttentionMode, Head, ModelConfig, ModelInput, Route, Transformer};
use crate::objectives::{self, Context, DeviceTargets, Example, Objective, Params, Prepared, Question};
use crate::optim::{AdamW, AdamWConfig};
use crate::probe_set::ProbeSet;
use crate::rng::Rng;
use crate::schedule::learning_rate;
use crate::spec::{ExperimentSpec, TrainConfig};

pub mod captured_step;
pub mod data_parallel;

pub use crate::profile::StepProfile;

/// RNG stream labels, so every use of randomness has its own reproducible stream.
const STREAM_INIT: u64 = 1;
const STREAM_DATA: u64 = 2;
const STREAM_CORRUPT: u64 = 3;
const STREAM_SAMPLE: u64 = 4;
const STREAM_EVAL: u64 = 5;
const STREAM_ASK: u64 = 6;

/// Characters the model writes after a typed text ("ask the model").
pub const ASK_CONTINUATION: usize = 120;

/// The longest stretch the model writes behind one sentinel ("ask the model"); span
/// corruption's longest mean span is 16.
pub const ASK_SPAN_MAX: usize = 16;

/// One objective of the run's mix, resolved from the registry.
struct MixPart {
    objective: &'static dyn Objective,
    /// Weight normalised so the mix sums to 1.
    weight: f64,
    params: Params,
}

/// A run's weights before its first step, from its seed: what [`Trainer::new`] starts with and
/// what [`Trainer::start_over`] starts again from, the same by construction.
fn initial_model(config: &ModelConfig, vocab_size: usize, run_seed: u64, autodiff: &Device) -> Transformer {
    Transformer::new(config, vocab_size, &mut Rng::derive(run_seed, STREAM_INIT), autodiff)
}

/// One run: its model, optimiser, data and pending losses. On a GPU, best call its methods from
/// one thread: cubecl keeps one command stream per thread, and a step on another thread than
/// the step before copies the parameters and AdamW's state instead of updating them in place
/// (a write in place from another stream was not waited for: `optim::writable_in_place`), which
/// is right but costs a copy of each.
pub struct Trainer {
    model_config: ModelConfig,
    train: TrainConfig,
    seed: u64,
    corpus: Arc<Corpus>,
    /// Plain device (inference, data); `autodiff` is the same device with gradients.
    device: Device,
    autodiff: Device,
    model: Option<Transformer>,
    /// AdamW with the global-norm clipping (fused per parameter, see [`crate::optim`]).
    optim: AdamW,
    mix: Vec<MixPart>,
    data_rng: Rng,
    corrupt_rng: Rng,
    sample_rng: Rng,
    /// Draws the continuations of typed texts ("ask the model"), apart from the samples'
    /// stream so that asking never changes a run's samples.
    ask_rng: Rng,
    step: usize,
    /// Training losses not yet read from the device: (step, loss [1]).
    pending: Vec<(usize, Tensor<1>)>,
    /// The causal/bidirectional attention biases are the same every step: built once per
    /// (mode, batch, seq) (a split step's half batch has its own).
    bias_cache: Vec<(AttentionMode, usize, usize, Tensor<4>)>,
    /// Character ids by decreasing training-text frequency (for C-RTS clusters).
    by_frequency: Vec<u32>,
    /// The latest training batch of each mix part, for [`Trainer::examples`].
    last_prepared: Vec<Option<Prepared>>,
    /// Whether a step's batch may be split by rows between two workers: no objective of the
    /// mix compares rows with each other or draws dropout noise (contrastive does both).
    splittable: bool,
    /// This run's name with its helper workers (unique in the process), and whether each
    /// helper of the last split step holds a copy of the run in step with it (its model and
    /// AdamW state as of this step), so that a split step need not send it (see
    /// [`data_parallel`]).
    helper_key: u64,
    helper_has_copy: Vec<bool>,
    /// The next step's jobs, already sent to the helpers with this step's gradients (see
    /// [`data_parallel`]'s "ahead"), and the random streams as they were before its batch was
    /// drawn: a step taken otherwise puts them back and draws the same batch.
    ahead: Option<data_parallel::Ahead>,
    /// How the representation views read the model: the attention pattern of the mix's first
    /// objective, reduced to causal or bidirectional (a masked-LM encoder is read
    /// bidirectionally, a GPT causally), and whether it uses position embeddings.
    reading: (AttentionMode, bool),
    /// Milliseconds since some origin, where the caller wants the steps profiled.
    clock: Option<fn() -> f64>,
    /// The profiled steps' parts, summed since the last [`Trainer::take_profile`].
    profile: StepProfile,
    /// The whole step as a replayed graph, on a GPU ([`captured_step`]).
    capture: captured_step::Capture,
    /// Captures this run has opened (recorded), counted across [`Trainer::start_over`].
    recordings: usize,
}

/// What a representation snapshot reads from the model (one device read).
pub struct Features {
    pub step: usize,
    /// Character tokens (no special tokens): their text.
    pub tokens: Vec<String>,
    /// embeddings: [tokens, d_model] rows of the token-embedding table
    pub embeddings: Vec<f32>,
    /// pooled: [probe rows, d_model] mean final hidden state of each probe sequence
    pub pooled: Vec<f32>,
    pub d_model: usize,
}

/// Self-attention weights for one input, for the attention-map view.
pub struct AttentionMaps {
    pub tokens: Vec<String>,
    /// How the maps read the text, in words ([`reading_words`]): which stack, which mask.
    pub reads: String,
    pub layers: usize,
    pub heads: usize,
    /// weights: [layers, heads, seq, seq], each row (a query) sums to 1
    pub weights: Vec<f32>,
}

/// The message of a run whose training loss stopped being a number, or `None`.
pub fn divergence(losses: &[(usize, f32)]) -> Option<String> {
    losses.iter().find(|(_, l)| !l.is_finite()).map(|(s, l)| {
        format!("diverged at step {}: the loss became {l}, so this run stopped (runs beside it go on). Lower its learning rate and add it again", s + 1)
    })
}

/// Device → host reads since the process started (each one a round trip the host waits
/// for). Steps make none; the counters below say how many the rest of the loop makes.
static HOST_READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What a failed device read says on the page: burn's error with its chain of causes, less
/// the backtrace lines cubecl adds to each (in the browser every one reads "No backtrace
/// available", several times over).
pub fn read_failed(e: &impl std::fmt::Debug) -> String {
    let text = format!("{e:?}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !matches!(l.trim(), "No backtrace available" | "Backtrace:" | "Asked at:" | "disabled backtrace"))
        .collect();
    format!("reading from the device failed: {}", lines.join("\n").trim_end())
}

/// Device → host reads so far (losses, evaluations, samples, snapshots, attention maps).
pub fn host_reads() -> usize {
    HOST_READS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_read() {
    HOST_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Reads `tensors` (losses of one element each, or whole flattened parameters) from the device
/// in one asynchronous read, flat, one after the other.
pub async fn read_flat(tensors: Vec<Tensor<1>>) -> Result<Vec<f32>, String> {
    if tensors.is_empty() {
        return Ok(Vec::new());
    }
    count_read();
    let data = Tensor::cat(tensors, 0).into_data_async().await.map_err(|e| read_failed(&e))?;
    // into, not to: the concatenation's buffer becomes the Vec, without a copy (3 MB of a
    // baby GPT's gradients, read every split step)
    data.try_into_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}"))
}

impl Trainer {
    /// Builds run `run_index` of `spec` on `device` (flex or wgpu).
    pub fn new(spec: &ExperimentSpec, run_index: usize, corpus: Arc<Corpus>, device: Device) -> Result<Self, String> {
        spec.validate()?;
        corpus.check_block(spec.model.block_size)?;
        let run = spec.runs.get(run_index).ok_or_else(|| format!("the spec has no run {run_index}"))?;
        let total: f64 = run.objectives.iter().map(|o| o.weight).sum();
        let mix = run
            .objectives
            .iter()
            .filter(|o| o.weight > 0.0)
            .map(|o| Ok(MixPart { objective: objectives::find(&o.id)?, weight: o.weight / total, params: o.params.clone() }))
            .collect::<Result<Vec<_>, String>>()?;
        let n_parts = mix.len();
        let by_frequency = frequency_order(&corpus);
        // One sample row prepared by each objective of the mix: what the run's batches look like.
        let samples: Vec<Prepared> = {
            let clean = corpus.sample(Split::Val, 1, spec.model.block_size, &mut Rng::seeded(0));
            mix.iter()
                .map(|part| {
                    let context = Context { tokenizer: &corpus.tokenizer, params: &part.params, by_frequency: &by_frequency, block_size: spec.model.block_size };
                    part.objective.prepare(&clean, &context, &mut Rng::seeded(0))
                })
                .collect()
        };
        let splittable = samples.iter().all(|p| p.head != Head::Projection && p.embed_dropout == 0.0);
        let reading = {
            let p = &samples[0];
            (if p.attention.is_causal() { AttentionMode::Causal } else { AttentionMode::Bidirectional }, p.use_positions)
        };
        let run_seed = spec.seed.wrapping_add(run_index as u64);
        let autodiff = device.clone().autodiff();
        let model = initial_model(&spec.model, corpus.tokenizer.vocab_size(), run_seed, &autodiff);
        let optim = AdamW::new(AdamWConfig {
            beta1: spec.train.beta1,
            beta2: spec.train.beta2,
            epsilon: 1e-8,
            weight_decay: spec.train.weight_decay,
            grad_clip: spec.train.grad_clip,
        });
        Ok(Self {
            model_config: spec.model.clone(),
            train: spec.train.clone(),
            seed: run_seed,
            corpus,
            autodiff,
            model: Some(model),
            optim,
            mix,
            data_rng: Rng::derive(run_seed, STREAM_DATA),
            corrupt_rng: Rng::derive(run_seed, STREAM_CORRUPT),
            sample_rng: Rng::derive(run_seed, STREAM_SAMPLE),
            ask_rng: Rng::derive(run_seed, STREAM_ASK),
            step: 0,
            pending: Vec::new(),
            bias_cache: Vec::new(),
            by_frequency,
            last_prepared: vec![None; n_parts],
            splittable,
            helper_key: data_parallel::next_run_key(),
            helper_has_copy: Vec::new(),
            ahead: None,
            reading,
            clock: None,
            profile: StepProfile::default(),
            capture: if !spec.train.capture {
                captured_step::Capture::Off("turned off (capture=0)".into())
            } else if matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_)) {
                captured_step::Capture::Off("a CPU step launches no kernels".into())
            } else {
                captured_step::Capture::NotYet
            },
            recordings: 0,
            device,
        })
    }

    /// Optimiser steps taken so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.train.steps
    }

    pub fn config(&self) -> &TrainConfig {
        &self.train
    }

    pub fn model(&self) -> &Transformer {
        self.model.as_ref().expect("model is present between steps")
    }

    pub fn corpus(&self) -> &Corpus {
        &self.corpus
    }

    /// Learning rate of the next step.
    pub fn learning_rate(&self) -> f64 {
        let t = &self.train;
        learning_rate(self.step, t.learning_rate, t.min_lr, t.warmup_steps, t.steps)
    }

    /// The device-side model input for a prepared batch. `rng` draws the embedding dropout
    /// mask when the batch asks for one.
    fn model_input(&mut self, prepared: &Prepared, training: bool, rng: &mut Rng) -> ModelInput {
        let device = if training { self.autodiff.clone() } else { self.device.clone() };
        let (b, s) = (prepared.batch, prepared.seq);
        let tokens = token_ids(prepared, &device);
        let arch = self.model_config.arch;
        let mode = &prepared.attention;
        let route = if training && matches!(mode, AttentionMode::Causal | AttentionMode::Bidirectional) {
            self.cached_route(mode, b, s)
        } else {
            Route::new(mode, arch, b, s, &device)
        };
        let embed_mask = self.dropout_noise(prepared, rng).map(|values| Tensor::<3>::from_data(TensorData::new(values, [b, s, self.model_config.d_model]), &device));
        ModelInput { tokens, route, use_positions: prepared.use_positions, embed_mask, head: prepared.head }
    }

    /// The embedding dropout noise a batch asks for, drawn from `rng`: keep-mask / (1 − p),
    /// [batch, seq, d_model], drawn on the CPU (reproducible everywhere).
    fn dropout_noise(&self, prepared: &Prepared, rng: &mut Rng) -> Option<Vec<f32>> {
        (prepared.embed_dropout > 0.0).then(|| {
            let p = prepared.embed_dropout;
            let n = prepared.batch * prepared.seq * self.model_config.d_model;
            let scale = (1.0 / (1.0 - p)) as f32;
            (0..n).map(|_| if rng.unit() < p { 0.0 } else { scale }).collect()
        })
    }

    /// The route of a causal or bidirectional training batch, whose mask is the same every
    /// step: built once per (mode, batch, seq).
    fn cached_route(&mut self, mode: &AttentionMode, b: usize, s: usize) -> Route {
        let bias = if let Some((_, _, _, t)) = self.bias_cache.iter().find(|(m, rows, len, _)| m == mode && *rows == b && *len == s) {
            t.clone()
        } else {
            let t = mode.bias(b, s, &self.autodiff);
            self.bias_cache.push((mode.clone(), b, s, t.clone()));
            t
        };
        Route::with_bias(mode, self.model_config.arch, bias)
    }

    /// This step through the capture ([`captured_step`]): a warm-up step, the capturing step
    /// or a replay, each with the optimiser's update. `Err(model)` where the step is to be
    /// taken the ordinary way (capture off for this run, or not yet): nothing has been drawn
    /// then. Ok: the step's loss (not read) and the updated model.
    #[allow(clippy::result_large_err)] // the model comes back to take the step the ordinary way
    fn captured_step(&mut self, model: Transformer, clean: &CleanBatch) -> Result<(Tensor<1>, Transformer), Transformer> {
        use captured_step::{Capture, PartStep, Signature, StableInputs};
        match &self.capture {
            Capture::Off(_) => return Err(model),
            Capture::NotYet if self.step < captured_step::ORDINARY_STEPS => return Err(model),
            _ => {}
        }
        if self.train.nan_at > 0 {
            self.capture_off("the run injects a fault (nan_at)".into());
            return Err(model);
        }
        // The same draws as `mix_loss`: each part's preparation, then its dropout noise.
        let mut rng = self.corrupt_rng.clone();
        let parts: Vec<PartStep> = (0..self.mix.len())
            .map(|i| {
                let prepared = self.mix[i].objective.prepare(clean, &self.context(&self.mix[i].params), &mut rng);
                let noise = self.dropout_noise(&prepared, &mut rng);
                PartStep { prepared, noise, mix_weight: self.mix[i].weight }
            })
            .collect();
        let signature = Signature::of(&parts);
        let arch = self.model_config.arch;
        let lr = self.learning_rate();
        let out = match std::mem::replace(&mut self.capture, Capture::NotYet) {
            Capture::NotYet => {
                if let Err(why) = captured_step::prepare(&self.device) {
                    // Another run of this device may be between its own prepare and capture
                    // (one at a time per stream): try again at a later step, for a while.
                    self.capture = if self.step < captured_step::ORDINARY_STEPS + captured_step::RETRY_STEPS { Capture::NotYet } else { Capture::Off(why) };
                    return Err(model);
                }
                let inputs = StableInputs::new(signature, &parts, arch, &self.autodiff);
                let out = self.step_through(model, &parts, &inputs, lr);
                self.capture = Capture::Warming { inputs, left: captured_step::WARMUP_STEPS - 1 };
                out
            }
            Capture::Warming { mut inputs, left } if inputs.signature == signature => {
                inputs.write(&parts, arch, &self.autodiff);
                if left > 0 {
                    let out = self.step_through(model, &parts, &inputs, lr);
                    self.capture = Capture::Warming { inputs, left: left - 1 };
                    out
                } else {
                    self.capture_now(model, &parts, inputs, lr)
                }
            }
            Capture::Replaying { mut inputs, graph, loss, launches } if inputs.signature == signature => {
                inputs.write(&parts, arch, &self.autodiff);
                self.optim.advance(lr, &self.device, true);
                match captured_step::replay(&self.device, &graph) {
                    Ok(()) => {
                        // a copy: the next replay overwrites `loss`, and the pending losses are read later
                        let out = (loss.clone().mul_scalar(1.0), model);
                        self.capture = Capture::Replaying { inputs, graph, loss, launches };
                        out
                    }
                    Err(why) => {
                        self.capture = Capture::Off(why);
                        self.optim.retreat();
                        self.step_through(model, &parts, &inputs, lr)
                    }
                }
            }
            other => {
                self.capture = other;
                self.capture_off("this run's steps differ in shape".into());
                return Err(model);
            }
        };
        self.corrupt_rng = rng;
        for (i, part) in parts.into_iter().enumerate() {
            self.last_prepared[i] = Some(part.prepared);
        }
        Ok(out)
    }

    /// Turns capture off for this run. A capture prepared for warm-up steps is closed first:
    /// until it is, the device's stream stays prepared and refuses other runs' captures.
    fn capture_off(&mut self, why: String) {
        if matches!(self.capture, captured_step::Capture::Warming { .. }) {
            let _ = captured_step::stop(&self.device);
        }
        self.capture = captured_step::Capture::Off(why);
    }

    /// Opens the capture, records this step (forward, backward and update), closes it and
    /// replays it (a capture records; it does not run). Should the capture not open, the step
    /// the ordinary way through the same inputs, and capture off. Should it fail once open, the
    /// recorded update never runs and its buffers (the parameters among them) stay marked as
    /// failed, and capture is off with a reason that begins with
    /// [`captured_step::RECORDING_FAILED`]: the caller starts the run over
    /// ([`Trainer::start_over`]).
    fn capture_now(&mut self, model: Transformer, parts: &[captured_step::PartStep], inputs: captured_step::StableInputs, lr: f64) -> (Tensor<1>, Transformer) {
        use captured_step::Capture;
        // The step's values are uploaded before the capture opens: it records launches only.
        let constants = self.optim.advance(lr, &self.device, false);
        if let Err(why) = captured_step::start(&self.device) {
            self.optim.retreat();
            let out = self.step_through(model, parts, &inputs, lr);
            self.capture = Capture::Off(why);
            return out;
        }
        // (the capture is open: nothing below may upload) what the graph launches at each
        // replay, counted as it is recorded
        let watch = crate::dispatches::DispatchWatch::count();
        self.recordings += 1;
        let (loss, grads) = self.pass_through(&model, parts, &inputs);
        let (loss, model) = (loss.detach(), self.optim.update(constants, model, grads));
        if self.recordings <= self.train.capture_fails {
            captured_step::upload_inside_the_recording(&self.device);
        }
        let stopped = captured_step::stop(&self.device);
        let launches = watch.total();
        drop(watch);
        let graph = match stopped {
            Ok(graph) => graph,
            Err(why) => {
                self.capture = Capture::Off(why);
                return (loss, model);
            }
        };
        if let Err(why) = captured_step::replay(&self.device, &graph) {
            self.capture = Capture::Off(why);
            return (loss, model);
        }
        let out = (loss.clone().mul_scalar(1.0), model);
        self.capture = Capture::Replaying { inputs, graph, loss, launches };
        out
    }

    /// One step from the stable input buffers (what a capture records): the mix's loss, its
    /// gradients, and the optimiser's update. The loss and the updated model.
    fn step_through(&mut self, model: Transformer, parts: &[captured_step::PartStep], inputs: &captured_step::StableInputs, lr: f64) -> (Tensor<1>, Transformer) {
        let (loss, grads) = self.pass_through(&model, parts, inputs);
        (loss.detach(), self.optim.step(lr, model, grads))
    }

    /// The mix's loss and its gradients for `parts`, read from the stable input buffers
    /// (what a capture records). Each part's loss is launched as a mean over every position
    /// and multiplied by its stable scale (its weight over its share of counted targets), so
    /// that one graph serves batches whose number of targets differs.
    fn pass_through(&mut self, model: &Transformer, parts: &[captured_step::PartStep], inputs: &captured_step::StableInputs) -> (Tensor<1>, GradientsParams) {
        let mut total: Option<Tensor<1>> = None;
        for (i, (part, stable)) in parts.iter().zip(&inputs.parts).enumerate() {
            let p = &part.prepared;
            let route = match &stable.route {
                Some(route) => route.clone(),
                None => self.cached_route(&p.attention, p.batch, p.seq),
            };
            let input = ModelInput { tokens: stable.tokens.clone(), route, use_positions: p.use_positions, embed_mask: stable.noise.clone(), head: p.head };
            let loss = self.mix[i].objective.loss(&model.forward(&input), p, &stable.targets) * stable.scale.clone();
            total = Some(match total {
                None => loss,
                Some(t) => t + loss,
            });
        }
        let loss = total.expect("a run has at least one objective with weight > 0");
        let grads = GradientsParams::from_grads(loss.backward(), model);
        (loss, grads)
    }

    /// The kernels each replay of the captured graph runs (0 while none is replayed): launches
    /// that no launch observer sees, which [`crate::benchmark`] adds to its count.
    pub fn replayed_launches(&self) -> usize {
        match &self.capture {
            captured_step::Capture::Replaying { launches, .. } => *launches,
            _ => 0,
        }
    }

    /// Whether this run's steps replay a captured graph, or why not (`Err`; `Ok(false)` while
    /// the capture is still to come).
    pub fn capture_state(&self) -> Result<bool, String> {
        match &self.capture {
            captured_step::Capture::Replaying { .. } => Ok(true),
            captured_step::Capture::Off(why) => Err(why.clone()),
            _ => Ok(false),
        }
    }

    /// Captures this run has recorded, failed ones included (each failed one started the run
    /// over, [`Trainer::start_over`]).
    pub fn capture_recordings(&self) -> usize {
        self.recordings
    }

    /// The context an objective of the mix works in, with that objective's `params`.
    fn context<'a>(&'a self, params: &'a Params) -> Context<'a> {
        Context {
            tokenizer: &self.corpus.tokenizer,
            params,
            by_frequency: &self.by_frequency,
            block_size: self.model_config.block_size,
        }
    }

    /// Weighted loss of the run's objective mix on one clean batch.
    fn mix_loss(&mut self, model: &Transformer, clean: &CleanBatch, rng: &mut Rng, training: bool) -> Tensor<1> {
        let device = if training { self.autodiff.clone() } else { self.device.clone() };
        let mut total: Option<Tensor<1>> = None;
        for i in 0..self.mix.len() {
            let (objective, weight) = (self.mix[i].objective, self.mix[i].weight);
            let prepared = objective.prepare(clean, &self.context(&self.mix[i].params), rng);
            let targets = DeviceTargets::new(&prepared, &device);
            let input = self.model_input(&prepared, training, rng);
            total = Some(add_part_loss(total, model, objective, weight, &input, &prepared, &targets));
            if training {
                self.last_prepared[i] = Some(prepared);
            }
        }
        total.expect("a run has at least one objective with weight > 0")
    }

    /// One example of the latest training batch per objective of the mix, as the model saw
    /// it (the "what the model sees" view). Empty before the first step.
    pub fn examples(&self) -> Vec<Example> {
        self.mix
            .iter()
            .zip(&self.last_prepared)
            .filter_map(|(part, p)| p.as_ref().map(|p| Example::from_prepared(part.objective.info().id, p, &self.corpus.tokenizer)))
            .collect()
    }

    /// [`Trainer::examples`] with the model's answers at their scored positions, as it is now
    /// (no dropout): what it gets right of what it is scored on, the view's third line. One
    /// row per objective, read in one transaction; contrastive examples go unanswered.
    pub async fn examples_answered(&mut self) -> Result<Vec<Example>, String> {
        let mut examples = self.examples();
        // (each example is the first row of its part's latest batch: `examples` keeps the
        // parts that have one, in order)
        let (at, rows): (Vec<usize>, Vec<Prepared>) = self.last_prepared.iter().flatten().enumerate()
            .filter(|(_, p)| p.head != Head::Projection)
            .map(|(k, p)| (k, Prepared { embed_dropout: 0.0, ..p.rows(0, 1) }))
            .unzip();
        for (k, values) in at.into_iter().zip(self.read_logits(&rows).await?) {
            examples[k].answer(&values, &self.corpus.tokenizer);
        }
        Ok(examples)
    }

    /// The model's logits for each of `rows` (one row each, no dropout), as it is now, read in
    /// one transaction: [seq * classes] per row. Nothing is read when there is no row.
    async fn read_logits(&mut self, rows: &[Prepared]) -> Result<Vec<Vec<f32>>, String> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model().valid();
        let mut read = burn::tensor::Transaction::default();
        for row in rows {
            let input = self.model_input(row, false, &mut Rng::seeded(0));
            // logits: [1, seq, classes] -> [seq * classes]
            read = read.register(model.forward(&input).logits.reshape([-1]));
        }
        count_read();
        let data = read.execute_async().await.map_err(|e| read_failed(&e))?;
        data.into_iter().map(|d| d.try_to_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}"))).collect()
    }

    /// The model's logits at position `at` of the one-row batch `prepared`: [classes]. One
    /// small read (the generators' loops, a character at a time).
    async fn logits_at(&mut self, model: &Transformer, prepared: &Prepared, at: usize) -> Result<Vec<f32>, String> {
        let input = self.model_input(prepared, false, &mut Rng::seeded(0));
        let last = model.forward(&input).logits.narrow(1, at, 1).reshape([-1]);
        count_read();
        let logits = last.into_data_async().await.map_err(|e| read_failed(&e))?;
        logits.try_to_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}"))
    }

    /// Whether any objective of the mix trains a left-to-right generator (so samples mean something).
    pub fn generates(&self) -> bool {
        self.mix.iter().any(|p| p.objective.info().generates)
    }

    /// The first count an objective of the mix reports for generated `text` (conditional
    /// training: bad words among the words), see [`Objective::score_sample`].
    pub fn score_sample(&self, text: &str) -> Option<(usize, usize)> {
        self.mix.iter().find_map(|p| p.objective.score_sample(text, &self.context(&p.params)))
    }

    /// One optimiser step. Reads nothing from the device; the loss waits in `pending`.
    ///
    /// On flex (natively) the step runs inside rayon's pool, so that its parallel loops start
    /// without each being injected into the pool from outside. A GPU step stays on the calling
    /// thread: cubecl gives each thread its own command stream, and `rayon::scope` runs its
    /// closure on whichever pool thread takes it, so steps would move from stream to stream.
    /// That once trained to other values (3 of 9 lavapipe processes of the same benchmark; the
    /// in-place update, now copied across streams, see [`Trainer`]) and still costs copies
    /// (`a_gpu_step_stays_on_the_calling_thread_and_a_cpu_step_runs_in_the_pool`,
    /// `a_gpu_run_moved_to_another_thread_trains_the_same`).
    pub fn step(&mut self) {
        #[cfg(not(target_family = "wasm"))]
        if matches!(self.device.as_dispatch(), burn::backend::DispatchDevice::Flex(_)) {
            rayon::scope(|_| self.step_here());
            return;
        }
        self.step_here();
    }

    fn step_here(&mut self) {
        // a job sent ahead to a helper is not used: its batch is drawn again here
        self.forget_ahead();
        let t0 = self.now();
        let clean = self.corpus.sample(Split::Train, self.train.batch_size, self.model_config.block_size, &mut self.data_rng);
        let model = self.model.take().expect("model is present between steps");
        let (loss, t1, t2) = match self.captured_step(model, &clean) {
            Ok(_) if self.recording_failed() => {
                // the recorded update never ran, and what it wrote (the parameters, AdamW's
                // moments) can no longer be read: the run starts over and takes this step again
                self.start_over();
                return self.step_here();
            }
            Ok((loss, model)) => {
                // the parts are not apart in a captured step: all of it counts as the update
                self.model = Some(model);
                (loss, t0, t0)
            }
            Err(model) => {
                let mut rng = self.corrupt_rng.clone();
                let mut loss = self.mix_loss(&model, &clean, &mut rng, true);
                self.corrupt_rng = rng;
                if self.train.nan_at == self.step + 1 {
                    // fault injection (TrainConfig::nan_at): a NaN loss poisons gradients and weights
                    loss = loss.mul_scalar(f32::NAN);
                }
                let t1 = self.now();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                let t2 = self.now();
                let lr = self.learning_rate();
                self.model = Some(self.optim.step(lr, model, grads));
                (loss.detach(), t1, t2)
            }
        };
        self.pending.push((self.step, loss));
        self.step += 1;
        // the helpers' copies of this run missed this step
        self.helper_has_copy.clear();
        let t3 = self.now();
        self.profiled(StepProfile { steps: 1, forward_ms: t1 - t0, backward_ms: t2 - t1, update_ms: t3 - t2, ..Default::default() });
    }

    /// Whether the capture this step opened failed while it recorded.
    fn recording_failed(&self) -> bool {
        matches!(&self.capture, captured_step::Capture::Off(why) if why.starts_with(captured_step::RECORDING_FAILED))
    }

    /// Starts the run over from its seed and retakes the steps it had taken, after a captured
    /// step failed while it recorded: that step's update never ran, and the buffers the
    /// recording wrote in place (the parameters, AdamW's moments) now fail every read. A run
    /// is deterministic, so the retaken steps reach the same weights; only the losses not yet
    /// read are kept. The retaken steps try the capture once more ([`MAX_RECORDINGS`]), then
    /// the run steps without capture.
    ///
    /// [`MAX_RECORDINGS`]: captured_step::MAX_RECORDINGS
    fn start_over(&mut self) {
        use captured_step::Capture;
        let why = match &self.capture {
            Capture::Off(why) => why.clone(),
            _ => String::new(),
        };
        let steps = self.step;
        let unread_from = self.pending.first().map_or(steps, |(s, _)| *s);
        let profile = std::mem::take(&mut self.profile);
        // the failed run's buffers go back to the pool before the new ones are made
        self.model = None;
        self.optim = AdamW::new(self.optim.config().clone());
        self.pending.clear();
        self.bias_cache.clear();
        self.model = Some(initial_model(&self.model_config, self.corpus.tokenizer.vocab_size(), self.seed, &self.autodiff));
        self.data_rng = Rng::derive(self.seed, STREAM_DATA);
        self.corrupt_rng = Rng::derive(self.seed, STREAM_CORRUPT);
        self.step = 0;
        self.capture = if self.recordings < captured_step::MAX_RECORDINGS {
            Capture::NotYet
        } else {
            Capture::Off(format!("{why} (the capture failed {} times: the run started over without it)", self.recordings))
        };
        for _ in 0..steps {
            self.step_here();
        }
        self.pending.retain(|(s, _)| *s >= unread_from);
        self.profile = profile;
    }

    /// Times each step's parts with `now_ms` from now on ([`Trainer::take_profile`]).
    pub fn set_clock(&mut self, now_ms: fn() -> f64) {
        self.clock = Some(now_ms);
    }

    /// The clock's reading, or 0 without one.
    fn now(&self) -> f64 {
        self.clock.map_or(0.0, |now| now())
    }

    fn profiled(&mut self, step: StepProfile) {
        if self.clock.is_some() {
            self.profile.add(&step);
        }
    }

    /// Milliseconds per step of each part, averaged over the steps since the last call (or
    /// since [`Trainer::set_clock`]); `None` without a clock or steps.
    pub fn take_profile(&mut self) -> Option<StepProfile> {
        let p = std::mem::take(&mut self.profile);
        (self.clock.is_some() && p.steps > 0).then(|| p.averaged())
    }

    /// Fetches the training losses of the steps since the last call, in one device read.
    pub async fn read_losses(&mut self) -> Result<Vec<(usize, f32)>, String> {
        let pending = std::mem::take(&mut self.pending);
        let steps: Vec<usize> = pending.iter().map(|(s, _)| *s).collect();
        let values = read_flat(pending.into_iter().map(|(_, t)| t).collect()).await?;
        Ok(steps.into_iter().zip(values).collect())
    }

    /// Mean loss of the objective mix on `eval_batches` held-out batches (the same batches at
    /// every evaluation, so the curve shows the model changing, not the batches).
    pub async fn evaluate(&mut self) -> Result<f32, String> {
        let model = self.model().valid();
        let mut rng = Rng::derive(self.seed, STREAM_EVAL);
        let mut losses = Vec::with_capacity(self.train.eval_batches);
        for _ in 0..self.train.eval_batches {
            let clean = self.corpus.sample(Split::Val, self.train.batch_size, self.model_config.block_size, &mut rng);
            losses.push(self.mix_loss(&model, &clean, &mut rng, false));
        }
        let n = losses.len() as f32;
        Ok(read_flat(losses).await?.iter().sum::<f32>() / n)
    }

    /// Generates `len` characters after `prompt`, from the run's sample stream (the periodic
    /// samples).
    pub async fn sample(&mut self, prompt: &str, len: usize) -> Result<String, String> {
        let mut rng = self.sample_rng.clone();
        let text = self.generate(prompt, len, &mut rng).await;
        self.sample_rng = rng;
        text
    }

    /// What the run's model answers about `text`, typed by a person (the page's "ask the
    /// model"), as it is now (no dropout; nothing about the run changes): where an objective of
    /// the mix generates, [`ASK_CONTINUATION`] characters after the text; and for each objective
    /// with a question ([`Objective::question`]: masked LM's blanks, a detector's verdicts, …)
    /// its answers, all read in one transaction. `_` stands for a hidden character.
    pub async fn ask(&mut self, text: &str) -> Result<objectives::Answers, String> {
        let typed = objectives::typed(text, &self.corpus.tokenizer)?;
        let block = self.model_config.block_size;
        if typed.is_empty() {
            return Err("type a few characters to ask the model about".into());
        }
        if typed.len() > block {
            return Err(format!("this model reads at most {block} characters at once; type at most {block}, not {}", typed.len()));
        }
        let mut answers = objectives::Answers::default();
        let mut asked = Vec::new();
        let mut to_write = Vec::new();
        for part in &self.mix {
            match part.objective.question(&typed, &self.context(&part.params)) {
                None => {}
                Some(Err(hint)) => answers.notes.push(hint),
                Some(Ok(Question::Read(row))) => asked.push((part.objective.info().id, row)),
                Some(Ok(Question::WriteSpans { source, marks })) => to_write.push((part.objective.info().id, source, marks)),
            }
        }
        if self.generates() {
            // a model that writes left to right sees only what comes before the first blank,
            // and continues that (beside a masked model filling the blank from both sides: the
            // difference the two objectives make)
            let prompt = objectives::before_blank(text);
            if prompt.is_empty() {
                answers.notes.push(format!("a model that writes left to right has nothing before the first {} to continue", objectives::BLANK));
            } else {
                if prompt.len() < text.len() {
                    answers.notes.push(format!("a model that writes left to right sees only what comes before the first {}: it continues {prompt:?}", objectives::BLANK));
                }
                let mut rng = self.ask_rng.clone();
                let continuation = self.generate(prompt, ASK_CONTINUATION, &mut rng).await;
                self.ask_rng = rng;
                answers.continuation = Some(continuation?);
            }
        }
        let (ids, rows): (Vec<&str>, Vec<Prepared>) = asked.into_iter().unzip();
        let n_chars = self.corpus.tokenizer.n_chars();
        for ((id, row), mut values) in ids.into_iter().zip(&rows).zip(self.read_logits(&rows).await?) {
            if row.head == Head::Vocab {
                objectives::only_characters(&mut values, row.seq, n_chars);
            }
            let mut example = Example::from_prepared(id, row, &self.corpus.tokenizer);
            example.answer(&values, &self.corpus.tokenizer);
            answers.examples.push(example);
        }
        for (id, source, marks) in to_write {
            // the line as the model reads it, each sentinel answered by the stretch it writes
            let spans = self.write_spans(&source).await?;
            let tok = &self.corpus.tokenizer;
            let mut row = Prepared::new(1, source.len(), source.clone(), AttentionMode::Prefix(vec![source.len()]));
            row.marks = marks;
            row.targets = source.iter().map(|&t| if tok.sentinel_index(t).is_some() { objectives::ASKED } else { objectives::IGNORE }).collect();
            let mut example = Example::from_prepared(id, &row, tok);
            let mut written = spans.into_iter();
            (example.answers, example.confidence) = source.iter().map(|&t| match tok.sentinel_index(t) {
                Some(_) => written.next().unwrap_or_default(),
                None => (String::new(), 0.0),
            }).unzip();
            answers.examples.push(example);
        }
        if answers.continuation.is_none() && answers.examples.is_empty() && answers.notes.is_empty() {
            let names: Vec<&str> = self.mix.iter().map(|p| p.objective.info().name).collect();
            answers.notes.push(format!("{} answers no typed text: its score compares whole texts, not the characters of one; watch what the model sees instead", names.join(" + ")));
        }
        Ok(answers)
    }

    /// T5's decoding for "ask the model": after `source` (each hidden stretch one sentinel)
    /// the model writes each sentinel's stretch, as its training targets are written: the
    /// sentinel, then the characters, greedily (the most likely, among the characters), one read
    /// per character. A stretch ends where the model would write a sentinel next (or at
    /// [`ASK_SPAN_MAX`] characters), and the next sentinel is then given to it. The row is
    /// padded to the context, which the prefix-then-causal mask hides from every written
    /// position, so that the GPU compiles one shape. Returns each stretch and the mean
    /// probability of its characters; for a stretch it leaves empty (a sentinel first: an
    /// undertrained model's usual answer), the probability of that sentinel.
    async fn write_spans(&mut self, source: &[u32]) -> Result<Vec<(String, f32)>, String> {
        let tok = self.corpus.tokenizer.clone();
        let block = self.model_config.block_size;
        let p = source.len();
        if p >= block {
            return Err(format!("this model reads at most {block} characters at once, and must have room to write the hidden stretches after the line: type a shorter line"));
        }
        let spans = source.iter().filter(|&&t| tok.sentinel_index(t).is_some()).count();
        let (n_chars, pad) = (tok.n_chars(), tok.special_id("[PAD]"));
        let model = self.model().valid();
        let mut row = source.to_vec();
        row.push(tok.sentinel(0));
        // each stretch: its text, the sum of its characters' probabilities, their count
        let mut out = vec![(String::new(), 0.0f32, 0usize); spans];
        let mut k = 0;
        while row.len() <= block {
            let len = row.len();
            let mut padded = row.clone();
            padded.resize(block, pad);
            let prepared = Prepared::new(1, block, padded, AttentionMode::Prefix(vec![p]));
            // the logits of the last written position: [vocab]
            let logits = self.logits_at(&model, &prepared, len - 1).await?;
            // the most likely character or sentinel, and its probability among them
            let allowed = || logits.iter().enumerate().filter(|(c, _)| *c < n_chars || tok.sentinel_index(*c as u32).is_some());
            let (best, top) = allowed().fold((0, f32::NEG_INFINITY), |(b, m), (c, &v)| if v > m { (c, v) } else { (b, m) });
            let total: f32 = allowed().map(|(_, &v)| (v - top).exp()).sum();
            if best >= n_chars || out[k].2 >= ASK_SPAN_MAX {
                if out[k].2 == 0 {
                    // it writes nothing here: how sure it is of that
                    out[k].1 = 1.0 / total;
                }
                k += 1;
                if k == spans {
                    break;
                }
                row.push(tok.sentinel(k));
            } else {
                out[k].0.push_str(&tok.token_text(best as u32));
                out[k].1 += 1.0 / total;
                out[k].2 += 1;
                row.push(best as u32);
            }
        }
        Ok(out.into_iter().map(|(text, sum, n)| (text, sum / n.max(1) as f32)).collect())
    }

    /// `len` characters after `prompt` (and the objectives' sample prefix), left to right with
    /// the causal mask, at the configured temperature, drawn from `rng`. One small device read
    /// per character.
    async fn generate(&mut self, prompt: &str, len: usize, rng: &mut Rng) -> Result<String, String> {
        let model = self.model().valid();
        let tok = self.corpus.tokenizer.clone();
        // Objectives may ask for a prefix (conditional training samples after <good>).
        let mut ids: Vec<u32> = self.mix.iter().flat_map(|p| p.objective.sample_prefix(&tok)).collect();
        ids.extend(tok.encode_typed(prompt)?);
        if ids.is_empty() {
            ids.push(0);
        }
        let n_chars = tok.n_chars();
        let block = self.model_config.block_size;
        let temperature = self.train.temperature.max(1e-3) as f32;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            let context = &ids[ids.len().saturating_sub(block)..];
            let (prepared, s) = sampling_batch(context, block);
            // the logits of the context's last position: [vocab]
            let logits = self.logits_at(&model, &prepared, s - 1).await?;
            let next = sample_from_logits(&logits[..n_chars], temperature, rng);
            ids.push(next as u32);
            out.push(next as u32);
        }
        Ok(tok.decode(&out))
    }
}

impl Trainer {
    /// The model's input for reading `rows` (each `seq` tokens) without training: the run's
    /// reading pattern, no dropout, the cheap binary head (only hidden states are used).
    fn reading_input(&self, tokens: Vec<u32>, rows: usize, seq: usize) -> ModelInput {
        let device = self.device.clone();
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        ModelInput {
            tokens: Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, seq]), &device),
            route: Route::new(&self.reading.0, self.model_config.arch, rows, seq, &device),
            use_positions: self.reading.1,
            embed_mask: None,
            head: Head::Binary,
        }
    }

    /// What the representation views need at this step, in one device read: the character
    /// rows of the token-embedding table and the pooled hidden states of the probe set.
    pub async fn features(&self, probe: &ProbeSet) -> Result<Features, String> {
        let model = self.model().valid();
        let tok = &self.corpus.tokenizer;
        let n_chars = tok.n_chars();
        let d = self.model_config.d_model;
        // embeddings: [n_chars, d_model] (character ids come first in the vocabulary)
        let embeddings = model.token_embeddings().narrow(0, 0, n_chars);
        let (rows, seq) = (probe.rows.len(), probe.rows.first().map_or(0, |r| r.len()).min(self.model_config.block_size));
        let tokens: Vec<u32> = probe.rows.iter().flat_map(|r| r[..seq].iter().copied()).collect();
        // pooled: [rows, seq, d_model] -> mean over positions -> [rows, d_model]
        let pooled = model.forward(&self.reading_input(tokens, rows, seq)).hidden.mean_dim(1).reshape([rows, d]);
        count_read();
        let data = burn::tensor::Transaction::default()
            .register(embeddings)
            .register(pooled)
            .execute_async()
            .await
            .map_err(|e| read_failed(&e))?;
        let [embeddings, pooled] = <[_; 2]>::try_from(data).map_err(|_| "the device returned the wrong number of tensors")?
            .map(|t| t.try_to_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}")));
        Ok(Features {
            step: self.step,
            tokens: (0..n_chars as u32).map(|t| tok.token_text(t)).collect(),
            embeddings: embeddings?,
            pooled: pooled?,
            d_model: d,
        })
    }

    /// Attention weights of every layer and head for `text` (at most `block_size` characters),
    /// read the way the representation views read the model.
    pub async fn attention_maps(&self, text: &str) -> Result<AttentionMaps, String> {
        let tok = &self.corpus.tokenizer;
        let mut ids = tok.encode_typed(text)?;
        ids.truncate(self.model_config.block_size);
        if ids.is_empty() {
            return Err("type a few characters to see where attention goes".into());
        }
        let s = ids.len();
        let model = self.model().valid();
        let maps = model.attention_maps(&self.reading_input(ids.clone(), 1, s));
        let layers = maps.len();
        let all = Tensor::cat(maps.into_iter().map(|m| m.reshape([-1])).collect(), 0);
        count_read();
        let weights = all.into_data_async().await.map_err(|e| read_failed(&e))?;
        Ok(AttentionMaps {
            tokens: ids.iter().map(|&t| tok.token_text(t)).collect(),
            reads: reading_words(&self.reading.0, self.model_config.arch).to_string(),
            layers,
            heads: self.model_config.n_head,
            weights: weights.try_to_vec::<f32>().map_err(|e| format!("unexpected tensor data: {e:?}"))?,
        })
    }
}

/// How a run's attention maps read a text, for the page: the stack they come from (the
/// encoder–decoder has two: [`Route::with_bias`] picks by the same `is_causal`) and its mask,
/// as [`Transformer::attention_maps`] reads them.
pub fn reading_words(mode: &AttentionMode, arch: Architecture) -> &'static str {
    match (arch, mode.is_causal()) {
        (Architecture::Decoder, true) => "causally (each token sees itself and those before it)",
        (Architecture::Decoder, false) => "in both directions (each token sees every token)",
        (Architecture::EncoderDecoder, true) => "with its decoder, causally (each token sees itself and those before it)",
        (Architecture::EncoderDecoder, false) => "with its encoder, in both directions (each token sees every token)",
    }
}

/// Character ids of `corpus` from the most to the least frequent in its training split.
fn frequency_order(corpus: &Corpus) -> Vec<u32> {
    let n = corpus.tokenizer.n_chars();
    let mut counts = vec![0usize; n];
    for &t in &corpus.train {
        counts[t as usize] += 1;
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(counts[c as usize]), c));
    order
}

/// Draws an index from softmax(logits / temperature).
/// The one-row batch that reads the next token after `context` (at most `block` tokens), and
/// the context's length. The row is always `block` long: the context, then padding (token 0)
/// that the causal mask hides from every context position, so the logits at position
/// `len − 1` are those of the context alone. One shape for every length means the GPU
/// compiles the sampling's kernels once, not once per length (our attention kernel and
/// several of burn's take the length at compile time): before, a run's first sample compiled
/// ~50 more kernels for `tiny` (block 32), each a pause on a GPU in the browser.
fn sampling_batch(context: &[u32], block: usize) -> (Prepared, usize) {
    let len = context.len();
    assert!((1..=block).contains(&len), "a sampling context has 1 to {block} tokens, not {len}");
    let mut row = context.to_vec();
    row.resize(block, 0);
    (Prepared::new(1, block, row, AttentionMode::Causal), len)
}

fn sample_from_logits(logits: &[f32], temperature: f32, rng: &mut Rng) -> usize {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&l| (((l - max) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    if !total.is_finite() || total <= 0.0 {
        return 0;
    }
    let mut u = rng.unit() * total;
    for (i, w) in weights.iter().enumerate() {
        u -= w;
        if u <= 0.0 {
            return i;
        }
    }
    weights.len() - 1
}

/// `total` plus one objective's loss on its batch, times its weight in the mix. A lone
/// objective's weight is 1: no product, and none in the backward (two GPU launches per step).
fn add_part_loss(total: Option<Tensor<1>>, model: &Transformer, objective: &dyn Objective, weight: f64, input: &ModelInput, prepared: &Prepared, targets: &DeviceTargets) -> Tensor<1> {
    let loss = objective.loss(&model.forward(input), prepared, targets);
    let loss = if weight == 1.0 { loss } else { loss.mul_scalar(weight) };
    match total {
        None => loss,
        Some(t) => t + loss,
    }
}

/// The prepared rows' input tokens as the model's id tensor: [batch, seq].
fn token_ids(prepared: &Prepared, device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i32> = prepared.inputs.iter().map(|&t| t as i32).collect();
    Tensor::<2, Int>::from_data(TensorData::new(ids, [prepared.batch, prepared.seq]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_maps_say_which_stack_and_mask_they_read() {
        let hidden = AttentionMode::KeyMask { causal: true, seq: 2, visible: vec![true, false] };
        assert_eq!(reading_words(&AttentionMode::Causal, Architecture::Decoder), "causally (each token sees itself and those before it)");
        assert_eq!(reading_words(&hidden, Architecture::Decoder), "causally (each token sees itself and those before it)");
        assert!(reading_words(&AttentionMode::Bidirectional, Architecture::Decoder).starts_with("in both directions"));
        assert!(reading_words(&AttentionMode::Causal, Architecture::EncoderDecoder).starts_with("with its decoder, causally"));
        assert!(reading_words(&AttentionMode::Bidirectional, Architecture::EncoderDecoder).starts_with("with its encoder, in both directions"));
    }

    #[test]
    fn a_failed_read_says_why_without_backtrace_lines() {
        struct Chain;
        impl std::fmt::Debug for Chain {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "An error happened during execution\nCaused by:\n  No room for 131072 bytes\nNo backtrace available\nBacktrace:\nNo backtrace available\nAsked at:\nNo backtrace available\n")
            }
        }
        assert_eq!(read_failed(&Chain), "reading from the device failed: An error happened during execution\nCaused by:\n  No room for 131072 bytes");
    }

    #[test]
    fn sampling_follows_the_logits() {
        let mut rng = Rng::seeded(0);
        let logits = [0.0, 10.0, 0.0];
        let hits = (0..200).filter(|_| sample_from_logits(&logits, 1.0, &mut rng) == 1).count();
        assert!(hits > 190);
        // A very high temperature spreads the draws.
        let spread = (0..300).filter(|_| sample_from_logits(&logits, 1000.0, &mut rng) != 1).count();
        assert!(spread > 150, "{spread}");
    }

    /// The padded sampling row reads the context's own next-token logits (the causal mask
    /// hides the padding), in one shape whatever the context's length.
    #[test]
    fn padded_sampling_reads_the_contexts_own_logits() {
        let corpus = Arc::new(Corpus::from_text("abc", &"the cat sat on the mat. ".repeat(50)).unwrap());
        let mut spec = ExperimentSpec::from_preset("tiny").unwrap();
        let block = 12;
        spec.model.block_size = block;
        let mut t = Trainer::new(&spec, 0, corpus, Device::flex()).unwrap();
        let model = t.model().valid();
        let last_logits = |t: &mut Trainer, p: &Prepared, at: usize| -> Vec<f32> {
            let input = t.model_input(p, false, &mut Rng::seeded(0));
            model.forward(&input).logits.narrow(1, at, 1).reshape([-1]).into_data().try_to_vec::<f32>().unwrap()
        };
        for len in [1, 5, block] {
            let context: Vec<u32> = (0..len as u32).map(|i| 3 + i % 7).collect();
            let (padded, at) = sampling_batch(&context, block);
            assert_eq!((padded.batch, padded.seq, at), (1, block, len));
            let alone = Prepared::new(1, len, context, AttentionMode::Causal);
            let (a, b) = (last_logits(&mut t, &padded, at - 1), last_logits(&mut t, &alone, len - 1));
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "context of {len}: {x} vs {y}");
            }
        }
    }
}
