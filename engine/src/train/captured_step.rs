//! A GPU training step (forward, backward and the optimiser's update), captured once and
//! replayed every step.
//!
//! Why: a baby-GPT step on a GPU is ~120 kernel launches, and every launch costs the host
//! burn's and cubecl's bookkeeping (the autodiff tape, fusion's queue, the kernel cache, a
//! new bind group, the launch's info buffer): ~0.1–0.2 ms per launch in the tab's worker,
//! ~34 µs natively on the H200 (docs/performance.md). burn 0.22's graph capture
//! (`Backend::graph_prepare / graph_start_capture / graph_stop_capture / graph_replay`) records
//! a closure's launches once; on wgpu it is a *software* graph (cubecl-wgpu's `graph.rs`): every
//! launch's pipeline and bind group are built while recording, and a replay only re-encodes
//! them. So after a few ordinary steps the whole step (forward, backward and the optimiser's
//! update) is captured, and each later step writes its inputs and the optimiser's step values
//! into the buffers the graph recorded and replays it. Every objective of the registry is
//! captured; what still steps the ordinary way is the CPU, a run whose shapes change (none of
//! the registry's do), a fault injection (`nan_at`) and `capture=0`.
//!
//! What a replay needs, and how this file keeps to it:
//! - *The same shapes and scalars.* A graph replays its launches with the shapes and scalar
//!   arguments they were recorded with, so a step is replayed only when its [`Signature`] (per
//!   objective: batch, length, kind of attention pattern, head, dropout, InfoNCE's temperature)
//!   is the captured one. What differs from batch to batch is an input instead: a prefix LM's
//!   or MP3's per-row masks (and the encoder–decoder's three), dropout noise, the binary and
//!   contrastive heads' targets, and the number of targets that count (a span corruption's,
//!   a prefix LM's): each part's loss is launched as a mean over every position and multiplied
//!   by a one-element input, its weight in the mix over its share of counted targets
//!   ([`PartStep::loss_scale`]).
//! - *Inputs and parameters in the buffers it recorded.* The step's inputs go into
//!   [`StableInputs`], written in place (`slice_assign` on a tensor nothing else holds) before
//!   each replay, and the optimiser's per-step values (learning rate, bias corrections) into its
//!   own buffer (`AdamW::advance`), which the update kernel reads after the gradient norm's
//!   partial sums instead of taking them as scalars; the parameters and moments are updated in
//!   place (`optim::writable_in_place`), so the buffers the graph reads and writes are the
//!   model's. `capture_replays_the_ordinary_steps` (engine tests, on wgpu) checks that every
//!   objective's captured run trains to the ordinary run's losses.
//! - *Autodiff refuses capture* (burn: "a replayed graph would skip re-recording the autodiff
//!   tape"), so the capture is opened on the plain device under the autodiff one: the tape is
//!   recorded on the host while the capture records the launches of the forward and of
//!   `backward()`; replays never need the tape.
//! - *A capture records, it does not run*: the capturing step replays the graph right after.
//!   Nor does it take uploads: the step's values are written before it opens.
//!
//! A failure before the capture opens or at a replay turns capture off for the run and takes
//! that step the ordinary way. One while it records cannot be undone (the update was taken on
//! the host and never ran, and the buffers it wrote fail their reads): the run starts over from
//! its seed, retakes its few steps to the same weights and tries the capture once more, then
//! steps without it (`Trainer::start_over`; `capture_fails` injects the failure).

use burn::backend::{Backend, BackendGraph, Dispatch};
use burn::tensor::kind::Basic;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::model::{Architecture, AttentionMode, Head, Route};
use crate::objectives::{DeviceTargets, Prepared};

/// Ordinary steps before the capture begins (the first compiles the kernels and fusion learns
/// the step's shape), then the warm-up steps through the stable inputs that burn's own
/// `capture` takes before recording (allocations then come from the persistent pool).
pub const ORDINARY_STEPS: usize = 2;
pub const WARMUP_STEPS: usize = 3;
/// Steps during which a run whose capture the device refused to prepare tries again (runs side
/// by side take turns: a device prepares one capture at a time).
pub const RETRY_STEPS: usize = 50;
/// How the reason a capture is off begins when the recording itself failed (its update never
/// ran, so the run's reads would fail): the run starts over (`Trainer::start_over`).
pub const RECORDING_FAILED: &str = "the capture failed";
/// Recordings a run tries (each failed one starts it over) before it steps without capture.
pub const MAX_RECORDINGS: usize = 2;

/// What two steps must share for one graph to replay both, per objective of the mix.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature(Vec<PartSignature>);

#[derive(Clone, Debug, PartialEq)]
struct PartSignature {
    batch: usize,
    seq: usize,
    pattern: Pattern,
    use_positions: bool,
    head: Head,
    /// whether the input embeddings get dropout noise (a `[batch, seq, d_model]` input)
    dropout: bool,
    /// InfoNCE's 1/temperature is a scalar of its launches (projection head)
    temperature_bits: u64,
}

/// The attention pattern's kind: what decides the mask tensors' shapes and the route through
/// the stacks. The pattern itself (a prefix LM's prefixes, MP3's hidden keys) is an input.
#[derive(Clone, Debug, PartialEq)]
enum Pattern {
    /// the same mask every step, one row broadcast over the batch (the run's cached mask)
    Causal,
    Bidirectional,
    /// per-row masks, written before each replay
    Prefix,
    KeyMask { causal: bool },
}

impl Signature {
    /// The signature of a step's parts.
    pub fn of(parts: &[PartStep]) -> Self {
        Self(
            parts
                .iter()
                .map(|part| &part.prepared)
                .map(|p| PartSignature {
                    batch: p.batch,
                    seq: p.seq,
                    pattern: match &p.attention {
                        AttentionMode::Causal => Pattern::Causal,
                        AttentionMode::Bidirectional => Pattern::Bidirectional,
                        AttentionMode::Prefix(_) => Pattern::Prefix,
                        AttentionMode::KeyMask { causal, .. } => Pattern::KeyMask { causal: *causal },
                    },
                    use_positions: p.use_positions,
                    head: p.head,
                    dropout: p.embed_dropout > 0.0,
                    temperature_bits: if p.head == Head::Projection { p.temperature.to_bits() } else { 0 },
                })
                .collect(),
        )
    }
}

/// One objective's step, as the host prepared it: the batch, its dropout noise (drawn on the
/// CPU from the run's RNG, `[batch, seq, d_model]`) and the weight of its loss in the mix.
pub struct PartStep {
    pub prepared: Prepared,
    pub noise: Option<Vec<f32>>,
    pub mix_weight: f64,
}

impl PartStep {
    /// What the part's loss is multiplied by on the device: its weight in the mix over its share
    /// of counted targets. The loss kernels are launched with a fixed mean over every position
    /// (a scalar baked into the recorded launch), and this input makes it the mean over the
    /// targets that count, which differ from batch to batch (a prefix LM's, a span corruption's).
    fn loss_scale(&self) -> f32 {
        let p = &self.prepared;
        match p.head {
            Head::Projection => self.mix_weight as f32,
            _ => (self.mix_weight * (p.batch * p.seq) as f64 / p.n_targets().max(1) as f64) as f32,
        }
    }
}

/// Device buffers that hold each step's inputs, written in place before each replay.
pub struct StableInputs {
    pub signature: Signature,
    pub parts: Vec<StablePart>,
}

/// One objective's inputs in the buffers a captured step reads.
pub struct StablePart {
    /// tokens: [batch, seq]
    pub tokens: Tensor<2, Int>,
    /// The masks of a per-row attention pattern (None: the run's cached causal or
    /// bidirectional mask, the same every step).
    pub route: Option<Route>,
    /// embed_mask: [batch, seq, d_model] (dropout noise)
    pub noise: Option<Tensor<3>>,
    /// The head's targets, as an ordinary step uploads them, but with `count` every position
    /// (the mean the loss kernels are launched with; `scale` makes it the counted targets').
    pub targets: DeviceTargets,
    /// scale: [1], [`PartStep::loss_scale`]
    pub scale: Tensor<1>,
    /// the scale now in the buffer (rewritten only when it changes)
    scale_now: f32,
}

impl StableInputs {
    pub fn new(signature: Signature, parts: &[PartStep], arch: Architecture, device: &Device) -> Self {
        Self { signature, parts: parts.iter().map(|part| StablePart::upload(part, arch, device)).collect() }
    }

    /// Writes `parts` (of this signature) into the buffers, in place.
    pub fn write(&mut self, parts: &[PartStep], arch: Architecture, device: &Device) {
        for (stable, part) in self.parts.iter_mut().zip(parts) {
            let p = &part.prepared;
            write(&mut stable.tokens, super::token_ids(p, device));
            if let Some(route) = stable.route.as_mut() {
                write_route(route, Route::new(&p.attention, arch, p.batch, p.seq, device));
            }
            if let (Some(noise), Some(values)) = (stable.noise.as_mut(), &part.noise) {
                write(noise, noise_tensor(values, p, device));
            }
            let (t, new) = (&mut stable.targets, DeviceTargets::new(p, device));
            for (old, new) in [(&mut t.classes, new.classes), (&mut t.weights, new.weights)] {
                if let (Some(old), Some(new)) = (old.as_mut(), new) {
                    write(old, new);
                }
            }
            for (old, new) in [(&mut t.ids, new.ids), (&mut t.positives, new.positives)] {
                if let (Some(old), Some(new)) = (old.as_mut(), new) {
                    write(old, new);
                }
            }
            // (InfoNCE's diagonal mask is the same every step: not rewritten)
            let scale = part.loss_scale();
            if scale != stable.scale_now {
                write(&mut stable.scale, scale_tensor(scale, device));
                stable.scale_now = scale;
            }
        }
    }
}

impl StablePart {
    /// A part's inputs on the device, as an ordinary step uploads them.
    fn upload(part: &PartStep, arch: Architecture, device: &Device) -> Self {
        let p = &part.prepared;
        let (b, s) = (p.batch, p.seq);
        let route = p.attention.per_row().then(|| Route::new(&p.attention, arch, b, s, device));
        let noise = part.noise.as_ref().map(|values| noise_tensor(values, p, device));
        let mut targets = DeviceTargets::new(p, device);
        targets.count = b * s;
        let scale_now = part.loss_scale();
        Self { tokens: super::token_ids(p, device), route, noise, targets, scale: scale_tensor(scale_now, device), scale_now }
    }
}

// values: [batch · seq · d_model] -> [batch, seq, d_model]
fn noise_tensor(values: &[f32], p: &Prepared, device: &Device) -> Tensor<3> {
    let d = values.len() / (p.batch * p.seq);
    Tensor::<3>::from_data(TensorData::new(values.to_vec(), [p.batch, p.seq, d]), device)
}

fn scale_tensor(value: f32, device: &Device) -> Tensor<1> {
    Tensor::<1>::from_data(TensorData::new(vec![value], [1]), device)
}

/// Writes `fresh` into `stable`'s buffer (the same shape), in place: `stable` is the only
/// handle to its buffer between steps, so the assignment reuses it.
fn write<const D: usize, K: Basic>(stable: &mut Tensor<D, K>, fresh: Tensor<D, K>) {
    let ranges = stable.dims().map(|n| 0..n);
    stable.inplace(|t| t.slice_assign(ranges, fresh));
}

fn write_route(stable: &mut Route, fresh: Route) {
    match (stable, fresh) {
        (Route::Single(old), Route::Single(new)) | (Route::EncoderOnly(old), Route::EncoderOnly(new)) | (Route::DecoderOnly(old), Route::DecoderOnly(new)) => write(old, new),
        (Route::Both(old), Route::Both(new)) => {
            write(&mut old.encoder, new.encoder);
            write(&mut old.decoder, new.decoder);
            write(&mut old.cross, new.cross);
            write(&mut old.keep, new.keep);
        }
        _ => unreachable!("one signature, one route"),
    }
}

/// Where a run's capture stands.
#[allow(clippy::large_enum_variant)] // one per run
pub enum Capture {
    /// Ordinary steps, and capture still to try (after [`ORDINARY_STEPS`]).
    NotYet,
    /// Warm-up steps through the stable inputs, `left` more before the capture.
    Warming { inputs: StableInputs, left: usize },
    /// Captured: each step writes its batch into `inputs` (and the optimiser its step values
    /// into its buffer) and replays `graph`, which writes the step's loss into `loss`'s buffer
    /// and updates the parameters in place. `launches`: the kernels the graph runs (counted as
    /// it was recorded).
    Replaying { inputs: StableInputs, graph: BackendGraph<Dispatch>, loss: Tensor<1>, launches: usize },
    /// Ordinary steps for good, and why.
    Off(String),
}

pub fn prepare(device: &Device) -> Result<(), String> {
    Dispatch::graph_prepare(device.as_dispatch()).map_err(|e| format!("the device refused to prepare a capture: {e}"))
}

pub fn start(device: &Device) -> Result<(), String> {
    Dispatch::graph_start_capture(device.as_dispatch()).map_err(|e| format!("the device refused to capture: {e}"))
}

pub fn stop(device: &Device) -> Result<BackendGraph<Dispatch>, String> {
    Dispatch::graph_stop_capture(device.as_dispatch()).map_err(|e| format!("{RECORDING_FAILED}: {e}"))
}

/// Fault injection (`TrainConfig::capture_fails`), inside an open capture: uploads a value,
/// which a recording cannot take (it records launches only; cubecl-wgpu refuses the write and
/// the recording cannot seal), as a recording fails that meets anything it cannot record.
/// (Until the thirty-sixth session it asked for a page, which a recording could not add then.)
pub fn upload_inside_the_recording(device: &Device) {
    let _ = scale_tensor(0.0, device);
}

/// Replays `graph` on `device`.
///
/// Safety (burn's `graph_replay` contract): every buffer the captured step read or wrote is
/// still alive (the stable inputs, the outputs and the model's parameters, all held by the
/// run), and only this thread's stream uses them.
pub fn replay(device: &Device, graph: &BackendGraph<Dispatch>) -> Result<(), String> {
    unsafe { Dispatch::graph_replay(device.as_dispatch(), graph) }.map_err(|e| format!("a replay failed: {e}"))
}
