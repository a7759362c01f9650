//! A GPU training step's forward and backward pass, captured once and replayed every step.
//!
//! Why: a baby-GPT step on a GPU is ~120 kernel launches, and every launch costs the host
//! burn's and cubecl's bookkeeping (the autodiff tape, fusion's queue, the kernel cache, a
//! new bind group, the launch's info buffer): ~0.1–0.2 ms per launch in the tab's worker,
//! ~34 µs natively on the H200 (docs/performance.md). burn 0.22's graph capture
//! (`Backend::graph_prepare / graph_start_capture / graph_stop_capture / graph_replay`) records
//! a closure's launches once; on wgpu it is a *software* graph (cubecl-wgpu's `graph.rs`): every
//! launch's pipeline and bind group are built while recording, and a replay only re-encodes
//! them. So after a few ordinary steps the whole step (forward, backward and the optimiser's
//! update) is captured, and each later step writes its batch and the optimiser's step values
//! into the buffers the graph recorded and replays it.
//!
//! What a replay needs, and how this file keeps to it:
//! - *The same shapes and scalars.* A graph replays its launches with the shapes and scalar
//!   arguments they were recorded with, so a step is replayed only when its [`Signature`] (per
//!   objective: batch, length, attention pattern, head, number of targets) is the captured one.
//!   Objectives whose steps differ (a masked LM's number of targets, a prefix LM's prefixes)
//!   or that make inputs of their own (dropout noise, binary or contrastive targets) are not
//!   captured: their runs step as before.
//! - *Inputs and parameters in the buffers it recorded.* The batch goes into [`StableInputs`],
//!   written in place (`slice_assign` on a tensor nothing else holds) before each replay, and
//!   the optimiser's per-step values (learning rate, bias corrections) into its own buffer
//!   (`AdamW::advance`), which the update kernel reads after the gradient norm's partial sums
//!   instead of taking them as scalars; the parameters and moments are updated in place
//!   (`optim::writable_in_place`), so the buffers the graph reads and writes are the model's.
//!   `capture_replays_the_ordinary_steps` (engine tests, on wgpu) checks that a captured run
//!   trains to the ordinary run's losses.
//! - *Autodiff refuses capture* (burn: "a replayed graph would skip re-recording the autodiff
//!   tape"), so the capture is opened on the plain device under the autodiff one: the tape is
//!   recorded on the host while the capture records the launches of the forward and of
//!   `backward()`; replays never need the tape.
//! - *A capture records, it does not run*: the capturing step replays the graph right after.
//!   Nor does it take uploads: the step's values are written before it opens.
//!
//! A failure before the capture opens or at a replay turns capture off for the run and takes
//! that step the ordinary way. One while it records cannot be undone (the update was taken on
//! the host and never ran): the run's next read reports it, as a lost device would.

use burn::backend::{Backend, BackendGraph, Dispatch};
use burn::tensor::{Device, Int, Tensor};

use crate::model::{AttentionMode, Head};
use crate::objectives::{DeviceTargets, Prepared};

/// Ordinary steps before the capture begins (the first compiles the kernels and fusion learns
/// the step's shape), then the warm-up steps through the stable inputs that burn's own
/// `capture` takes before recording (allocations then come from the persistent pool).
pub const ORDINARY_STEPS: usize = 2;
pub const WARMUP_STEPS: usize = 3;
/// Steps during which a run whose capture the device refused to prepare tries again (runs side
/// by side take turns: a device prepares one capture at a time).
pub const RETRY_STEPS: usize = 50;

/// What two steps must share for one graph to replay both, per objective of the mix.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature(Vec<PartSignature>);

#[derive(Clone, Debug, PartialEq)]
struct PartSignature {
    batch: usize,
    seq: usize,
    attention: AttentionMode,
    use_positions: bool,
    head: Head,
    /// the cross-entropy's 1/count is a scalar argument of its kernel
    targets: usize,
}

impl Signature {
    /// The signature of a step's prepared batches, or why such a step is not captured.
    pub fn of(prepared: &[Prepared]) -> Result<Self, String> {
        prepared
            .iter()
            .map(|p| {
                if !matches!(p.attention, AttentionMode::Causal | AttentionMode::Bidirectional) {
                    return Err("its attention masks are made per batch".to_string());
                }
                if !matches!(p.head, Head::Vocab | Head::Position) {
                    return Err("its targets are not classes".to_string());
                }
                if p.embed_dropout > 0.0 {
                    return Err("it draws dropout noise every step".to_string());
                }
                Ok(PartSignature { batch: p.batch, seq: p.seq, attention: p.attention.clone(), use_positions: p.use_positions, head: p.head, targets: p.n_targets() })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// Device buffers that hold each step's batch (per objective: token ids and target classes),
/// written in place before each replay.
pub struct StableInputs {
    pub signature: Signature,
    // per part: tokens [batch, seq], classes [batch * seq] (−1 where a position has no target)
    pub parts: Vec<(Tensor<2, Int>, Tensor<1>)>,
}

impl StableInputs {
    pub fn new(signature: Signature, prepared: &[Prepared], device: &Device) -> Self {
        Self { signature, parts: prepared.iter().map(|p| uploaded(p, device)).collect() }
    }

    /// Writes `prepared` (of this signature) into the buffers, in place.
    #[allow(clippy::single_range_in_vec_init)] // burn's slice of a 1-D tensor: one range
    pub fn write(&mut self, prepared: &[Prepared], device: &Device) {
        for ((t, c), p) in self.parts.iter_mut().zip(prepared) {
            let (b, s) = (p.batch, p.seq);
            let (new_t, new_c) = uploaded(p, device);
            t.inplace(|t| t.slice_assign([0..b, 0..s], new_t));
            c.inplace(|c| c.slice_assign([0..b * s], new_c));
        }
    }
}

/// A batch's token ids and target classes on the device, as an ordinary step uploads them.
fn uploaded(p: &Prepared, device: &Device) -> (Tensor<2, Int>, Tensor<1>) {
    let classes = DeviceTargets::new(p, device).classes.expect("a captured batch's targets are classes (its signature)");
    (super::token_ids(p, device), classes)
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
    Dispatch::graph_stop_capture(device.as_dispatch()).map_err(|e| format!("the capture failed: {e}"))
}

/// Replays `graph` on `device`.
///
/// Safety (burn's `graph_replay` contract): every buffer the captured step read or wrote is
/// still alive (the stable inputs, the outputs and the model's parameters, all held by the
/// run), and only this thread's stream uses them.
pub fn replay(device: &Device, graph: &BackendGraph<Dispatch>) -> Result<(), String> {
    unsafe { Dispatch::graph_replay(device.as_dispatch(), graph) }.map_err(|e| format!("a replay failed: {e}"))
}
