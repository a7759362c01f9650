//! AdamW's update, clip scale included: two parameters per GPU launch.
//!
//! Why a hand-written kernel: fusion compiled most parameters' update chains into one kernel
//! each, but broke some into three (an unfused multiply and scalar op where the [1] clip scale
//! met the gradient), and computing the clip scale itself took a fused addition, two reduction
//! passes and another fused kernel. Here one launch updates two parameters: it adds up the
//! gradient norm's partial sums (`sum_squares.rs`), applies the clip, and updates both moments
//! and the parameter (docs/performance.md: half the launches of one per parameter, after ~20
//! fewer when the kernel replaced fusion's chains). A lone parameter runs the same kernel. Each parameter's two moments live in one buffer,
//! its *state* `[m, v]` (flattened: `[2·n]` for a parameter of n elements), so that a pair binds
//! seven storage buffers (p, g, state twice, and the partial sums): WebGPU's default limit is
//! eight. The parameter and its state are updated in place when nothing else holds them
//! (copied first otherwise). The values that change from step to step (1 − lr·λ,
//! lr / (1 − β1ᵗ), 1 − β2ᵗ) follow the partial sums in that buffer rather than being scalar
//! arguments, which a captured step's replay would repeat (`train::captured_step`).
//!
//! As in `sum_squares.rs`: flex runs a loop per parameter (the composed default body, the same
//! arithmetic in burn operations, is the reference of the tests), the cubecl backend the
//! kernel, fusion the kernel as one opaque operation.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DType, Dispatch, DispatchTensor, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Device, Shape, Slice, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_flex::FlexTensor;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

/// The constants of one step, shared by every parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepConstants {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// 1 − lr·weight_decay (decoupled decay)
    pub decay: f64,
    /// lr / (1 − β1ᵗ)
    pub step_size: f64,
    /// 1 − β2ᵗ
    pub bias2: f64,
    /// The global gradient norm above which all gradients are scaled down; 0 = no clipping.
    pub max_norm: f64,
}

/// The constants of a run (the same every step), which the launches take as scalars; the
/// step's own values travel in the partial sums' tail (`STEP_VALUES`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct RunConstants {
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    max_norm: f64,
}

/// One parameter to update: the parameter, its gradient (the same shape) and its state `[m, v]`
/// (`[2·n]`), as backend tensors of any rank.
pub struct ParamUpdate {
    pub param: DispatchTensor,
    pub grad: DispatchTensor,
    pub state: DispatchTensor,
}

/// (p, [m, v]) ← AdamW(p, g, [m, v]) with g scaled by min(1, max_norm / (‖g‖ + 1e-6)), where
/// ‖g‖² is the sum of `partials` (the whole model's gradient norm), for every parameter of
/// `updates`: two per launch. Returns the updated (parameter, state) of each, in order.
pub fn adamw_update_all(updates: Vec<ParamUpdate>, partials: &Tensor<2>, c: StepConstants) -> Vec<(DispatchTensor, DispatchTensor)> {
    adamw_update_all_with(updates, partials, &c.step_values(&partials.device()), c)
}

/// [`adamw_update_all`] with the step's values (`[STEP_VALUES]`, [`StepConstants::step_values`])
/// read from a device tensor instead of `c`'s: a captured step (`train::captured_step`) writes
/// them into the same buffer before each replay, as the values recorded in a launch would stay
/// those of the step that recorded it. `c`'s β1, β2, ε and clip norm are the run's.
pub fn adamw_update_all_with(updates: Vec<ParamUpdate>, partials: &Tensor<2>, step: &Tensor<1>, c: StepConstants) -> Vec<(DispatchTensor, DispatchTensor)> {
    // partials: [GROUP, PARTS] -> [GROUP·PARTS + STEP_VALUES], the step's values after the sums
    let n = partials.shape().num_elements();
    let tail = Tensor::cat(vec![partials.clone().reshape([n]), step.clone()], 0);
    let mut out = Vec::with_capacity(updates.len());
    let mut updates = updates.into_iter();
    while let Some(a) = updates.next() {
        let tail = tail.clone().into_dispatch();
        match updates.next() {
            Some(b) => {
                let (pa, sa, pb, sb) =
                    <Dispatch as AdamWOps>::adamw_update_pair(a.param, a.grad, a.state, b.param, b.grad, b.state, tail, c.beta1, c.beta2, c.epsilon, c.max_norm);
                out.extend([(pa, sa), (pb, sb)]);
            }
            None => out.push(<Dispatch as AdamWOps>::adamw_update(a.param, a.grad, a.state, tail, c.beta1, c.beta2, c.epsilon, c.max_norm)),
        }
    }
    out
}

/// The values of [`StepConstants`] that change from step to step, in the order the update
/// reads them after the partial sums: 1 − lr·λ, lr / (1 − β1ᵗ), 1 − β2ᵗ.
pub const STEP_VALUES: usize = 3;

impl StepConstants {
    /// The step's values on `device`, `[STEP_VALUES]`: a new buffer (an upload, no launch).
    pub fn step_values(&self, device: &Device) -> Tensor<1> {
        let values = [self.decay as f32, self.step_size as f32, self.bias2 as f32];
        Tensor::<1>::from_data(TensorData::new(values.to_vec(), [STEP_VALUES]), device)
    }
}

#[backend_extension(Flex, Cube, Fusion)]
pub trait AdamWOps: Backend {
    /// The updated (parameter, state).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = same_shapes)]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        state: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let c = RunConstants { beta1, beta2, epsilon, max_norm };
        composed::<Self>(param, grad, state, partials, c)
    }

    /// Two parameters' updates at once: (parameter a, state a, parameter b, state b).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = pair_shapes)]
    fn adamw_update_pair(
        param_a: FloatTensor<Self>,
        grad_a: FloatTensor<Self>,
        state_a: FloatTensor<Self>,
        param_b: FloatTensor<Self>,
        grad_b: FloatTensor<Self>,
        state_b: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let c = RunConstants { beta1, beta2, epsilon, max_norm };
        one_by_one::<Self>([param_a, grad_a, state_a], [param_b, grad_b, state_b], partials, c)
    }
}

/// A pair's updates as two single ones ([`AdamWOps::adamw_update`]): (parameter a, state a,
/// parameter b, state b).
fn one_by_one<B: AdamWOps>(a: [FloatTensor<B>; 3], b: [FloatTensor<B>; 3], partials: FloatTensor<B>, c: RunConstants) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let one = |[param, grad, state]: [FloatTensor<B>; 3], partials| B::adamw_update(param, grad, state, partials, c.beta1, c.beta2, c.epsilon, c.max_norm);
    let (pa, sa) = one(a, partials.clone());
    let (pb, sb) = one(b, partials);
    (pa, sa, pb, sb)
}

#[allow(clippy::too_many_arguments)]
fn same_shapes(
    param: &TensorSpec,
    _grad: &TensorSpec,
    state: &TensorSpec,
    _partials: &TensorSpec,
    _beta1: &f64,
    _beta2: &f64,
    _epsilon: &f64,
    _max_norm: &f64,
) -> (TensorSpec, TensorSpec) {
    (param.clone(), state.clone())
}

#[allow(clippy::too_many_arguments)]
fn pair_shapes(
    param_a: &TensorSpec,
    _grad_a: &TensorSpec,
    state_a: &TensorSpec,
    param_b: &TensorSpec,
    _grad_b: &TensorSpec,
    state_b: &TensorSpec,
    _partials: &TensorSpec,
    _beta1: &f64,
    _beta2: &f64,
    _epsilon: &f64,
    _max_norm: &f64,
) -> (TensorSpec, TensorSpec, TensorSpec, TensorSpec) {
    (param_a.clone(), state_a.clone(), param_b.clone(), state_b.clone())
}

/// The update in burn operations (the reference of the tests, and the fallback for other
/// dtypes or mismatched shapes).
// partials: [n_partials + STEP_VALUES], the sums of squares then the step's values
fn composed<B: Backend>(param: FloatTensor<B>, grad: FloatTensor<B>, state: FloatTensor<B>, partials: FloatTensor<B>, c: RunConstants) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = param.shape();
    let n = shape.num_elements();
    let ones = Shape::from(vec![1; shape.num_dims()]);
    let total = partials.shape().num_elements();
    let partials = B::float_reshape(partials, Shape::new([total]));
    // the step's values, each shaped [1, …, 1] to broadcast over the parameter
    let value = |k: usize| B::float_reshape(B::float_slice(partials.clone(), &[Slice::from(total - STEP_VALUES + k..total - STEP_VALUES + k + 1)]), ones.clone());
    let (decay, step_size, bias2) = (value(0), value(1), value(2));
    let partials = B::float_slice(partials, &[Slice::from(0..total - STEP_VALUES)]);
    let state = B::float_reshape(state, Shape::new([2 * n]));
    let m = B::float_reshape(B::float_slice(state.clone(), &[Slice::from(0..n)]), shape.clone());
    let v = B::float_reshape(B::float_slice(state, &[Slice::from(n..2 * n)]), shape.clone());
    let g = if c.max_norm > 0.0 {
        // min(1, max_norm / (√Σ + 1e-6)), shaped [1, …, 1] to broadcast over the parameter
        let total = B::float_sum(partials);
        let scale = B::float_clamp_max(
            B::float_mul_scalar(B::float_recip(B::float_add_scalar(B::float_sqrt(total), 1e-6.into())), c.max_norm.into()),
            1.0.into(),
        );
        B::float_mul(grad, B::float_reshape(scale, ones))
    } else {
        grad
    };
    let m = B::float_add(B::float_mul_scalar(m, c.beta1.into()), B::float_mul_scalar(g.clone(), (1.0 - c.beta1).into()));
    let v = B::float_add(B::float_mul_scalar(v, c.beta2.into()), B::float_mul_scalar(B::float_mul(g.clone(), g), (1.0 - c.beta2).into()));
    // p ← p·(1 − lr·λ) − lr · m̂ / (√v̂ + ε), with m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ)
    let denominator = B::float_add_scalar(B::float_sqrt(B::float_div(v.clone(), bias2)), c.epsilon.into());
    let step = B::float_div(B::float_mul(m.clone(), step_size), denominator);
    let p = B::float_sub(B::float_mul(param, decay), step);
    let flat = |t| B::float_reshape(t, Shape::new([n]));
    (p, B::float_cat(vec![flat(m), flat(v)], 0))
}

/// On the CPU, one pass over each parameter's arrays (`Update`), instead of the composed
/// body's eleven operations, each of which allocated and wrote a whole new tensor. A pair is
/// two passes (the trait's default): the CPU gains nothing from fewer calls.
impl AdamWOps for Flex {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        state: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let c = RunConstants { beta1, beta2, epsilon, max_norm };
        let shape = param.layout().shape().clone();
        let f32s = [&param, &grad, &state, &partials].iter().all(|t| t.dtype() == DType::F32);
        if !f32s || *grad.layout().shape() != shape || state.layout().num_elements() != 2 * shape.num_elements() {
            return composed::<Self>(param, grad, state, partials, c);
        }
        // The clip scale from the partial sums of squares, in f32 as the composed body has it,
        // and the step's values after them.
        let partials = owned(partials);
        let (sums, step) = partials.storage::<f32>().split_at(partials.layout().num_elements() - STEP_VALUES);
        let scale = if max_norm > 0.0 {
            let total: f32 = sums.iter().sum();
            ((1.0 / (total.sqrt() + 1e-6)) * max_norm as f32).min(1.0)
        } else {
            1.0
        };
        let step = [step[0], step[1], step[2]];
        let grad = crate::cpu_loops::contiguous(grad);
        let [mut param, mut state] = [param, state].map(owned);
        let (m, v) = state.storage_mut::<f32>().split_at_mut(shape.num_elements());
        let update = Update { p: param.storage_mut::<f32>(), g: grad.as_slice::<f32>().expect("contiguous f32"), m, v, scale, c, step };
        crate::cpu_loops::vectorized(update);
        (param, state)
    }
}

/// `t` as a tensor that owns exactly its elements, in order: itself when it already does, a
/// contiguous copy otherwise (a view, or a buffer something else holds: `storage_mut` copies it
/// then, and the holder keeps the old values).
fn owned(t: FlexTensor) -> FlexTensor {
    if crate::cpu_loops::owns_its_elements(&t) { t } else { t.to_contiguous() }
}

/// One parameter's AdamW step on the CPU, element by element, in the composed body's order of
/// f32 operations.
struct Update<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    /// the clip scale, 1 without clipping (g · 1 is g exactly)
    scale: f32,
    c: RunConstants,
    /// 1 − lr·λ, lr / (1 − β1ᵗ), 1 − β2ᵗ
    step: [f32; STEP_VALUES],
}

impl crate::cpu_loops::Kernel for Update<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let c = self.c;
        let (b1, b1c, b2, b2c) = (c.beta1 as f32, (1.0 - c.beta1) as f32, c.beta2 as f32, (1.0 - c.beta2) as f32);
        let eps = c.epsilon as f32;
        let [decay, step_size, bias2] = self.step;
        for (((p, &g), m), v) in self.p.iter_mut().zip(self.g).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            let g = g * self.scale;
            *m = *m * b1 + g * b1c;
            *v = *v * b2 + g * g * b2c;
            *p = *p * decay - *m * step_size / ((*v / bias2).sqrt() + eps);
        }
    }
}

/// Whether the kernel can take this parameter: f32 throughout, the gradient of its shape and a
/// state of twice its elements.
fn kernel_fits(param: &CubeTensor, grad: &CubeTensor, state: &CubeTensor) -> bool {
    [param, grad, state].iter().all(|t| t.dtype == DType::F32)
        && grad.meta.shape() == param.meta.shape()
        && state.meta.num_elements() == 2 * param.meta.num_elements()
}

/// Invocations per workgroup.
const UNITS: usize = 256;

impl AdamWOps for CubeBackend {
    /// The pair kernel with a stand-in for the second parameter that no invocation touches:
    /// one kernel for both (one shader to compile in the page, not two).
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        state: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let c = RunConstants { beta1, beta2, epsilon, max_norm };
        if partials.dtype != DType::F32 || !kernel_fits(&param, &grad, &state) {
            return composed::<Self>(param, grad, state, partials, c);
        }
        let [param, state, ..] = launch([param, grad, state], None, partials, c);
        (param, state)
    }

    fn adamw_update_pair(
        param_a: FloatTensor<Self>,
        grad_a: FloatTensor<Self>,
        state_a: FloatTensor<Self>,
        param_b: FloatTensor<Self>,
        grad_b: FloatTensor<Self>,
        state_b: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let c = RunConstants { beta1, beta2, epsilon, max_norm };
        let (a, b) = ([param_a, grad_a, state_a], [param_b, grad_b, state_b]);
        if partials.dtype != DType::F32 || !kernel_fits(&a[0], &a[1], &a[2]) || !kernel_fits(&b[0], &b[1], &b[2]) {
            return one_by_one::<Self>(a, b, partials, c);
        }
        let [param_a, state_a, param_b, state_b] = launch(a, Some(b), partials, c);
        (param_a, state_a, param_b, state_b)
    }
}

/// One launch of the pair kernel over parameters a and b ([parameter, gradient, state] each),
/// or a alone, with a one-element stand-in bound for b: (parameter a, state a, parameter b,
/// state b). One index addresses the same element in a parameter, its gradient and each half of
/// its state: all contiguous, the parameter and state writable.
fn launch(a: [CubeTensor; 3], b: Option<[CubeTensor; 3]>, partials: CubeTensor, c: RunConstants) -> [CubeTensor; 4] {
    let len_b = b.as_ref().map_or(0, |[param, ..]| param.meta.num_elements());
    let [param_a, grad_a, state_a] = a;
    let stand_in = || burn_cubecl::ops::numeric::empty_device_dtype(param_a.client.clone(), param_a.device.clone(), Shape::new([1]), DType::F32);
    let [param_b, grad_b, state_b] = b.unwrap_or_else(|| [stand_in(), stand_in(), stand_in()]);
    let [param_a, state_a, param_b, state_b] = [param_a, state_a, param_b, state_b].map(writable);
    let [grad_a, grad_b, partials] = [grad_a, grad_b, partials].map(into_contiguous);
    let len_a = param_a.meta.num_elements();
    let client = param_a.client.clone();
    // SAFETY (unchecked): each parameter and gradient has len elements and its state 2·len
    // (`kernel_fits`), partials n_partials + STEP_VALUES; invocations past len_a + len_b stop,
    // and b's one-element stand-ins are never read when len_b = 0.
    unsafe {
        kernel::adamw_pair_kernel::launch_unchecked(
            &client,
            CubeCount::Static((len_a + len_b).div_ceil(UNITS).max(1) as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            param_a.clone().into_tensor_arg(),
            grad_a.into_tensor_arg(),
            state_a.clone().into_tensor_arg(),
            param_b.clone().into_tensor_arg(),
            grad_b.into_tensor_arg(),
            state_b.clone().into_tensor_arg(),
            partials.clone().into_tensor_arg(),
            len_a as u32,
            len_b as u32,
            (partials.meta.num_elements() - STEP_VALUES) as u32,
            c.beta1 as f32,
            c.beta2 as f32,
            c.epsilon as f32,
            c.max_norm as f32,
            ElemType::Float(FloatKind::F32),
        );
    }
    [param_a, state_a, param_b, state_b]
}

/// The tensor itself when it is contiguous and may be written in place
/// ([`super::writable_in_place`]); a contiguous copy otherwise (the kernel writes into it).
fn writable(t: CubeTensor) -> CubeTensor {
    let t = into_contiguous(t);
    if super::writable_in_place(&t) { t } else { t.copy() }
}

mod kernel {
    use cubecl::prelude::*;

    /// Two parameters in one launch: invocations 0..len_a update a, the next len_b update b
    /// (none for a lone parameter, len_b = 0).
    // param_a, grad_a: [len_a]; state_a: [2·len_a]; the same for b with len_b;
    // partials: [n_partials + 3], the sums of squares, then 1 − lr·λ, lr / (1 − β1ᵗ), 1 − β2ᵗ
    #[allow(clippy::too_many_arguments)]
    #[cube(launch_unchecked)]
    pub(super) fn adamw_pair_kernel<F: Float>(
        param_a: &mut Tensor<F>,
        grad_a: &Tensor<F>,
        state_a: &mut Tensor<F>,
        param_b: &mut Tensor<F>,
        grad_b: &Tensor<F>,
        state_b: &mut Tensor<F>,
        partials: &Tensor<F>,
        len_a: u32,
        len_b: u32,
        n_partials: u32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        max_norm: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        // The clipping scale once per workgroup (a sum over every partial), not per element:
        // read by all from shared memory. Before any invocation leaves (the barrier).
        let mut shared_scale = Shared::<[F]>::new_slice(1usize);
        if UNIT_POS_X == 0 {
            shared_scale[0] = clip_scale::<F>(partials, n_partials, max_norm);
        }
        sync_cube();
        let i = ABSOLUTE_POS_X;
        if i >= len_a + len_b {
            terminate!();
        }
        let scale = shared_scale[0];
        let decay = partials[n_partials as usize];
        let step_size = partials[n_partials as usize + 1];
        let bias2 = partials[n_partials as usize + 2];
        if i < len_a {
            step::<F>(param_a, grad_a, state_a, i as usize, len_a as usize, scale, beta1, beta2, epsilon, decay, step_size, bias2);
        } else {
            step::<F>(param_b, grad_b, state_b, (i - len_a) as usize, len_b as usize, scale, beta1, beta2, epsilon, decay, step_size, bias2);
        }
    }

    /// min(1, max_norm / (√Σ partials + 1e-6)); 1 without clipping (max_norm 0).
    #[cube]
    fn clip_scale<F: Float>(partials: &Tensor<F>, n_partials: u32, max_norm: f32) -> F {
        let max_norm = F::cast_from(max_norm);
        let mut scale = F::new(1.0);
        if max_norm > F::new(0.0) {
            let mut total = F::new(0.0);
            for k in 0..n_partials {
                total += partials[k as usize];
            }
            scale = min(F::new(1.0), max_norm / (total.sqrt() + F::new(1e-6)));
        }
        scale
    }

    /// Element i of one parameter: m and v from the clipped gradient, then the parameter.
    #[allow(clippy::too_many_arguments)]
    #[cube]
    fn step<F: Float>(
        param: &mut Tensor<F>,
        grad: &Tensor<F>,
        state: &mut Tensor<F>,
        i: usize,
        len: usize,
        scale: F,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        decay: F,
        step_size: F,
        bias2: F,
    ) {
        let beta1 = F::cast_from(beta1);
        let beta2 = F::cast_from(beta2);
        let one = F::new(1.0);
        let g = grad[i] * scale;
        let m_new = beta1 * state[i] + (one - beta1) * g;
        let v_new = beta2 * state[len + i] + (one - beta2) * g * g;
        state[i] = m_new;
        state[len + i] = v_new;
        param[i] = param[i] * decay - step_size * m_new / ((v_new / bias2).sqrt() + F::cast_from(epsilon));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// flex's one-pass loop against the composed body on flex, with and without clipping, for
    /// a pair and a lone parameter: one whose buffer is shared (which must keep its values),
    /// a transposed gradient, a state that is a view of a longer tensor.
    #[test]
    fn the_cpu_loop_matches_the_composed_update() {
        let device = Device::flex();
        let mut rng = crate::rng::Rng::seeded(9);
        let data: Vec<Vec<f32>> = (0..5).map(|_| (0..2 * 30 * 20 + 8).map(|_| rng.normal() as f32).collect()).collect();
        let t = |i: usize, shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(data[i][..shape[0] * shape[1]].to_vec(), shape), &device);
        let flat = |i: usize, n: usize| Tensor::<1>::from_data(TensorData::new(data[i][..n].to_vec(), [n]), &device);
        for max_norm in [0.0, 1.0, 1e6] {
            let c = StepConstants { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, decay: 0.99, step_size: 0.05, bias2: 0.02, max_norm };
            // (p, g, state) of a [30, 20] and a [7, 3] parameter; v ≥ 0 in each state
            let inputs = || {
                let state_a = Tensor::cat(vec![flat(2, 600), flat(3, 600).abs()], 0);
                let state_b = Tensor::cat(vec![flat(4, 21), flat(1, 29).abs()], 0).slice(0..42);
                let a = (t(0, [30, 20]), t(1, [20, 30]).transpose(), state_a);
                let b = (t(3, [7, 3]), t(2, [7, 3]), state_b);
                (a, b, t(4, [4, 8]).abs())
            };
            let d = |x: Tensor<2>| x.into_dispatch();
            let ((pa, ga, sa), (pb, gb, sb), partials) = inputs();
            let kept = pa.clone();
            let updates = vec![
                ParamUpdate { param: d(pa), grad: d(ga), state: sa.into_dispatch() },
                ParamUpdate { param: d(pb), grad: d(gb), state: sb.into_dispatch() },
            ];
            let mut got = adamw_update_all(updates, &partials, c);
            let ((pa, ga, sa), _, partials) = inputs();
            got.extend(adamw_update_all(vec![ParamUpdate { param: d(pa), grad: d(ga), state: sa.into_dispatch() }], &partials, c));
            let ((pa, ga, sa), (pb, gb, sb), partials) = inputs();
            let tail = Tensor::cat(vec![partials.reshape([32]), c.step_values(&device)], 0);
            let part = || tail.clone().into_dispatch();
            let c = RunConstants { beta1: c.beta1, beta2: c.beta2, epsilon: c.epsilon, max_norm: c.max_norm };
            let mut want = vec![composed::<Dispatch>(d(pa.clone()), d(ga.clone()), sa.clone().into_dispatch(), part(), c)];
            want.push(composed::<Dispatch>(d(pb), d(gb), sb.into_dispatch(), part(), c));
            want.push(composed::<Dispatch>(d(pa), d(ga), sa.into_dispatch(), part(), c));
            let read_p = |x: DispatchTensor| Tensor::<2>::from_dispatch(x).into_data().try_to_vec::<f32>().unwrap();
            let read_s = |x: DispatchTensor| Tensor::<1>::from_dispatch(x).into_data().try_to_vec::<f32>().unwrap();
            for (k, ((gp, gs), (wp, ws))) in got.into_iter().zip(want).enumerate() {
                for (what, got, want) in [("p", read_p(gp), read_p(wp)), ("state", read_s(gs), read_s(ws))] {
                    assert_eq!(got.len(), want.len());
                    for (x, y) in got.iter().zip(&want) {
                        assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "clip {max_norm}, parameter {k} {what}: loop {x} vs composed {y}");
                    }
                }
            }
            assert_eq!(kept.into_data().try_to_vec::<f32>().unwrap(), data[0][..600], "the shared parameter buffer keeps its values");
        }
    }
}
