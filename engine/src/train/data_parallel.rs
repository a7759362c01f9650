//! One step's batch split by rows between workers: data parallelism without shared memory.
//!
//! Why: a tab's WebAssembly has no threads without a cross-origin-isolated page and a standard
//! library rebuilt with atomics, but a Web Worker can start a second worker, and the two run on
//! two cores. The lab's worker keeps the run (model, AdamW, random streams) and gives the
//! second worker, the *helper*, the second half of the step's rows; both compute gradients at
//! once and send each other their half's gradients, and each adds the two and takes the same
//! AdamW step: the run on its model, the helper on its **copy** of the run. So the weights
//! never travel but once, when the helper has no copy in step with the run (its first split
//! step, or after a step the run took alone); then the run sends its weights and AdamW
//! moments with the rows. The copies stay equal to the bit: both sides add the same two
//! gradients (IEEE addition is commutative) and run the same update code on the same
//! values (`the_helpers_copy_stays_equal_to_the_run` below). The helper keeps copies of the
//! last [`COPIES`] runs it served, so the runs of a workspace can take turns with it; a run
//! whose copy was dropped is told so ([`HelperReply::stale`]), computes that step's second
//! half itself and sends its state with the next.
//!
//! **More helpers** ([`Trainer::split_step_among`]), for machines with more cores: the rows are
//! split into one share per worker, and each helper keeps its copy as above. A sum of three
//! or more gradients depends on the order it is added in, so with two helpers or more the run
//! adds every share in the helpers' order and sends each helper the **sum**
//! ([`HelperUpdate::total`]), which its copy steps with in place of its own; the copies stay
//! equal to the bit (`more_helpers_train_as_one_batch_and_keep_their_copies`). The helpers
//! then wait for the slowest share and the run's sum (one message) before their update; with
//! one helper there is no such wait.
//!
//! **Ahead**: a helper that does not wait for the run. Once this worker has sent its half of
//! step t's gradients, it draws step t+1's batch and sends the helper that job too, before it
//! waits for the helper's half of step t ([`HelperLink::sends_ahead`]). The helper's queue then
//! holds its update for step t and the next job, so it goes from one to the other without
//! waiting for this worker's update, for a batch to be drawn or for a message to arrive. The
//! job needs nothing that step t changes: the helper's copy takes step t before it (the
//! messages are handled in order), and the batch depends only on the random streams. A step
//! that does not use the job (a step taken alone) puts the streams back as they were before
//! its batch was drawn and draws the same batch, so the run is the same
//! (`a_job_sent_ahead_changes_nothing`).
//!
//! The split is exact, not data-parallel averaging: every objective's loss is a sum over the
//! batch's targets divided by their count (or a mean over positions), so each half divides its
//! sum by the **whole batch's** count ([`SharePart::count`]) and the two halves' losses add up
//! to the batch's loss; their gradients add up to the batch's gradient. Only rounding differs
//! from the one-worker step (`split_steps_train_as_one_batch` below). Contrastive objectives
//! compare each row with every other and draw dropout noise per step, so their runs do not
//! split ([`Trainer::splits`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{StepProfile, Trainer, read_flat};
use crate::data::Split;
use crate::model::{ModelConfig, ModelInput, Route, Transformer};
use crate::objectives::{self, DeviceTargets, Prepared};
use crate::optim::{AdamW, AdamWConfig};
use crate::rng::Rng;

/// How many runs' copies a helper keeps (a baby GPT's copy is ~13 MB with its moments).
pub const COPIES: usize = 8;

/// A name for a new run, unique in this process, by which a helper knows its copy.
pub(crate) fn next_run_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One objective's rows of a split batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SharePart {
    /// The objective's registry id (its loss head).
    pub objective: String,
    /// Its weight in the run's mix (normalised).
    pub weight: f64,
    pub prepared: Prepared,
    /// Targets that count in the whole batch, which each share's summed loss is divided by.
    pub count: usize,
}

/// What a helper needs to make its copy of a run, besides the values in [`HelperWork::state`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CopyHeader {
    pub optim: AdamWConfig,
    /// AdamW's step count.
    pub time: i32,
    /// One flag per float parameter: whether AdamW has its moments yet.
    pub moments: Vec<bool>,
}

/// What the helper computes gradients for: which run, at which step, the model's shape and its
/// rows (and the run's state when the helper has no copy in step with it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelperWork {
    /// The run's key ([`Trainer`] has one) and the steps it has taken: the helper's copy must
    /// be at this step.
    pub run: u64,
    pub step: usize,
    pub model: ModelConfig,
    pub vocab_size: usize,
    pub parts: Vec<SharePart>,
    /// Present when the helper is to make (or remake) its copy from `state`.
    pub copy: Option<CopyHeader>,
    /// Fault injection ([`crate::spec::TrainConfig::helper_fails_at`]): the helper's worker is
    /// to crash on this job, as a real failure would (the engine's [`Helper`] ignores it). Set
    /// on every job from that step on, so that a helper that started late crashes too.
    #[serde(default)]
    pub crash: bool,
    /// state: with `copy`, every float parameter's values, flat, in the model's visiting order,
    /// then m and v of each parameter that has moments; else empty (sent beside the JSON as a
    /// binary array).
    #[serde(skip)]
    pub state: Vec<f32>,
}

/// Floats that go to another worker beside a message: a step's gradients (3 MB for baby GPT).
/// Where they lie on flex, they stay there, one contiguous tensor per parameter, and the
/// message is written from those slices ([`Floats::slices`]): one copy, where concatenating
/// them first made two (~0.5 ms of each worker's split step in the tab, on its critical path:
/// docs/performance.md). As received, they are one `Vec`.
#[derive(Clone, Debug, Default)]
pub struct Floats {
    /// f32 tensors on flex, contiguous, in order ...
    parts: Vec<burn_flex::FlexTensor>,
    /// ... then these values.
    values: Vec<f32>,
}

impl Floats {
    /// Values already in one `Vec` (as received).
    pub fn from_values(values: Vec<f32>) -> Self {
        Self { parts: Vec::new(), values }
    }

    /// The values of `tensors`, flat, in order: kept where they are when every one is an f32
    /// tensor on flex (one made contiguous where it is not), else read from the device in one
    /// go ([`read_flat`]).
    pub async fn of(tensors: Vec<Tensor<1>>) -> Result<Self, String> {
        let on_flex: Option<Vec<burn_flex::FlexTensor>> = tensors.iter().map(|t| flex_f32(t).map(crate::cpu_loops::contiguous)).collect();
        match on_flex {
            Some(parts) => Ok(Self { parts, values: Vec::new() }),
            None => Ok(Self::from_values(read_flat(tensors).await?)),
        }
    }

    /// The floats, in order, as the slices they lie in.
    pub fn slices(&self) -> Vec<&[f32]> {
        let parts = self.parts.iter().map(|t| t.as_slice::<f32>().expect("a contiguous f32 tensor"));
        parts.chain((!self.values.is_empty()).then_some(self.values.as_slice())).collect()
    }

    /// The floats in one `Vec` (a copy unless they already were one).
    pub fn into_vec(self) -> Vec<f32> {
        if self.parts.is_empty() {
            return self.values;
        }
        self.slices().concat()
    }
}

/// The helper's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HelperReply {
    /// grads: the gradients of the parameters marked in `present`, flat, in visiting order
    /// (sent beside the JSON as a binary array).
    #[serde(skip)]
    pub grads: Floats,
    /// One flag per float parameter: whether it got a gradient (an unused position table
    /// gets none, and AdamW leaves such a parameter alone).
    pub present: Vec<bool>,
    /// The helper's share of the step's loss.
    pub loss: f32,
    /// The helper's own time on this job in ms, where it measures it (0 where not).
    pub busy_ms: f64,
    /// The helper holds no copy of this run at this step (it dropped it for other runs', or the
    /// copy missed a step): nothing was computed; the run computes this share itself and sends
    /// its state with the next job.
    pub stale: bool,
}

/// The run's part of a step, for the helper's copy: added to the helper's own part and
/// stepped with at `lr`; or, with `total`, the whole batch's gradients, stepped with as they
/// are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelperUpdate {
    pub run: u64,
    pub step: usize,
    pub lr: f64,
    pub present: Vec<bool>,
    /// grads: as in [`HelperReply::grads`] (sent beside the JSON as a binary array).
    #[serde(skip)]
    pub grads: Floats,
    /// `grads` are the sum of every worker's part, which the copy takes in place of its own:
    /// with two helpers or more, only the run has every part, and a sum of three or more
    /// parts depends on the order it is added in (IEEE addition is not associative), so the
    /// helpers take the run's sum rather than make their own.
    #[serde(default)]
    pub total: bool,
}

/// The helper's answer to come. `Send`, as a run keeps the answer to the job it sent ahead
/// (`Ahead`), and natively a run's step runs on the thread pool.
pub type Answer = Pin<Box<dyn Future<Output = Result<HelperReply, String>> + Send>>;

/// The run's side of its link to a helper: one of the tab's helper workers, or an in-process
/// helper in the tests.
pub trait HelperLink {
    /// Sends `work` now (the work stays with the caller for the fallback); the future is the
    /// helper's answer.
    fn ask(&self, work: &HelperWork) -> Answer;
    /// Sends the run's part of the step asked for last (see [`HelperUpdate`]); nothing comes
    /// back. An error means it could not be sent.
    fn update(&self, update: HelperUpdate) -> Result<(), String>;
    /// Told why a split step with this helper failed (the step was completed without it), so
    /// that whoever holds the link stops asking: the worker's link stops that helper worker for
    /// good. [`Trainer::step_with`] calls it for every failure, the helper's or the step's own.
    fn stop(&self, why: &str) {
        let _ = why;
    }
    /// Whether the run may send the next step's job with this step's gradients, before this
    /// step's answer (see the module's doc): a link whose answers come in the order asked.
    fn sends_ahead(&self) -> bool {
        false
    }
    /// Whether a helper is there to ask: `false` for [`Absent`], whose share is computed here.
    fn present(&self) -> bool {
        true
    }
}

/// A helper the run's workers count on that is not there: one still loading, or one stopped
/// for good. Its share is computed here, as a failed helper's is, and added in its place.
/// Why not take the step unsplit instead: a split step's gradient is the shares' sums added
/// together, which rounds otherwise than the whole batch's, and over a few hundred steps the
/// two runs part visibly (tiny, seed 1339: a training loss of 2.64 against 2.77 after 400
/// steps). Which steps found their helper ready depended on timing (the helper's start
/// against the first steps of each run side by side), so the same link trained to other
/// curves from one visit to the next. With every share always computed (here or there), a
/// run's curve depends on its experiment and on the number of workers alone.
pub struct Absent;

impl HelperLink for Absent {
    fn ask(&self, _: &HelperWork) -> Answer {
        Box::pin(async { Err("no helper".to_string()) })
    }

    fn update(&self, _: HelperUpdate) -> Result<(), String> {
        Err("no helper".into())
    }

    fn present(&self) -> bool {
        false
    }
}

/// The jobs sent to the helpers for the run's next step ([`Trainer`]'s `ahead`).
pub(crate) struct Ahead {
    /// The step they are for.
    step: usize,
    /// This worker's rows and each helper's (kept to compute them here if a helper fails).
    own: Vec<SharePart>,
    theirs: Vec<Vec<SharePart>>,
    /// The whole batch per part of the mix, for [`Trainer::examples`] once the step is taken.
    prepared: Vec<Option<Prepared>>,
    /// Each helper's answer, in the order of the helpers.
    answers: Vec<Answer>,
    /// The data and corruption streams before the batch was drawn.
    rngs: (Rng, Rng),
}

/// The model input for `prepared` on `device`, for the helper (no cached biases, no dropout).
fn input(prepared: &Prepared, config: &ModelConfig, device: &Device) -> ModelInput {
    ModelInput {
        tokens: super::token_ids(prepared, device),
        route: Route::new(&prepared.attention, config.arch, prepared.batch, prepared.seq, device),
        use_positions: prepared.use_positions,
        embed_mask: None,
        head: prepared.head,
    }
}

/// Σ weight · loss over `parts`, each divided by its whole batch's count; `input` builds a
/// part's model input (the run's worker reuses its cached attention biases).
fn parts_loss(model: &Transformer, parts: &[SharePart], device: &Device, mut input: impl FnMut(&Prepared) -> ModelInput) -> Result<Tensor<1>, String> {
    let mut total: Option<Tensor<1>> = None;
    for part in parts {
        let objective = objectives::find(&part.objective)?;
        let mut targets = DeviceTargets::new(&part.prepared, device);
        targets.count = part.count;
        let out = model.forward(&input(&part.prepared));
        let loss = objective.loss(&out, &part.prepared, &targets).mul_scalar(part.weight);
        total = Some(match total {
            None => loss,
            Some(t) => t + loss,
        });
    }
    total.ok_or_else(|| "no rows to compute a loss on".to_string())
}

/// The float parameters of `model`, flat, in visiting order, without their gradient tape.
fn float_params(model: &Transformer) -> Vec<Tensor<1>> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().inner().reshape([-1]));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// A helper's copy of one run.
struct Copy {
    run: u64,
    /// The run's step count this copy is at: the step its next job is for.
    step: usize,
    model: Transformer,
    optim: AdamW,
    /// This copy's share of the job for `step`, waiting for the run's update.
    pending: Option<GradientsParams>,
}

/// The second worker's side: gradients for the rows it is sent, computed on its copy of the
/// run, which it steps with both halves' gradients.
pub struct Helper {
    device: Device,
    /// The most recently used last.
    copies: Vec<Copy>,
}

impl Helper {
    /// A helper computing on `device` (the CPU backend in the tab).
    pub fn new(device: Device) -> Self {
        Self { device, copies: Vec::new() }
    }

    /// This helper's share of `work`'s step, on its copy of the run (made first from the work's
    /// state where it has one); [`HelperReply::stale`] where it has no copy at that step.
    pub async fn gradients(&mut self, work: &HelperWork) -> Result<HelperReply, String> {
        if let Some(header) = &work.copy {
            self.copies.retain(|c| c.run != work.run);
            let copy = self.copy_from(work, header)?;
            self.copies.push(copy);
            if self.copies.len() > COPIES {
                self.copies.remove(0);
            }
        }
        let Some(i) = self.copies.iter().position(|c| c.run == work.run) else {
            return Ok(HelperReply { stale: true, ..Default::default() });
        };
        let mut copy = self.copies.remove(i);
        if copy.step != work.step {
            // out of step with the run: dropped; the run sends its state next time
            return Ok(HelperReply { stale: true, ..Default::default() });
        }
        let autodiff = self.device.clone().autodiff();
        let loss = parts_loss(&copy.model, &work.parts, &autodiff, |p| input(p, &work.model, &autodiff))?;
        let (reply, grads) = answer_with(&copy.model, loss).await?;
        copy.pending = Some(grads);
        self.copies.push(copy);
        Ok(reply)
    }

    /// Adds the run's part of the step to this copy's (or, with [`HelperUpdate::total`], takes
    /// the run's sum instead) and takes the run's AdamW step. Any mismatch drops the copy (the
    /// run's next job is then answered `stale`).
    pub fn update(&mut self, update: HelperUpdate) -> Result<(), String> {
        let i = self.copies.iter().position(|c| c.run == update.run).ok_or("no copy of this run")?;
        let mut copy = self.copies.remove(i);
        let mut own = copy.pending.take().ok_or("no part of this step to add to")?;
        if copy.step != update.step {
            return Err(format!("the copy is at step {}, the update for step {}", copy.step, update.step));
        }
        if update.total {
            own = GradientsParams::new();
        }
        let (sum, squares) = add_gradients(&copy.model, &mut own, update.grads.into_vec(), &update.present, &self.device)?;
        copy.model = copy.optim.step_with_squares(update.lr, copy.model, sum, squares);
        copy.step += 1;
        self.copies.push(copy);
        Ok(())
    }

    /// The run's weights and AdamW state, from `work.state`.
    fn copy_from(&self, work: &HelperWork, header: &CopyHeader) -> Result<Copy, String> {
        let autodiff = self.device.clone().autodiff();
        let model = Transformer::new(&work.model, work.vocab_size, &mut Rng::seeded(0), &autodiff);
        let (model, weights) = load_params(model, &work.state, &autodiff)?;
        let mut optim = AdamW::new(header.optim.clone());
        let moments = optim.load_moments(&model, header.time, &header.moments, &work.state[weights..], &self.device)?;
        if weights + moments != work.state.len() {
            return Err(format!("the helper got {} values for a run that has {}", work.state.len(), weights + moments));
        }
        Ok(Copy { run: work.run, step: work.step, model, optim, pending: None })
    }

    /// Float values of the helper's copy of `run`, flat (for the tests).
    #[cfg(test)]
    fn weights(&self, run: u64) -> Option<Vec<f32>> {
        let copy = self.copies.iter().find(|c| c.run == run)?;
        Some(pollster::block_on(read_flat(float_params(&copy.model))).unwrap())
    }
}

/// A helper's answer for `loss` on `model`: the gradients, flat ([`Floats`]), and the loss;
/// and the gradients themselves (for the helper's copy to step with).
async fn answer_with(model: &Transformer, loss: Tensor<1>) -> Result<(HelperReply, GradientsParams), String> {
    let grads = GradientsParams::from_grads(loss.backward(), model);
    let (present, found) = gradients_in_order(model, &grads);
    let floats = Floats::of(found).await?;
    let loss = read_flat(vec![loss.inner()]).await?.pop().expect("the loss was read");
    Ok((HelperReply { grads: floats, present, loss, ..Default::default() }, grads))
}

/// Each float parameter's gradient in `grads`, flat, in visiting order, and which exist.
fn gradients_in_order(model: &Transformer, grads: &GradientsParams) -> (Vec<bool>, Vec<Tensor<1>>) {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        present: Vec<bool>,
        found: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self.grads.get::<D>(param.id);
            self.present.push(g.is_some());
            self.found.extend(g.map(|g| g.reshape([-1])));
        }
    }
    let mut c = Collect { grads, present: Vec::new(), found: Vec::new() };
    model.visit(&mut c);
    (c.present, c.found)
}

/// `model` with its float parameters replaced, in visiting order, by the first values of
/// `flat`, and how many it used.
fn load_params(model: Transformer, flat: &[f32], device: &Device) -> Result<(Transformer, usize), String> {
    struct Load<'a> {
        flat: &'a [f32],
        at: usize,
        device: Device,
        short: bool,
    }
    impl ModuleMapper for Load<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let shape = tensor.shape();
            let n = shape.num_elements();
            if self.at + n > self.flat.len() {
                self.short = true;
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let values = self.flat[self.at..self.at + n].to_vec();
            self.at += n;
            let loaded = Tensor::<D>::from_data(TensorData::new(values, shape), &self.device).require_grad();
            Param::from_mapped_value(id, loaded, mapper)
        }
    }
    let mut load = Load { flat, at: 0, device: device.clone(), short: false };
    let model = model.map(&mut load);
    if load.short {
        return Err(format!("the helper got {} weights for a model of another size", flat.len()));
    }
    Ok((model, load.at))
}

impl Trainer {
    /// Whether this run's steps can be split between workers (see the module's doc).
    pub fn splits(&self) -> bool {
        self.splittable && self.train.batch_size >= 2
    }

    /// The workers a step of this run uses with `helpers` at hand, this one included: at most
    /// one helper per row after the first ([`Trainer::split_step_among`] asks no more), and
    /// this worker alone where the run does not split.
    pub fn workers_with(&self, helpers: usize) -> usize {
        if self.splits() { 1 + helpers.min(self.train.batch_size - 1) } else { 1 }
    }

    /// One step, its rows shared with `helpers` where there are any and this run splits,
    /// else alone: the one choice the tab's worker and the benchmark both make. A helper that
    /// fails costs no step (its rows, or the whole step, are computed here); the reason is
    /// given to that helper's [`HelperLink::stop`] (to every helper's, when the split step
    /// itself failed) and the first reason is returned.
    pub async fn step_with(&mut self, helpers: &[&dyn HelperLink]) -> Option<String> {
        if helpers.is_empty() || !self.splits() {
            self.step();
            return None;
        }
        match self.split_step_among(helpers).await {
            Ok(failures) => {
                for (i, why) in &failures {
                    helpers[*i].stop(why);
                }
                failures.into_iter().next().map(|(_, why)| why)
            }
            Err(why) => {
                self.step();
                let why = format!("the split step failed: {why}");
                for helper in helpers {
                    helper.stop(&why);
                }
                Some(why)
            }
        }
    }

    /// [`Trainer::split_step_among`] with one helper: half of the rows each; why the helper
    /// failed, if it did.
    pub async fn split_step(&mut self, helper: &dyn HelperLink) -> Result<Option<String>, String> {
        Ok(self.split_step_among(&[helper]).await?.into_iter().next().map(|(_, why)| why))
    }

    /// One optimiser step with the batch's rows split into one share for this worker and one
    /// for each of `helpers` (at most one helper per row after the first), while this worker
    /// computes its own share. Each helper is asked once, before this worker's own share; with
    /// one helper it is sent this worker's gradients as soon as they are computed, with more
    /// the whole batch's once every share is in. A helper that fails has its share computed
    /// here, so the step is never lost; the failures are returned beside (the helper's index
    /// and why), for the caller to stop asking. Like [`Trainer::step`], nothing of the run is
    /// read back but the gradients (and, when a helper has no copy of the run, its state).
    pub async fn split_step_among(&mut self, helpers: &[&dyn HelperLink]) -> Result<Vec<(usize, String)>, String> {
        assert!(self.splits(), "split_step on a run that does not split");
        assert!(!helpers.is_empty(), "a split step needs a helper");
        let helpers = &helpers[..self.workers_with(helpers.len()) - 1];
        let t0 = self.now();
        if self.ahead.as_ref().is_some_and(|ahead| ahead.step != self.step || ahead.answers.len() != helpers.len()) {
            self.forget_ahead();
        }
        if self.helper_has_copy.len() != helpers.len() {
            // other helpers than the last split step's (one failed, or one more started): each
            // is sent the run's state once
            self.helper_has_copy = vec![false; helpers.len()];
        }
        let (own, theirs, asked) = match self.ahead.take() {
            Some(ahead) => {
                self.last_prepared = ahead.prepared;
                (ahead.own, ahead.theirs, Some(ahead.answers))
            }
            None => {
                let (own, theirs, prepared) = self.split_batch(helpers.len());
                self.last_prepared = prepared;
                (own, theirs, None)
            }
        };
        // A split step is the CPU's (a graph replays one device's whole batch): no capture.
        if !matches!(self.capture, super::captured_step::Capture::Off(_)) {
            self.capture_off("its steps are split between workers".into());
        }
        let model = self.model.take().expect("model is present between steps");
        // Every failure below leaves the run as it was before the step, its model included;
        // the helpers' copies are then not counted on.
        let prepared_ms = self.now() - t0;
        let has_copy = std::mem::take(&mut self.helper_has_copy);
        let (grads, squares, loss, failures, copy_stepped, mut profile) = match self.split_gradients(&model, &own, theirs, asked, has_copy, helpers).await {
            Ok(done) => done,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let t1 = self.now();
        let lr = self.learning_rate();
        self.model = Some(self.optim.step_with_squares(lr, model, grads, squares));
        self.pending.push((self.step, loss));
        self.step += 1;
        self.helper_has_copy = copy_stepped;
        profile.forward_ms += prepared_ms;
        profile.update_ms = self.now() - t1;
        self.profiled(profile);
        Ok(failures)
    }

    /// This step's batch, drawn from the run's streams and prepared by each objective of the
    /// mix, split by rows into `helpers` + 1 shares as even as rows allow (the larger first):
    /// this worker's parts, each helper's, and the whole batch per part.
    fn split_batch(&mut self, helpers: usize) -> (Vec<SharePart>, Vec<Vec<SharePart>>, Vec<Option<Prepared>>) {
        let clean = self.corpus.sample(Split::Train, self.train.batch_size, self.model_config.block_size, &mut self.data_rng);
        let mut rng = self.corrupt_rng.clone();
        let (mut own, mut theirs, mut whole) = (Vec::new(), vec![Vec::new(); helpers], Vec::new());
        for i in 0..self.mix.len() {
            let (objective, weight) = (self.mix[i].objective, self.mix[i].weight);
            let prepared = objective.prepare(&clean, &self.context(&self.mix[i].params), &mut rng);
            let count = prepared.n_targets();
            let part = |p: Prepared| SharePart { objective: objective.info().id.to_string(), weight, prepared: p, count };
            let mut start = 0;
            for (share, rows) in shares(prepared.batch, helpers + 1).into_iter().enumerate() {
                let rows_part = part(prepared.rows(start, rows));
                start += rows;
                match share {
                    0 => own.push(rows_part),
                    helper => theirs[helper - 1].push(rows_part),
                }
            }
            whole.push(Some(prepared));
        }
        self.corrupt_rng = rng;
        (own, theirs, whole)
    }

    /// The job of `parts` for the run's step `step` (with the run's state when `copy` is given).
    fn job(&self, step: usize, parts: Vec<SharePart>, copy: Option<CopyHeader>, state: Vec<f32>) -> HelperWork {
        HelperWork {
            run: self.helper_key,
            step,
            model: self.model_config.clone(),
            vocab_size: self.corpus.tokenizer.vocab_size(),
            parts,
            copy,
            crash: self.train.helper_fails_at > 0 && step + 1 >= self.train.helper_fails_at,
            state,
        }
    }

    /// Sends the next step's jobs to `helpers` now (see the module's "Ahead"), keeping what the
    /// step needs to use them, or to draw the same batch without them.
    fn send_ahead(&mut self, helpers: &[&dyn HelperLink]) {
        let rngs = (self.data_rng.clone(), self.corrupt_rng.clone());
        let (own, theirs, prepared) = self.split_batch(helpers.len());
        // each helper's copy takes this step first (its messages are handled in order)
        let (answers, theirs) = self.ask_helpers(self.step + 1, helpers, theirs, vec![None; helpers.len()]);
        self.ahead = Some(Ahead { step: self.step + 1, own, theirs, prepared, answers, rngs });
    }

    /// Sends each helper its job of `theirs` for step `step`, with the run's state where
    /// `states` has one for it; their answers, and the parts kept for the fallback.
    fn ask_helpers(
        &self,
        step: usize,
        helpers: &[&dyn HelperLink],
        theirs: Vec<Vec<SharePart>>,
        states: Vec<Option<(CopyHeader, Vec<f32>)>>,
    ) -> (Vec<Answer>, Vec<Vec<SharePart>>) {
        let (mut answers, mut kept) = (Vec::new(), Vec::new());
        for ((helper, parts), state) in helpers.iter().zip(theirs).zip(states) {
            let work = match state {
                Some((header, state)) => self.job(step, parts, Some(header), state),
                None => self.job(step, parts, None, Vec::new()),
            };
            answers.push(helper.ask(&work));
            kept.push(work.parts);
        }
        (answers, kept)
    }

    /// Drops the jobs sent ahead, if any (their answers are not waited for), and puts the
    /// random streams back as they were before their batch was drawn, so that the next step,
    /// taken otherwise, draws the same batch.
    pub(crate) fn forget_ahead(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            (self.data_rng, self.corrupt_rng) = ahead.rngs;
        }
    }

    /// The batch's gradients (this worker's rows plus each helper's, added in the helpers'
    /// order), their partial sums of squares where the additions made them, its loss, why each
    /// failed helper failed, whether each helper's copy takes this step too, and the times of
    /// the parts. `asked` are the helpers' answers where the jobs were sent ahead, else the
    /// jobs are sent now.
    async fn split_gradients(
        &mut self,
        model: &Transformer,
        own: &[SharePart],
        theirs: Vec<Vec<SharePart>>,
        asked: Option<Vec<Answer>>,
        has_copy: Vec<bool>,
        helpers: &[&dyn HelperLink],
    ) -> Result<(GradientsParams, Option<Tensor<2>>, Tensor<1>, Vec<(usize, String)>, Vec<bool>, StepProfile), String> {
        let t0 = self.now();
        let sent_ahead = asked.is_some();
        let single = helpers.len() == 1;
        let (answers, theirs) = match asked {
            Some(answers) => (answers, theirs),
            None => {
                // (an absent helper is sent nothing: its share is computed here)
                let wants_copy: Vec<bool> = has_copy.iter().zip(helpers).map(|(&has, h)| !has && h.present()).collect();
                let missing = wants_copy.iter().filter(|&&wants| wants).count();
                let mut states = if missing == 0 {
                    Vec::new()
                } else {
                    // the run's state for the helpers' copies: weights, then AdamW's moments
                    let (time, moments, tensors) = self.optim.moments_in_order(model);
                    let state = read_flat(float_params(model).into_iter().chain(tensors).collect()).await?;
                    handed_out((CopyHeader { optim: self.optim.config().clone(), time, moments }, state), missing)
                }
                .into_iter();
                let states = wants_copy.iter().map(|&wants| if wants { states.next() } else { None }).collect();
                self.ask_helpers(self.step, helpers, theirs, states)
            }
        };
        let t1 = self.now();

        // This worker's share, at the same time.
        let mut no_dropout = Rng::seeded(0);
        let autodiff = self.autodiff.clone();
        let mut loss = parts_loss(model, own, &autodiff, |p| self.model_input(p, true, &mut no_dropout))?;
        if self.train.nan_at == self.step + 1 {
            // fault injection (TrainConfig::nan_at), as in the one-worker step
            loss = loss.mul_scalar(f32::NAN);
        }
        let t2 = self.now();
        let mut grads = GradientsParams::from_grads(loss.backward(), model);
        let t3 = self.now();
        let mut sent = vec![false; helpers.len()];
        if single {
            // ... sent to the one helper's copy while its share is still computing
            let (present, found) = gradients_in_order(model, &grads);
            let mine = Floats::of(found).await?;
            let update = HelperUpdate { run: self.helper_key, step: self.step, lr: self.learning_rate(), present, grads: mine, total: false };
            sent[0] = helpers[0].update(update).is_ok();
            // ... and the next step's job behind it, so that the helper goes on to it at once
            if sent[0] && helpers[0].sends_ahead() && self.step + 1 < self.train.steps {
                self.send_ahead(helpers);
            }
        }
        let t4 = self.now();

        let (mut replies, mut failures, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (answer, parts)) in answers.into_iter().zip(&theirs).enumerate() {
            // fresh: computed on a copy in step with the run, which can take this step too
            let (reply, in_step) = match answer.await {
                Ok(reply) if !reply.stale => (reply, true),
                Ok(_) => (self.local_share(model, parts).await?, false),
                Err(why) => {
                    if helpers[i].present() {
                        failures.push((i, why));
                    }
                    (self.local_share(model, parts).await?, false)
                }
            };
            fresh.push(in_step);
            replies.push(reply);
        }
        let t5 = self.now();
        let (mut theirs_loss, mut busy_ms) = (0.0f32, 0.0f64);
        // the sums' squares for clipping, from the last addition (the whole batch's)
        let mut squares = None;
        for reply in replies {
            busy_ms = busy_ms.max(reply.busy_ms);
            theirs_loss += reply.loss;
            (grads, squares) = add_gradients(model, &mut grads, reply.grads.into_vec(), &reply.present, &self.device)?;
        }
        let t6 = self.now();
        if !single {
            // every helper in step gets the whole batch's gradients, as this worker added them
            let (present, found) = gradients_in_order(model, &grads);
            let total = Floats::of(found).await?;
            let in_step: Vec<usize> = (0..helpers.len()).filter(|&i| fresh[i]).collect();
            for (i, (present, total)) in in_step.iter().zip(handed_out((present, total), in_step.len())) {
                let update = HelperUpdate { run: self.helper_key, step: self.step, lr: self.learning_rate(), present, grads: total, total: true };
                sent[*i] = helpers[*i].update(update).is_ok();
            }
            if sent.iter().all(|&s| s) && helpers.iter().all(|h| h.sends_ahead()) && self.step + 1 < self.train.steps {
                self.send_ahead(helpers);
            }
        }
        let copy_stepped: Vec<bool> = fresh.iter().zip(&sent).map(|(&f, &s)| f && s).collect();
        let theirs_loss = Tensor::<1>::from_data(TensorData::new(vec![theirs_loss], [1]), &autodiff);
        let t7 = self.now();
        let profile = StepProfile {
            steps: 1,
            forward_ms: t2 - t1,
            backward_ms: t3 - t2,
            send_ms: (t1 - t0) + (t4 - t3) + (t7 - t6),
            wait_ms: t5 - t4,
            helper_ms: busy_ms,
            // (not known for a job sent ahead: it was sent during the step before; nor for
            // several helpers, whose waits overlap)
            messaging_ms: if single && busy_ms > 0.0 && !sent_ahead { (t5 - t1 - (t4 - t3) - busy_ms).max(0.0) } else { 0.0 },
            add_ms: t6 - t5,
            ..Default::default()
        };
        Ok((grads, squares, loss.detach() + theirs_loss, failures, copy_stepped, profile))
    }

    /// A helper's share computed here, with the run's model, as the helper would answer it.
    async fn local_share(&mut self, model: &Transformer, parts: &[SharePart]) -> Result<HelperReply, String> {
        let mut no_dropout = Rng::seeded(0);
        let autodiff = self.autodiff.clone();
        let loss = parts_loss(model, parts, &autodiff, |p| self.model_input(p, true, &mut no_dropout))?;
        Ok(answer_with(model, loss).await?.0)
    }
}

/// `rows` split into `n` shares as even as they go, the larger first (5 rows in 2: 3 and 2).
fn shares(rows: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| rows / n + usize::from(i < rows % n)).collect()
}

/// `value` for each of `n` takers: copies for all but the last, which gets `value` itself (the
/// run's state and gradients are megabytes; one helper takes them without a copy).
fn handed_out<T: Clone>(value: T, n: usize) -> Vec<T> {
    let mut out: Vec<T> = (1..n).map(|_| value.clone()).collect();
    if n > 0 {
        out.push(value);
    }
    out
}

/// `own` gradients plus the other worker's (`grads` of the parameters marked in `present`, flat
/// in visiting order), per parameter, as one set; and the sums' partial sums of squares for
/// clipping ([`crate::optim::partials_of_sums`]), where every gradient is an f32 on flex. Both
/// workers add the same two halves, each its own first: the sums are equal, as IEEE addition is
/// commutative. On flex the sum is written into this worker's gradient and squared in the
/// same pass ([`crate::optim::add_and_square`]), so that clipping reads the 3 MB no more;
/// a parameter only one side has is the other worker's slice of `grads`, a view (a slice and
/// a reshape are metadata on flex), so the other worker's 3 MB are not copied again.
fn add_gradients(model: &Transformer, own: &mut GradientsParams, grads: Vec<f32>, present: &[bool], device: &Device) -> Result<(GradientsParams, Option<Tensor<2>>), String> {
    struct Add<'a> {
        own: &'a mut GradientsParams,
        // theirs: [total] of the other worker's gradients
        theirs: Tensor<1>,
        /// the same values on the host (on flex, the tensor's own buffer); empty elsewhere
        values: &'a [f32],
        present: &'a [bool],
        index: usize,
        at: usize,
        out: GradientsParams,
        /// Σx² of each sum, in visiting order, while every one is on flex
        squares: Option<Vec<f32>>,
        error: Option<String>,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let index = self.index;
            self.index += 1;
            let mine = self.own.remove::<D>(param.id);
            let theirs = match self.present.get(index) {
                Some(true) => {
                    let shape = param.val().shape();
                    let n = shape.num_elements();
                    if self.at + n > self.theirs.dims()[0] {
                        self.error = Some("the other worker's gradients are too short".into());
                        return;
                    }
                    let range = self.at..self.at + n;
                    self.at += n;
                    Some((shape, range))
                }
                Some(false) => None,
                None => {
                    self.error = Some("the other worker's gradients are for another model".into());
                    None
                }
            };
            let (sum, squares) = match (mine, theirs) {
                (Some(a), Some((shape, range))) => match add_in_place(a, self.values.get(range.clone()).unwrap_or(&[])) {
                    (sum, Some(squares)) => (sum, Some(squares)),
                    (a, None) => {
                        let sum = a + self.theirs.clone().slice(range).reshape(shape);
                        let squares = flex_squares(&sum);
                        (sum, squares)
                    }
                },
                (Some(a), None) => {
                    let squares = flex_squares(&a);
                    (a, squares)
                }
                (None, Some((shape, range))) => {
                    let squares = self.values.get(range.clone()).map(crate::optim::squares);
                    (self.theirs.clone().slice(range).reshape(shape), squares)
                }
                (None, None) => return,
            };
            match (&mut self.squares, squares) {
                (Some(all), Some(s)) => all.push(s),
                _ => self.squares = None,
            }
            self.out.register(param.id, sum);
        }
    }
    let total = grads.len();
    let theirs = Tensor::<1>::from_data(TensorData::new(grads, [total]), device);
    // the host's view of the same values (on flex, the tensor's own buffer)
    let theirs_flex = flex_f32(&theirs);
    let values: &[f32] = theirs_flex.as_ref().and_then(|t| t.as_slice::<f32>()).unwrap_or(&[]);
    let on_flex = values.len() == total;
    // (not on flex: composed additions, and clipping sums the squares itself)
    let mut add = Add { own, theirs, values, present, index: 0, at: 0, out: GradientsParams::new(), squares: on_flex.then(Vec::new), error: None };
    model.visit(&mut add);
    if add.error.is_none() && (add.index != present.len() || add.at != total) {
        add.error = Some("the other worker's gradients are for another model".into());
    }
    match add.error {
        Some(e) => Err(e),
        None => Ok((add.out, add.squares.map(|sums| crate::optim::partials_of_sums(&sums, device)))),
    }
}

/// `t`'s tensor on flex, if it is an f32 one there.
fn flex_f32<const D: usize>(t: &Tensor<D>) -> Option<burn_flex::FlexTensor> {
    match t.clone().into_dispatch().kind {
        burn::backend::DispatchTensorKind::Flex(burn::backend::BackendTensor::Float(t)) if t.dtype() == burn::backend::DType::F32 => Some(t),
        _ => None,
    }
}

/// Σx² of `t` on flex (a contiguous copy if it is not), or `None` elsewhere.
fn flex_squares<const D: usize>(t: &Tensor<D>) -> Option<f32> {
    let t = crate::cpu_loops::contiguous(flex_f32(t)?);
    Some(crate::optim::squares(t.as_slice::<f32>()?))
}

/// `mine + theirs` written into `mine`'s buffer, with the sum's Σx²
/// ([`crate::optim::add_and_square`]), where `mine` is an f32 tensor on flex that alone owns
/// exactly its elements, in order (a backward's fresh gradient); `mine` back as it was, and no
/// sum, otherwise.
fn add_in_place<const D: usize>(mine: Tensor<D>, theirs: &[f32]) -> (Tensor<D>, Option<f32>) {
    use burn::backend::{BackendTensor, DType, DispatchTensorKind};
    let mut dispatch = mine.into_dispatch();
    let squares = match &mut dispatch.kind {
        DispatchTensorKind::Flex(BackendTensor::Float(t)) if t.dtype() == DType::F32 => {
            let whole = crate::cpu_loops::owns_its_elements(t);
            match t.try_storage_mut::<f32>() {
                Some(own) if whole && own.len() == theirs.len() => Some(crate::optim::add_and_square(own, theirs)),
                _ => None,
            }
        }
        _ => None,
    };
    (Tensor::from_dispatch(dispatch), squares)
}

/// An in-process helper (the tests' stand-in for a helper worker): it computes its share
/// when asked, and can be told to fail.
#[cfg(test)]
pub(crate) struct InProcess {
    pub helper: std::cell::RefCell<Helper>,
    pub asked: std::cell::Cell<usize>,
    pub fails: bool,
    /// Whether runs send it the next step's job ahead ([`HelperLink::sends_ahead`]).
    pub ahead: bool,
}

#[cfg(test)]
impl InProcess {
    pub fn new(fails: bool) -> Self {
        Self { helper: std::cell::RefCell::new(Helper::new(Device::flex())), asked: Default::default(), fails, ahead: false }
    }

    /// One that is sent jobs ahead, as the tab's second worker is.
    pub fn ahead() -> Self {
        Self { ahead: true, ..Self::new(false) }
    }
}

#[cfg(test)]
impl HelperLink for InProcess {
    fn ask(&self, work: &HelperWork) -> Answer {
        self.asked.set(self.asked.get() + 1);
        let answer = if self.fails { Err("the helper stopped".to_string()) } else { pollster::block_on(self.helper.borrow_mut().gradients(work)) };
        Box::pin(async move { answer })
    }

    fn update(&self, update: HelperUpdate) -> Result<(), String> {
        // a copy that cannot take the update is dropped, as in the worker
        let _ = self.helper.borrow_mut().update(update);
        Ok(())
    }

    fn sends_ahead(&self) -> bool {
        self.ahead
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::Corpus;
    use crate::spec::ExperimentSpec;

    fn corpus() -> Arc<Corpus> {
        Arc::new(Corpus::from_text("abc", &"the cat sat on the mat; a dog ran far. ".repeat(100)).unwrap())
    }

    fn spec(objective: &str) -> ExperimentSpec {
        let mut spec = ExperimentSpec::from_preset("tiny").unwrap();
        spec.model.block_size = 16;
        spec.train.batch_size = 5;
        spec.set("objective", objective).unwrap();
        spec
    }

    fn weights(t: &Trainer) -> Vec<f32> {
        pollster::block_on(read_flat(float_params(t.model()))).unwrap()
    }

    /// The two workers' gradients added in place give the same sums as burn's additions, and
    /// their squares the same partial sums as clipping's own pass over those sums, to the bit
    /// (so a split step clips as before). A gradient of this worker's alone is written over, one
    /// held elsewhere too is not, and one only the other worker has is squared from its values.
    #[test]
    fn adding_in_place_gives_the_sums_and_their_squares() {
        use burn::tensor::Distribution;
        let t = Trainer::new(&spec("causal_lm"), 0, corpus(), Device::flex()).unwrap();
        let device = Device::flex();
        struct Random {
            device: Device,
            grads: GradientsParams,
            present: Vec<bool>,
            theirs: Vec<f32>,
            expected: Vec<f32>,
            /// (a gradient of this worker's also held here, its values)
            shared: Option<(Tensor<1>, Vec<f32>)>,
            /// where the third parameter's gradient lies, which the sum is written over
            third: usize,
        }
        impl ModuleVisitor for Random {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let shape = param.val().shape();
                let random = |d: &Device| Tensor::<D>::random(shape.clone(), Distribution::Normal(0.0, 1.0), d);
                let (mine, theirs) = (random(&self.device), random(&self.device));
                let index = self.present.len();
                let (m, th) = (mine.clone().into_data().try_to_vec::<f32>().unwrap(), theirs.into_data().try_to_vec::<f32>().unwrap());
                // the second parameter: the other worker's gradient alone
                if index == 1 {
                    self.present.push(true);
                    self.theirs.extend(&th);
                    self.expected.extend(&th);
                    return;
                }
                if index == 2 {
                    self.third = flex_f32(&mine).unwrap().bytes().as_ptr() as usize;
                }
                if self.shared.is_none() {
                    self.shared = Some((mine.clone().reshape([-1]), m.clone()));
                }
                self.present.push(true);
                self.theirs.extend(&th);
                self.expected.extend(m.iter().zip(&th).map(|(a, b)| a + b));
                self.grads.register(param.id, mine);
            }
        }
        let mut random = Random { device: device.clone(), grads: GradientsParams::new(), present: Vec::new(), theirs: Vec::new(), expected: Vec::new(), shared: None, third: 0 };
        t.model().visit(&mut random);
        let (sums, squares) = add_gradients(t.model(), &mut random.grads, random.theirs, &random.present, &device).unwrap();
        let (present, found) = gradients_in_order(t.model(), &sums);
        assert!(present.iter().all(|&p| p));
        assert_eq!(flex_f32(&found[2]).unwrap().bytes().as_ptr() as usize, random.third, "written in place");
        let got: Vec<f32> = found.iter().flat_map(|g| g.clone().into_data().try_to_vec::<f32>().unwrap()).collect();
        assert_eq!(got, random.expected);
        let zeros = Tensor::<2>::zeros([crate::optim::GROUP, crate::optim::PARTS], &device);
        let filler = Tensor::<1>::zeros([1], &device);
        let clipping = crate::optim::partial_sums_of_squares(found.into_iter().map(|g| g.into_dispatch()).collect(), &zeros, &filler);
        let squares = squares.expect("every gradient is on flex");
        assert_eq!(squares.into_data().try_to_vec::<f32>().unwrap(), clipping.into_data().try_to_vec::<f32>().unwrap());
        let (shared, before) = random.shared.unwrap();
        assert_eq!(shared.into_data().try_to_vec::<f32>().unwrap(), before, "a gradient held elsewhere is left alone");
    }

    /// Three steps split between this thread and an in-process helper give the one-worker
    /// run's losses and weights, up to rounding. An odd batch (5 rows: 3 and 2) and a masked
    /// objective, whose halves hold different numbers of targets, are the cases that would
    /// show a wrong weighting; the mix shows each part's weight carried over.
    #[test]
    fn split_steps_train_as_one_batch() {
        for objective in ["causal_lm", "masked_lm", "causal_lm=0.5,span_corruption=0.5", "prefix_lm"] {
            let spec = spec(objective);
            let mut one = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
            let mut two = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
            assert!(two.splits(), "{objective} splits");
            let helper = InProcess::new(false);
            for _ in 0..3 {
                one.step();
                let failure = pollster::block_on(two.split_step(&helper)).unwrap();
                assert_eq!(failure, None);
            }
            let a = pollster::block_on(one.read_losses()).unwrap();
            let b = pollster::block_on(two.read_losses()).unwrap();
            for ((_, x), (_, y)) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5 * x.abs().max(1.0), "{objective}: losses {a:?} and {b:?}");
            }
            let (wa, wb) = (weights(&one), weights(&two));
            let worst = wa.iter().zip(&wb).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-4, "{objective}: weights differ by {worst}");
            // and the weights did move from where they started
            let start = weights(&Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap());
            assert!(wa.iter().zip(&start).any(|(x, y)| (x - y).abs() > 1e-3));
        }
    }

    /// Jobs sent ahead (the tab's link) change nothing: split steps whose helper got each
    /// next job with the step before, and a step taken alone in between (which does not use
    /// the job sent ahead and draws its batch again), give the one-worker run's losses and
    /// weights. The job sent ahead is the one used: one job is sent per split step, and none
    /// after the run's last step.
    #[test]
    fn a_job_sent_ahead_changes_nothing() {
        let mut spec = spec("causal_lm=0.5,masked_lm=0.5");
        spec.train.steps = 7;
        let mut one = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let mut two = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let helper = InProcess::ahead();
        let split = |t: &mut Trainer| assert_eq!(pollster::block_on(t.split_step(&helper)).unwrap(), None);
        split(&mut two);
        assert_eq!(helper.asked.get(), 2, "the first step's job and the second's, ahead");
        assert_eq!(two.ahead.as_ref().map(|a| a.step), Some(1));
        split(&mut two);
        assert_eq!(helper.asked.get(), 3, "the second step used the job sent ahead");
        let examples = two.examples();
        two.step();
        assert!(two.ahead.is_none(), "a step taken alone drops the job sent ahead");
        assert_ne!(two.examples(), examples, "and draws a batch of its own");
        for _ in 3..7 {
            split(&mut two);
        }
        assert!(two.ahead.is_none(), "nothing is sent ahead of the run's last step");
        assert_eq!(helper.asked.get(), 3 + 2 + 1 + 1, "a fresh job after the step alone, then one ahead per step");
        for _ in 0..7 {
            one.step();
        }
        let (a, b) = (pollster::block_on(one.read_losses()).unwrap(), pollster::block_on(two.read_losses()).unwrap());
        assert_eq!(a.len(), 7);
        for ((_, x), (_, y)) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5 * x.abs().max(1.0), "losses {a:?} and {b:?}");
        }
        let worst = weights(&one).iter().zip(&weights(&two)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "weights differ by {worst}");
        assert_eq!(one.examples(), two.examples(), "the last step saw the same batch");
    }

    /// A run whose helper comes and goes trains to the same bits as one whose helper was there
    /// at every step: the share of a helper still loading or stopped (`Absent`) is computed
    /// here and added in its place. Taken as one unsplit step instead (as the tab's worker did
    /// until the fiftieth session), it rounds otherwise, and the run's curve then depended on
    /// when its helper came up.
    #[test]
    fn a_run_whose_helper_comes_and_goes_trains_to_the_same_bits() {
        let spec = spec("causal_lm=0.5,masked_lm=0.5");
        let (mut always, mut varying, mut alone) = (
            Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap(),
            Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap(),
            Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap(),
        );
        let (helper, late, failing) = (InProcess::ahead(), InProcess::ahead(), InProcess::new(true));
        for step in 0..7 {
            assert_eq!(pollster::block_on(always.step_with(&[&helper])), None);
            // absent until step 2; step 4 uses the job sent to it ahead; a crash at step 5
            let link: &dyn HelperLink = match step {
                2 | 3 => &late,
                5 => &failing,
                _ => &Absent,
            };
            let said = pollster::block_on(varying.step_with(&[link]));
            assert_eq!(said.as_deref(), (step == 5).then_some("the helper stopped"), "an absent helper is no failure");
            alone.step();
        }
        assert_eq!(late.asked.get(), 3, "the late helper: step 2's job, then steps 3 and 4 sent ahead");
        let (a, b) = (pollster::block_on(always.read_losses()).unwrap(), pollster::block_on(varying.read_losses()).unwrap());
        assert_eq!(a, b, "the same losses, to the bit");
        assert_eq!(weights(&always), weights(&varying), "the same weights, to the bit");
        assert_ne!(weights(&alone), weights(&always), "(the unsplit steps round otherwise)");
    }

    /// A helper that fails costs no step: this worker computes the second half itself and
    /// says why, and the run is the same as with a helper.
    #[test]
    fn a_failed_helper_loses_no_step() {
        let spec = spec("causal_lm");
        let mut one = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let mut two = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        one.step();
        let failure = pollster::block_on(two.split_step(&InProcess::new(true))).unwrap();
        assert_eq!(failure.as_deref(), Some("the helper stopped"));
        assert_eq!(two.step_count(), 1);
        let (wa, wb) = (weights(&one), weights(&two));
        assert!(wa.iter().zip(&wb).all(|(x, y)| (x - y).abs() < 1e-4));
    }

    /// `helper_fails_at` marks the jobs from that step on for the helper's worker to crash
    /// (the browser test `a_crashed_second_worker_costs_no_step` sees the crash itself).
    #[test]
    fn helper_fails_at_marks_the_jobs_to_crash_on() {
        let mut spec = spec("causal_lm");
        spec.set("helper_fails_at", "3").unwrap();
        let mut t = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        struct Marks<'a>(InProcess, &'a std::cell::RefCell<Vec<bool>>);
        impl HelperLink for Marks<'_> {
            fn ask(&self, work: &HelperWork) -> Answer {
                self.1.borrow_mut().push(work.crash);
                self.0.ask(work)
            }
            fn update(&self, update: HelperUpdate) -> Result<(), String> {
                self.0.update(update)
            }
        }
        let marks = std::cell::RefCell::new(Vec::new());
        let link = Marks(InProcess::new(false), &marks);
        for _ in 0..4 {
            assert_eq!(pollster::block_on(t.split_step(&link)).unwrap(), None);
        }
        assert_eq!(*marks.borrow(), [false, false, true, true]);
    }

    /// A helper that answers with gradients for another model (3 floats for 2 parameters).
    struct WrongSized;

    impl HelperLink for WrongSized {
        fn ask(&self, _: &HelperWork) -> Answer {
            Box::pin(async { Ok(HelperReply { grads: Floats::from_values(vec![0.0; 3]), present: vec![true; 2], ..Default::default() }) })
        }
        fn update(&self, _: HelperUpdate) -> Result<(), String> {
            Ok(())
        }
    }

    /// An answer for another model is refused, not added in the wrong places.
    #[test]
    fn a_wrong_sized_answer_is_refused() {
        let spec = spec("causal_lm");
        let mut t = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let e = pollster::block_on(t.split_step(&WrongSized)).unwrap_err();
        assert!(e.contains("another model") || e.contains("too short"), "{e}");
        assert_eq!(t.step_count(), 0);
        // the run keeps its model
        assert_eq!(weights(&t).len(), weights(&Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap()).len());
    }

    /// `step_with` completes a step whose split failed, for either reason (the helper's error,
    /// the step's own), and tells the link to stop both times: the worker's link must not
    /// stay ready after a failed step (the page's benchmark once left it so).
    #[test]
    fn a_failed_split_step_stops_the_link() {
        struct Told<L>(L, std::cell::RefCell<Vec<String>>);
        impl<L: HelperLink> HelperLink for Told<L> {
            fn ask(&self, work: &HelperWork) -> Answer {
                self.0.ask(work)
            }
            fn update(&self, update: HelperUpdate) -> Result<(), String> {
                self.0.update(update)
            }
            fn stop(&self, why: &str) {
                self.1.borrow_mut().push(why.to_string());
            }
        }
        let spec = spec("causal_lm");
        let mut t = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let (wrong, failing, working) = (Told(WrongSized, Default::default()), Told(InProcess::new(true), Default::default()), Told(InProcess::new(false), Default::default()));
        let why = pollster::block_on(t.step_with(&[&wrong])).expect("the step's own error");
        assert!(why.starts_with("the split step failed: "), "{why}");
        assert_eq!(*wrong.1.borrow(), [why]);
        assert_eq!(pollster::block_on(t.step_with(&[&failing])).as_deref(), Some("the helper stopped"));
        assert_eq!(*failing.1.borrow(), ["the helper stopped"]);
        assert_eq!(pollster::block_on(t.step_with(&[&working])), None);
        assert!(working.1.borrow().is_empty());
        assert_eq!(t.step_count(), 3, "no step lost");
    }

    /// The helper's copy of the run stays equal to it to the bit, so the run sends its weights
    /// and AdamW moments only when the helper has no copy in step: at its first split step,
    /// after a step it took alone, and after the helper dropped the copy (answered `stale`,
    /// that step's second half computed here).
    #[test]
    fn the_helpers_copy_stays_equal_to_the_run() {
        let spec = spec("causal_lm=0.5,masked_lm=0.5");
        let mut t = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let mut alone = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let helper = InProcess::new(false);
        let states_sent = std::cell::Cell::new(0);
        let counting = Counting { inner: &helper, states_sent: &states_sent };
        let same = |t: &Trainer, helper: &InProcess| assert_eq!(helper.helper.borrow().weights(t.helper_key).as_ref(), Some(&weights(t)));
        // a step alone first, so that AdamW has moments to send
        t.step();
        alone.step();
        for _ in 0..3 {
            assert_eq!(pollster::block_on(t.split_step(&counting)).unwrap(), None);
            alone.step();
            same(&t, &helper);
        }
        assert_eq!(states_sent.get(), 1, "the state went once");
        t.step();
        alone.step();
        pollster::block_on(t.split_step(&counting)).unwrap();
        alone.step();
        same(&t, &helper);
        assert_eq!(states_sent.get(), 2, "and again after a step alone");
        // the helper drops its copies: the next split step is computed here, the one after
        // sends the state again
        helper.helper.borrow_mut().copies.clear();
        pollster::block_on(t.split_step(&counting)).unwrap();
        alone.step();
        assert_eq!(helper.helper.borrow().weights(t.helper_key), None);
        pollster::block_on(t.split_step(&counting)).unwrap();
        alone.step();
        same(&t, &helper);
        assert_eq!(states_sent.get(), 3);
        assert_eq!(t.step_count(), 8);
        // and the run is the one-worker run, up to rounding
        let worst = weights(&t).iter().zip(&weights(&alone)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "weights differ by {worst}");

        struct Counting<'a> {
            inner: &'a InProcess,
            states_sent: &'a std::cell::Cell<usize>,
        }
        impl HelperLink for Counting<'_> {
            fn ask(&self, work: &HelperWork) -> Answer {
                if work.copy.is_some() {
                    self.states_sent.set(self.states_sent.get() + 1);
                }
                self.inner.ask(work)
            }
            fn update(&self, update: HelperUpdate) -> Result<(), String> {
                self.inner.update(update)
            }
        }
    }

    /// Two and three helpers (shares of 2, 2, 1 and 2, 1, 1, 1 rows of a 5-row batch) train as
    /// one batch, and every helper's copy stays equal to the run to the bit; with jobs sent
    /// ahead too. More helpers than rows after the first are not asked.
    #[test]
    fn more_helpers_train_as_one_batch_and_keep_their_copies() {
        for (n, ahead) in [(2, false), (3, false), (2, true)] {
            let spec = spec("causal_lm=0.5,masked_lm=0.5");
            let mut one = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
            let mut many = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
            let helpers: Vec<InProcess> = (0..n).map(|_| if ahead { InProcess::ahead() } else { InProcess::new(false) }).collect();
            let links: Vec<&dyn HelperLink> = helpers.iter().map(|h| h as &dyn HelperLink).collect();
            // a step alone first, so that AdamW has moments to send
            one.step();
            many.step();
            for _ in 0..4 {
                one.step();
                assert_eq!(pollster::block_on(many.split_step_among(&links)).unwrap(), []);
                for (i, helper) in helpers.iter().enumerate() {
                    assert_eq!(helper.helper.borrow().weights(many.helper_key).as_ref(), Some(&weights(&many)), "{n} helpers: helper {i}'s copy");
                }
            }
            let asked: Vec<usize> = helpers.iter().map(|h| h.asked.get()).collect();
            assert_eq!(asked, vec![if ahead { 5 } else { 4 }; n], "one job per step each (and one ahead)");
            let (a, b) = (pollster::block_on(one.read_losses()).unwrap(), pollster::block_on(many.read_losses()).unwrap());
            for ((_, x), (_, y)) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5 * x.abs().max(1.0), "{n} helpers: losses {a:?} and {b:?}");
            }
            let worst = weights(&one).iter().zip(&weights(&many)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-4, "{n} helpers: weights differ by {worst}");
        }
        assert_eq!(shares(5, 3), [2, 2, 1]);
        assert_eq!(shares(12, 4), [3, 3, 3, 3]);
        // the state and the sum are copied for all takers but the last
        #[derive(Debug)]
        struct Counted<'a>(&'a std::cell::Cell<usize>);
        impl Clone for Counted<'_> {
            fn clone(&self) -> Self {
                self.0.set(self.0.get() + 1);
                Counted(self.0)
            }
        }
        let clones = std::cell::Cell::new(0);
        for (n, copies) in [(0, 0), (1, 0), (3, 2)] {
            clones.set(0);
            assert_eq!(handed_out(Counted(&clones), n).len(), n);
            assert_eq!(clones.get(), copies, "{n} takers");
        }
        // a 2-row batch has one row to give: the second helper is not asked
        let mut spec = spec("causal_lm");
        spec.train.batch_size = 2;
        let mut t = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let helpers = [InProcess::new(false), InProcess::new(false)];
        assert_eq!(pollster::block_on(t.split_step_among(&[&helpers[0], &helpers[1]])).unwrap(), []);
        assert_eq!((helpers[0].asked.get(), helpers[1].asked.get()), (1, 0));
    }

    /// One helper of two failing costs no step: its share is computed here, the failure is
    /// reported with its index (and `step_with` stops that helper alone), the other helper's
    /// copy takes the step, and the next split step sends the run's state to both again.
    #[test]
    fn one_failed_helper_of_two_loses_no_step() {
        let spec = spec("causal_lm");
        let mut one = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let mut two = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let (working, failing) = (InProcess::new(false), InProcess::new(true));
        one.step();
        let failures = pollster::block_on(two.split_step_among(&[&working, &failing])).unwrap();
        assert_eq!(failures, [(1, "the helper stopped".to_string())]);
        assert_eq!(working.helper.borrow().weights(two.helper_key).as_ref(), Some(&weights(&two)));
        let worst = weights(&one).iter().zip(&weights(&two)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "weights differ by {worst}");
        // the worker drops the failed helper: one helper now, which is sent the state again
        one.step();
        assert_eq!(pollster::block_on(two.split_step_among(&[&working])).unwrap(), []);
        assert_eq!(working.helper.borrow().weights(two.helper_key).as_ref(), Some(&weights(&two)));
        assert_eq!(two.step_count(), 2);
    }

    /// A helper keeps the copies of the last `COPIES` runs it served.
    #[test]
    fn a_helper_keeps_a_few_runs_copies() {
        let spec = spec("causal_lm");
        let helper = InProcess::new(false);
        let mut runs: Vec<Trainer> = (0..COPIES + 1).map(|_| Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap()).collect();
        for t in &mut runs {
            pollster::block_on(t.split_step(&helper)).unwrap();
        }
        let h = helper.helper.borrow();
        assert_eq!(h.copies.len(), COPIES);
        assert!(h.weights(runs[0].helper_key).is_none(), "the oldest was dropped");
        assert_eq!(h.weights(runs[COPIES].helper_key), Some(weights(&runs[COPIES])));
    }

    #[test]
    fn contrastive_runs_do_not_split() {
        let t = Trainer::new(&spec("contrastive"), 0, corpus(), Device::flex()).unwrap();
        assert!(!t.splits());
    }

    #[test]
    fn rows_keep_each_rows_attention() {
        let mode = crate::model::AttentionMode::Prefix(vec![1, 2, 3]);
        let mut p = Prepared::new(3, 4, (0..12).collect(), mode);
        p.targets = (0..12).collect();
        let r = p.rows(1, 2);
        assert_eq!(r.inputs, (4..12).collect::<Vec<u32>>());
        assert_eq!(r.targets, (4..12).collect::<Vec<i32>>());
        assert_eq!(r.attention, crate::model::AttentionMode::Prefix(vec![2, 3]));
        let visible: Vec<bool> = (0..12).map(|i| i % 3 == 0).collect();
        let mut k = Prepared::new(3, 4, (0..12).collect(), crate::model::AttentionMode::KeyMask { causal: true, seq: 4, visible: visible.clone() });
        k.targets = vec![0; 12];
        match k.rows(2, 1).attention {
            crate::model::AttentionMode::KeyMask { visible: v, .. } => assert_eq!(v, visible[8..12]),
            other => panic!("{other:?}"),
        }
    }
}
