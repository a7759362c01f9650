//! AdamW with global-norm gradient clipping, written for fusion.
//!
//! The update is AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR
//! 2019), the same update as burn's `AdamW` and `torch.optim.AdamW`; the clipping is
//! `torch.nn.utils.clip_grad_norm_` (nanoGPT clips at 1.0). Why not burn's optimizer plus a
//! clipping pass: on the GPU a small model is bound by kernel launches, not FLOPs, and the
//! pass added the partial norms one launch each between the reductions and multiplied every
//! gradient apart from its update. Here two hand-written GPU kernels do it: the squared sums of six
//! gradients per launch (`sum_squares.rs`), then one launch per two parameters for their whole
//! update — clip scale, both moments, bias correction, decay (`adamw_update.rs`). From 142
//! launches per baby-GPT step (burn's optimizer plus clipping) to 19 (docs/performance.md). No
//! value is read back: the norm stays on the device. On the CPU both run as loops.
//!
//! A step maps the module twice: the first pass takes every parameter that has a gradient out
//! of the module (leaving its gradient in its place, so that the parameter's buffer has one
//! holder and the kernel updates it in place), the updates run two by two, and the second pass
//! puts the updated parameters back.

mod adamw_update;
mod sum_squares;

pub use adamw_update::{AdamWOps, ParamUpdate, STEP_VALUES, StepConstants, adamw_update_all, adamw_update_all_with};
pub use sum_squares::{GROUP, PARTS, SumSquaresOps, add_and_square, partial_sums_of_squares, partials_of_sums, squares};

/// Whether a kernel may write into `t`'s buffer in place: nothing else holds the buffer, and it
/// was made on the command stream of the calling thread. cubecl gives each thread its own
/// stream and records on a buffer's handle the stream that made it, so that a reader on another
/// stream first waits for that one. A write in place from a second stream is not recorded: a
/// later reader on the first stream would not wait for it, and read the old values or half of
/// the new (steps moved to a second thread trained to other weights, docs/performance.md "Known
/// problems"; `an_update_in_place_on_another_thread_is_seen_by_the_first` in
/// engine/tests/training.rs). A copy made here belongs to this stream, so readers wait for it.
pub(crate) fn writable_in_place(t: &burn_cubecl::tensor::CubeTensor) -> bool {
    t.can_mut() && t.handle.stream == cubecl_environment::stream::StreamId::current()
}

use std::collections::HashMap;

use burn::backend::DispatchTensor;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

/// AdamW's settings (PyTorch's names and defaults, except those the spec sets).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Global gradient norm above which all gradients are scaled down together; 0 = off.
    pub grad_clip: f64,
}

/// The optimiser of one run: its settings, the step count and both moments of every parameter.
pub struct AdamW {
    config: AdamWConfig,
    /// Steps taken (the bias corrections use it).
    time: i32,
    /// Each parameter's state: its first moment then its second, flattened (`[2·n]`), so that
    /// the GPU kernel binds one buffer for both.
    moments: HashMap<ParamId, Tensor<1>>,
    /// Zeros on the parameters' device, made once: the start of the gradient norm's partial
    /// sums ([GROUP, PARTS]) and the filler of its last group ([1]).
    zeros: Option<(Tensor<2>, Tensor<1>)>,
    /// The step's values the update reads from the device ([`StepConstants::step_values`]):
    /// one buffer, written in place each step, so that a captured step's replay reads this
    /// step's (`train::captured_step`).
    step_values: Option<Tensor<1>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, time: 0, moments: HashMap::new(), zeros: None, step_values: None }
    }

    /// One update of every parameter of `module` that has a gradient in `grads`.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.update_with(StepValues::Advance(lr), module, grads, None)
    }

    /// [`AdamW::step`] with the gradients' partial sums of squares, where they are at hand, as
    /// [`partial_sums_of_squares`] lays them out ([`partials_of_sums`]): the split step has
    /// them from its pass that adds the workers' gradients, so clipping needs no pass of its own.
    /// `None`: clipping sums them itself, as in [`AdamW::step`].
    // squares: [GROUP, PARTS]
    pub fn step_with_squares<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams, squares: Option<Tensor<2>>) -> M {
        self.update_with(StepValues::Advance(lr), module, grads, squares)
    }

    /// The update of a step whose values [`AdamW::advance`] has written: [`AdamW::step`]
    /// without uploading anything, which a capture could not record (`train::captured_step`).
    pub fn update<M: Module>(&mut self, constants: StepConstants, module: M, grads: GradientsParams) -> M {
        self.update_with(StepValues::Written(constants), module, grads, None)
    }

    fn update_with<M: Module>(&mut self, values: StepValues, module: M, mut grads: GradientsParams, squares: Option<Tensor<2>>) -> M {
        let clip = self.config.grad_clip > 0.0;
        let partials = match squares {
            Some(squares) if clip && !grads.is_empty() => Some(squares),
            _ => squared_norm_partials(&module, &grads, &mut self.zeros, clip),
        };
        let Some(partials) = partials else { return module };
        let constants = match values {
            StepValues::Advance(lr) => self.advance(lr, &partials.device(), false),
            StepValues::Written(constants) => constants,
        };
        let step_values = self.step_values.clone().expect("advance wrote the step's values");
        let mut take = Take { grads: &mut grads, moments: &mut self.moments, taken: Vec::new() };
        let module = module.map(&mut take);
        let (ids, updates): (Vec<_>, Vec<_>) = take.taken.into_iter().unzip();
        let mut updated = HashMap::with_capacity(ids.len());
        for ((id, require_grad), (param, state)) in ids.into_iter().zip(adamw_update_all_with(updates, &partials, &step_values, constants)) {
            self.moments.insert(id, Tensor::from_dispatch(state));
            updated.insert(id, (param, require_grad));
        }
        module.map(&mut PutBack { updated })
    }

    /// Counts one more step and puts its values (learning rate and bias corrections) on the
    /// device for the update: what [`AdamW::step`] does first (a new buffer: an upload, no
    /// launch), and all a replayed step (`train::captured_step`, whose graph holds the update's
    /// launches) needs from the host: `in_place` writes them into the buffer the graph
    /// recorded (one copy). `device`: the gradients' (plain) device.
    pub fn advance(&mut self, lr: f64, device: &Device, in_place: bool) -> StepConstants {
        self.time += 1;
        let c = &self.config;
        let constants = StepConstants {
            beta1: c.beta1,
            beta2: c.beta2,
            epsilon: c.epsilon,
            decay: 1.0 - lr * c.weight_decay,
            step_size: lr / (1.0 - c.beta1.powi(self.time)),
            bias2: 1.0 - c.beta2.powi(self.time),
            max_norm: c.grad_clip,
        };
        let values = constants.step_values(device);
        #[allow(clippy::single_range_in_vec_init)] // burn's slice of a 1-D tensor: one range
        match &mut self.step_values {
            Some(buffer) if in_place => buffer.inplace(|b| b.slice_assign([0..STEP_VALUES], values)),
            _ => self.step_values = Some(values),
        }
        constants
    }

    /// Takes back the count of the last [`AdamW::advance`] (a replay that failed: the step
    /// is then taken with [`AdamW::step`], which counts it again).
    pub fn retreat(&mut self) {
        self.time -= 1;
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The optimiser's state for a copy of the run elsewhere (the tab's helper worker): the
    /// step count, whether each float parameter of `module` has moments (in visiting order),
    /// and those moments, m then v of each, flattened.
    pub fn moments_in_order<M: Module>(&self, module: &M) -> (i32, Vec<bool>, Vec<Tensor<1>>) {
        struct Collect<'a> {
            moments: &'a HashMap<ParamId, Tensor<1>>,
            present: Vec<bool>,
            found: Vec<Tensor<1>>,
        }
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let state = self.moments.get(&param.id);
                self.present.push(state.is_some());
                self.found.extend(state.cloned());
            }
        }
        let mut c = Collect { moments: &self.moments, present: Vec::new(), found: Vec::new() };
        module.visit(&mut c);
        (self.time, c.present, c.found)
    }

    /// Takes the state [`AdamW::moments_in_order`] gave (its moments read into `flat`) for
    /// `module`, a copy of the model it came from, on `device` (the parameters' device without
    /// gradients, where the moments live). Returns how many values of `flat` it used.
    pub fn load_moments<M: Module>(&mut self, module: &M, time: i32, present: &[bool], flat: &[f32], device: &Device) -> Result<usize, String> {
        struct Load<'a> {
            present: &'a [bool],
            flat: &'a [f32],
            device: &'a Device,
            index: usize,
            at: usize,
            moments: HashMap<ParamId, Tensor<1>>,
            error: Option<String>,
        }
        impl ModuleVisitor for Load<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let has = self.present.get(self.index).copied();
                self.index += 1;
                match has {
                    Some(true) => {
                        let n = 2 * param.val().shape().num_elements();
                        let Some(values) = self.flat.get(self.at..self.at + n) else {
                            self.error = Some("the optimiser's moments are too short".into());
                            return;
                        };
                        self.at += n;
                        let state = Tensor::<1>::from_data(TensorData::new(values.to_vec(), [n]), self.device);
                        self.moments.insert(param.id, state);
                    }
                    Some(false) => {}
                    None => self.error = Some("the optimiser's state is for another model".into()),
                }
            }
        }
        let mut load = Load { present, flat, device, index: 0, at: 0, moments: HashMap::new(), error: None };
        module.visit(&mut load);
        if load.error.is_none() && load.index != present.len() {
            load.error = Some("the optimiser's state is for another model".into());
        }
        if let Some(e) = load.error {
            return Err(e);
        }
        self.time = time;
        self.moments = load.moments;
        Ok(load.at)
    }
}

/// How [`AdamW::update_with`] gets the step's values: written now for this learning rate, or
/// already written by [`AdamW::advance`].
enum StepValues {
    Advance(f64),
    Written(StepConstants),
}

/// The partial sums of the squares of all gradients, [GROUP, PARTS] on the device (they add up
/// to ‖g‖²); zeros, which the update does not read, when `clip` is off; `None` when the module
/// has no gradient.
fn squared_norm_partials<M: Module>(module: &M, grads: &GradientsParams, zeros: &mut Option<(Tensor<2>, Tensor<1>)>, clip: bool) -> Option<Tensor<2>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        found: Vec<burn::backend::DispatchTensor>,
        device: Option<burn::tensor::Device>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.device.get_or_insert_with(|| g.device());
                self.found.push(g.into_dispatch());
            }
        }
    }
    let mut collect = Collect { grads, found: Vec::new(), device: None };
    module.visit(&mut collect);
    let device = collect.device?;
    let (start, filler) = zeros.get_or_insert_with(|| (Tensor::zeros([GROUP, PARTS], &device), Tensor::zeros([1], &device)));
    if !clip {
        return Some(start.clone());
    }
    // Four gradients' squared sums per launch (sum_squares.rs).
    Some(partial_sums_of_squares(collect.found, start, filler))
}

/// The first pass: takes each parameter that has a gradient out of the module, with its
/// gradient and state, and leaves the gradient in its place until [`PutBack`].
struct Take<'a> {
    grads: &'a mut GradientsParams,
    moments: &'a mut HashMap<ParamId, Tensor<1>>,
    /// (the parameter's id and whether it required a gradient, what to update)
    taken: Vec<((ParamId, bool), ParamUpdate)>,
}

impl ModuleMapper for Take<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        // g, p: the parameter's shape; state: [2·n], m then v, starting at zero
        let state = self.moments.remove(&id).unwrap_or_else(|| Tensor::zeros([2 * grad.shape().num_elements()], &grad.device()));
        let stand_in = Tensor::from_inner(grad.clone());
        let update = ParamUpdate { param: tensor.inner().into_dispatch(), grad: grad.into_dispatch(), state: state.into_dispatch() };
        self.taken.push(((id, require_grad), update));
        Param::from_mapped_value(id, stand_in, mapper)
    }
}

/// The second pass: the updated parameters in place of the gradients [`Take`] left.
struct PutBack {
    updated: HashMap<ParamId, (DispatchTensor, bool)>,
}

impl ModuleMapper for PutBack {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((updated, require_grad)) = self.updated.remove(&param.id) else { return param };
        let (id, _stand_in, mapper) = param.consume();
        let updated = Tensor::<D>::from_inner(Tensor::from_dispatch(updated));
        Param::from_mapped_value(id, if require_grad { updated.require_grad() } else { updated }, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::AdamWConfig as BurnAdamW;
    use burn::tensor::{Device, Distribution, TensorData};

    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
    }

    fn net(device: &Device) -> Net {
        Net { a: LinearConfig::new(6, 5).init(device), b: LinearConfig::new(5, 3).init(device) }
    }

    fn loss(net: &Net, x: Tensor<2>) -> Tensor<1> {
        net.b.forward(net.a.forward(x).tanh()).powi_scalar(2).mean()
    }

    fn weights(net: &Net) -> Vec<f32> {
        [net.a.weight.val(), net.b.weight.val()]
            .into_iter()
            .flat_map(|w| w.into_data().try_to_vec::<f32>().unwrap())
            .chain(net.a.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    /// Three steps of this AdamW and of burn's `AdamW` from the same weights, with the
    /// global-norm clipping computed by hand (burn's own clipping is per parameter).
    fn compare(max_norm: f64) {
        let device = Device::flex().autodiff();
        let config = AdamWConfig { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weight_decay: 0.1, grad_clip: max_norm };
        let mut ours = AdamW::new(config);
        let mut theirs = BurnAdamW::new().with_beta_1(0.9).with_beta_2(0.99).with_epsilon(1e-8).with_weight_decay(0.1).init();
        let mut a = net(&device);
        let mut b = a.clone();
        let start = weights(&a);
        for step in 0..3 {
            let x = Tensor::<2>::random([4, 6], Distribution::Normal(0.0, 3.0), &device);
            let lr = 0.05 * (step + 1) as f64;
            let grads = GradientsParams::from_grads(loss(&a, x.clone()).backward(), &a);
            a = ours.step(lr, a, grads);
            let mut grads = GradientsParams::from_grads(loss(&b, x).backward(), &b);
            if max_norm > 0.0 {
                clip_by_hand(&b, &mut grads, max_norm);
            }
            b = theirs.step(lr, b, grads);
        }
        let (wa, wb) = (weights(&a), weights(&b));
        assert!(wa.iter().zip(&wb).all(|(x, y)| (x - y).abs() < 1e-5), "{wa:?}\n{wb:?}");
        // and the weights did move
        assert!(wa.iter().zip(&start).any(|(x, y)| (x - y).abs() > 1e-3));
    }

    /// The global-norm clipping computed on the host, the reference for `clip_scale`.
    fn clip_by_hand(net: &Net, grads: &mut GradientsParams, max_norm: f64) {
        struct Collect<'a>(&'a GradientsParams, f64);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1 += g.into_data().try_to_vec::<f32>().unwrap().iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
                }
            }
        }
        let mut c = Collect(grads, 0.0);
        net.visit(&mut c);
        let scale = (max_norm / (c.1.sqrt() + 1e-6)).min(1.0);
        assert!(scale < 1.0, "the test's gradients should be clipped");
        struct Scale<'a>(&'a mut GradientsParams, f64);
        impl ModuleVisitor for Scale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.remove::<D>(param.id) {
                    self.0.register(param.id, g.mul_scalar(self.1));
                }
            }
        }
        net.visit(&mut Scale(grads, scale));
    }

    #[test]
    fn matches_burns_adamw() {
        compare(0.0);
    }

    #[test]
    fn matches_burns_adamw_with_global_norm_clipping() {
        compare(0.01);
    }

    /// Under the clipping norm, clipped and unclipped steps are the same.
    #[test]
    fn no_clipping_under_the_norm() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.01f32; 6], [1, 6]), &device);
        let config = |grad_clip| AdamWConfig { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weight_decay: 0.1, grad_clip };
        let a = net(&device);
        let grads = |n: &Net| GradientsParams::from_grads(loss(n, x.clone()).backward(), n);
        let clipped = AdamW::new(config(1e3)).step(0.1, a.clone(), grads(&a));
        let plain = AdamW::new(config(0.0)).step(0.1, a.clone(), grads(&a));
        assert_eq!(weights(&clipped), weights(&plain));
    }
}
