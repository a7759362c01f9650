//! One step's batch split by rows between two workers: data parallelism without shared memory.
//!
//! Why: a tab's WebAssembly has no threads without a cross-origin-isolated page and a standard
//! library rebuilt with atomics, but a Web Worker can start a second worker, and the two run on
//! two cores. The lab's worker keeps the run (model, AdamW, random streams) and gives the
//! second worker, the *helper*, the current weights and the second half of the step's rows;
//! both compute gradients at once, and the run adds them and takes the step. The helper holds
//! no state of its own, so it cannot drift from the run, and any number of runs can share it.
//!
//! The split is exact, not data-parallel averaging: every objective's loss is a sum over the
//! batch's targets divided by their count (or a mean over positions), so each half divides its
//! sum by the **whole batch's** count ([`HalfPart::count`]) and the two halves' losses add up
//! to the batch's loss; their gradients add up to the batch's gradient. Only rounding differs
//! from the one-worker step (`split_steps_train_as_one_batch` below). Contrastive objectives
//! compare each row with every other and draw dropout noise per step, so their runs do not
//! split ([`Trainer::splits`]).

use std::future::Future;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{StepProfile, Trainer, read_flat};
use crate::data::Split;
use crate::model::{ModelConfig, ModelInput, Route, Transformer};
use crate::objectives::{self, DeviceTargets, Prepared};
use crate::rng::Rng;

/// One objective's rows of a split batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HalfPart {
    /// The objective's registry id (its loss head).
    pub objective: String,
    /// Its weight in the run's mix (normalised).
    pub weight: f64,
    pub prepared: Prepared,
    /// Targets that count in the whole batch, which each half's summed loss is divided by.
    pub count: usize,
}

/// What the helper computes gradients for: the model's shape, its weights and its rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelperWork {
    pub model: ModelConfig,
    pub vocab_size: usize,
    pub parts: Vec<HalfPart>,
    /// params: every float parameter's values, flat, in the model's visiting order (sent beside
    /// the JSON as a binary array).
    #[serde(skip)]
    pub params: Vec<f32>,
}

/// The helper's answer.
#[derive(Clone, Debug, Default)]
pub struct HelperReply {
    /// grads: the gradients of the parameters marked in `present`, flat, in visiting order.
    pub grads: Vec<f32>,
    /// One flag per float parameter: whether it got a gradient (an unused position table
    /// gets none, and AdamW leaves such a parameter alone).
    pub present: Vec<bool>,
    /// The helper's share of the step's loss.
    pub loss: f32,
    /// The helper's own time on this job in ms, where it measures it (0 where not).
    pub busy_ms: f64,
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
fn parts_loss(model: &Transformer, parts: &[HalfPart], device: &Device, mut input: impl FnMut(&Prepared) -> ModelInput) -> Result<Tensor<1>, String> {
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

/// The second worker's side: gradients for the rows and weights it is sent. It keeps one model
/// of the last shape it saw, whose weights every job overwrites.
pub struct Helper {
    device: Device,
    model: Option<(ModelConfig, usize, Transformer)>,
}

impl Helper {
    /// A helper computing on `device` (the CPU backend in the tab).
    pub fn new(device: Device) -> Self {
        Self { device, model: None }
    }

    pub async fn gradients(&mut self, work: &HelperWork) -> Result<HelperReply, String> {
        let autodiff = self.device.clone().autodiff();
        let model = match self.model.take() {
            Some((config, vocab, model)) if config == work.model && vocab == work.vocab_size => model,
            _ => Transformer::new(&work.model, work.vocab_size, &mut Rng::seeded(0), &autodiff),
        };
        let model = load_params(model, &work.params, &autodiff)?;
        let loss = parts_loss(&model, &work.parts, &autodiff, |p| input(p, &work.model, &autodiff))?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (present, found) = gradients_in_order(&model, &grads);
        let mut flat = read_flat(found.into_iter().chain([loss.inner()]).collect()).await?;
        let loss = flat.pop().expect("the loss was read last");
        self.model = Some((work.model.clone(), work.vocab_size, model));
        Ok(HelperReply { grads: flat, present, loss, busy_ms: 0.0 })
    }
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

/// `model` with its float parameters replaced, in visiting order, by `flat`'s values.
fn load_params(model: Transformer, flat: &[f32], device: &Device) -> Result<Transformer, String> {
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
    if load.short || load.at != flat.len() {
        return Err(format!("the helper got {} weights for a model of another size", flat.len()));
    }
    Ok(model)
}

impl Trainer {
    /// Whether this run's steps can be split between two workers (see the module's doc).
    pub fn splits(&self) -> bool {
        self.splittable && self.train.batch_size >= 2
    }

    /// One optimiser step with the second half of the batch's rows computed by `helper`, while
    /// this worker computes the first half. `helper` is called once, before this worker's own
    /// half, and should only send the work (a copy of what it needs: the work stays here for
    /// the fallback); its answer is awaited after. If it fails, this
    /// worker computes that half itself, so the step is never lost; the error is returned
    /// beside, for the caller to stop asking. Like [`Trainer::step`], nothing of the run is
    /// read back but its weights (for the helper).
    pub async fn split_step<F, Fut>(&mut self, helper: F) -> Result<Option<String>, String>
    where
        F: FnOnce(&HelperWork) -> Fut,
        Fut: Future<Output = Result<HelperReply, String>>,
    {
        assert!(self.splits(), "split_step on a run that does not split");
        let t0 = self.now();
        let clean = self.corpus.sample(Split::Train, self.train.batch_size, self.model_config.block_size, &mut self.data_rng);
        let mut rng = self.corrupt_rng.clone();
        let (mut own, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..self.mix.len() {
            let (objective, weight) = (self.mix[i].objective, self.mix[i].weight);
            let prepared = objective.prepare(&clean, &self.context(&self.mix[i].params), &mut rng);
            let count = prepared.n_targets();
            let first = prepared.batch.div_ceil(2);
            let part = |p: Prepared| HalfPart { objective: objective.info().id.to_string(), weight, prepared: p, count };
            own.push(part(prepared.rows(0, first)));
            theirs.push(part(prepared.rows(first, prepared.batch - first)));
            self.last_prepared[i] = Some(prepared);
        }
        self.corrupt_rng = rng;
        let model = self.model.take().expect("model is present between steps");
        // Every failure below leaves the run as it was before the step, its model included.
        let prepared_ms = self.now() - t0;
        let (grads, loss, failure, mut profile) = match self.split_gradients(&model, &own, theirs, helper).await {
            Ok(done) => done,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let t1 = self.now();
        let lr = self.learning_rate();
        self.model = Some(self.optim.step(lr, model, grads));
        self.pending.push((self.step, loss));
        self.step += 1;
        profile.forward_ms += prepared_ms;
        profile.update_ms = self.now() - t1;
        self.profiled(profile);
        Ok(failure)
    }

    /// The batch's gradients (this worker's rows plus the helper's), its loss, why the
    /// helper failed if it did, and the times of the parts.
    async fn split_gradients<F, Fut>(
        &mut self,
        model: &Transformer,
        own: &[HalfPart],
        theirs: Vec<HalfPart>,
        helper: F,
    ) -> Result<(GradientsParams, Tensor<1>, Option<String>, StepProfile), String>
    where
        F: FnOnce(&HelperWork) -> Fut,
        Fut: Future<Output = Result<HelperReply, String>>,
    {
        let t0 = self.now();
        let params = read_flat(float_params(model)).await?;
        let work = HelperWork { model: self.model_config.clone(), vocab_size: self.corpus.tokenizer.vocab_size(), parts: theirs, params };
        let answer = helper(&work);
        let t1 = self.now();

        // This worker's half, at the same time.
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

        let (reply, failure) = match answer.await {
            Ok(reply) => (reply, None),
            Err(why) => (Helper::new(self.device.clone()).gradients(&work).await?, Some(why)),
        };
        let t4 = self.now();
        let grads = add_gradients(model, &mut grads, &reply, &self.device)?;
        let theirs = Tensor::<1>::from_data(TensorData::new(vec![reply.loss], [1]), &autodiff);
        let t5 = self.now();
        let profile = StepProfile {
            steps: 1,
            forward_ms: t2 - t1,
            backward_ms: t3 - t2,
            send_ms: t1 - t0,
            wait_ms: t4 - t3,
            helper_ms: reply.busy_ms,
            messaging_ms: if reply.busy_ms > 0.0 { (t4 - t1 - reply.busy_ms).max(0.0) } else { 0.0 },
            add_ms: t5 - t4,
            ..Default::default()
        };
        Ok((grads, loss.detach() + theirs, failure, profile))
    }
}

/// This worker's gradients plus the helper's, per parameter, as one set.
fn add_gradients(model: &Transformer, own: &mut GradientsParams, reply: &HelperReply, device: &Device) -> Result<GradientsParams, String> {
    struct Add<'a> {
        own: &'a mut GradientsParams,
        reply: &'a HelperReply,
        device: &'a Device,
        index: usize,
        at: usize,
        out: GradientsParams,
        error: Option<String>,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let index = self.index;
            self.index += 1;
            let mine = self.own.remove::<D>(param.id);
            let theirs = match self.reply.present.get(index) {
                Some(true) => {
                    let shape = param.val().shape();
                    let n = shape.num_elements();
                    let Some(values) = self.reply.grads.get(self.at..self.at + n) else {
                        self.error = Some("the helper's gradients are too short".into());
                        return;
                    };
                    self.at += n;
                    Some(Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), self.device))
                }
                Some(false) => None,
                None => {
                    self.error = Some("the helper's answer is for another model".into());
                    None
                }
            };
            let sum = match (mine, theirs) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            if let Some(g) = sum {
                self.out.register(param.id, g);
            }
        }
    }
    let mut add = Add { own, reply, device, index: 0, at: 0, out: GradientsParams::new(), error: None };
    model.visit(&mut add);
    if add.error.is_none() && (add.index != reply.present.len() || add.at != reply.grads.len()) {
        add.error = Some("the helper's answer is for another model".into());
    }
    match add.error {
        Some(e) => Err(e),
        None => Ok(add.out),
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
            let mut helper = Helper::new(Device::flex());
            for _ in 0..3 {
                one.step();
                let failure = pollster::block_on(two.split_step(|work| {
                    let r = pollster::block_on(helper.gradients(work));
                    async move { r }
                }))
                .unwrap();
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

    /// A helper that fails costs no step: this worker computes the second half itself and
    /// says why, and the run is the same as with a helper.
    #[test]
    fn a_failed_helper_loses_no_step() {
        let spec = spec("causal_lm");
        let mut one = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let mut two = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        one.step();
        let failure = pollster::block_on(two.split_step(|_| async { Err::<HelperReply, _>("the helper stopped".to_string()) })).unwrap();
        assert_eq!(failure.as_deref(), Some("the helper stopped"));
        assert_eq!(two.step_count(), 1);
        let (wa, wb) = (weights(&one), weights(&two));
        assert!(wa.iter().zip(&wb).all(|(x, y)| (x - y).abs() < 1e-4));
    }

    /// An answer for another model is refused, not added in the wrong places.
    #[test]
    fn a_wrong_sized_answer_is_refused() {
        let spec = spec("causal_lm");
        let mut t = Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap();
        let bad = HelperReply { grads: vec![0.0; 3], present: vec![true; 2], loss: 0.0, busy_ms: 0.0 };
        let e = pollster::block_on(t.split_step(|_| async move { Ok(bad) })).unwrap_err();
        assert!(e.contains("another model") || e.contains("too short"), "{e}");
        // the run keeps its model
        assert_eq!(weights(&t).len(), weights(&Trainer::new(&spec, 0, corpus(), Device::flex()).unwrap()).len());
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
