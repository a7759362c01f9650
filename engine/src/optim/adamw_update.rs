//! One parameter's AdamW update, clip scale included, as one GPU launch.
//!
//! Why a hand-written kernel: fusion compiled most parameters' update chains into one kernel
//! each, but broke some into three (an unfused multiply and scalar op where the [1] clip scale
//! met the gradient), and computing the clip scale itself took a fused addition, two reduction
//! passes and another fused kernel. Here each parameter is one launch that also adds up the
//! gradient norm's partial sums (`sum_squares.rs`) and applies the clip: about 20 launches fewer
//! per baby-GPT step (docs/performance.md). The parameter and both moments are updated in place
//! when nothing else holds them (copied first otherwise), so the kernel binds five storage
//! buffers: WebGPU's default limit is eight.
//!
//! As in `sum_squares.rs`: flex runs the composed default body (the same arithmetic in burn
//! operations), the cubecl backend the kernel, fusion the kernel as one opaque operation.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};
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

/// (p, m, v) ← AdamW(p, g, m, v) with g scaled by min(1, max_norm / (‖g‖ + 1e-6)), where ‖g‖²
/// is the sum of `partials` (the whole model's gradient norm); all of p, g, m, v the same shape.
pub fn adamw_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    partials: Tensor<2>,
    constants: StepConstants,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (p, m, v) = <Dispatch as AdamWOps>::adamw_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        partials.into_dispatch(),
        constants.beta1,
        constants.beta2,
        constants.epsilon,
        constants.decay,
        constants.step_size,
        constants.bias2,
        constants.max_norm,
    );
    (Tensor::from_dispatch(p), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
}

#[backend_extension(Flex, Cube, Fusion)]
pub trait AdamWOps: Backend {
    /// The updated (parameter, first moment, second moment).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = same_shapes)]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        decay: f64,
        step_size: f64,
        bias2: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let c = StepConstants { beta1, beta2, epsilon, decay, step_size, bias2, max_norm };
        composed::<Self>(param, grad, m, v, partials, c)
    }
}

#[allow(clippy::too_many_arguments)]
fn same_shapes(
    param: &TensorSpec,
    _grad: &TensorSpec,
    m: &TensorSpec,
    v: &TensorSpec,
    _partials: &TensorSpec,
    _beta1: &f64,
    _beta2: &f64,
    _epsilon: &f64,
    _decay: &f64,
    _step_size: &f64,
    _bias2: &f64,
    _max_norm: &f64,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    (param.clone(), m.clone(), v.clone())
}

/// The update in burn operations (flex, and the reference of the kernel's tests).
fn composed<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    m: FloatTensor<B>,
    v: FloatTensor<B>,
    partials: FloatTensor<B>,
    c: StepConstants,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = param.shape();
    let g = if c.max_norm > 0.0 {
        // min(1, max_norm / (√Σ + 1e-6)), shaped [1, …, 1] to broadcast over the parameter
        let n = partials.shape().num_elements();
        let total = B::float_sum(B::float_reshape(partials, Shape::new([n])));
        let scale = B::float_clamp_max(
            B::float_mul_scalar(B::float_recip(B::float_add_scalar(B::float_sqrt(total), 1e-6.into())), c.max_norm.into()),
            1.0.into(),
        );
        let ones = Shape::from(vec![1; shape.num_dims()]);
        B::float_mul(grad, B::float_reshape(scale, ones))
    } else {
        grad
    };
    let m = B::float_add(B::float_mul_scalar(m, c.beta1.into()), B::float_mul_scalar(g.clone(), (1.0 - c.beta1).into()));
    let v = B::float_add(B::float_mul_scalar(v, c.beta2.into()), B::float_mul_scalar(B::float_mul(g.clone(), g), (1.0 - c.beta2).into()));
    // p ← p·(1 − lr·λ) − lr · m̂ / (√v̂ + ε), with m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ)
    let denominator = B::float_add_scalar(B::float_sqrt(B::float_div_scalar(v.clone(), c.bias2.into())), c.epsilon.into());
    let step = B::float_div(B::float_mul_scalar(m.clone(), c.step_size.into()), denominator);
    let p = B::float_sub(B::float_mul_scalar(param, c.decay.into()), step);
    (p, m, v)
}

/// On the CPU, one pass over each parameter's four arrays ([`Update`]), instead of the
/// composed body's eleven operations, each of which allocated and wrote a whole new tensor.
impl AdamWOps for Flex {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        decay: f64,
        step_size: f64,
        bias2: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let c = StepConstants { beta1, beta2, epsilon, decay, step_size, bias2, max_norm };
        let shape = param.layout().shape().clone();
        let f32s = [&param, &grad, &m, &v, &partials].iter().all(|t| t.dtype() == DType::F32);
        if !f32s || [&grad, &m, &v].iter().any(|t| *t.layout().shape() != shape) {
            return composed::<Self>(param, grad, m, v, partials, c);
        }
        // The clip scale from the partial sums of squares, in f32 as the composed body has it.
        let scale = if max_norm > 0.0 {
            let total: f32 = owned(partials).storage::<f32>().iter().sum();
            ((1.0 / (total.sqrt() + 1e-6)) * max_norm as f32).min(1.0)
        } else {
            1.0
        };
        let grad = crate::cpu_loops::contiguous(grad);
        let [mut param, mut m, mut v] = [param, m, v].map(owned);
        let update = Update {
            p: param.storage_mut::<f32>(),
            g: grad.as_slice::<f32>().expect("contiguous f32"),
            m: m.storage_mut::<f32>(),
            v: v.storage_mut::<f32>(),
            scale,
            c,
        };
        crate::cpu_loops::vectorized(update);
        (param, m, v)
    }
}

/// `t` as a tensor that owns exactly its elements, in order: itself when it already does, a
/// contiguous copy otherwise (a view, or a buffer something else holds: `storage_mut` copies it
/// then, and the holder keeps the old values).
fn owned(t: FlexTensor) -> FlexTensor {
    let n = t.layout().num_elements();
    let whole = t.layout().contiguous_offsets() == Some((0, n)) && t.bytes().len() == n * size_of::<f32>();
    if whole { t } else { t.to_contiguous() }
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
    c: StepConstants,
}

impl crate::cpu_loops::Kernel for Update<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let c = self.c;
        let (b1, b1c, b2, b2c) = (c.beta1 as f32, (1.0 - c.beta1) as f32, c.beta2 as f32, (1.0 - c.beta2) as f32);
        let (eps, decay, step_size, bias2) = (c.epsilon as f32, c.decay as f32, c.step_size as f32, c.bias2 as f32);
        for (((p, &g), m), v) in self.p.iter_mut().zip(self.g).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            let g = g * self.scale;
            *m = *m * b1 + g * b1c;
            *v = *v * b2 + g * g * b2c;
            *p = *p * decay - *m * step_size / ((*v / bias2).sqrt() + eps);
        }
    }
}

impl AdamWOps for CubeBackend {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        partials: FloatTensor<Self>,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
        decay: f64,
        step_size: f64,
        bias2: f64,
        max_norm: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let c = StepConstants { beta1, beta2, epsilon, decay, step_size, bias2, max_norm };
        let same = [&grad, &m, &v].iter().all(|t| t.meta.shape() == param.meta.shape());
        if param.dtype != DType::F32 || [&grad, &m, &v, &partials].iter().any(|t| t.dtype != DType::F32) || !same {
            return composed::<Self>(param, grad, m, v, partials, c);
        }
        // One index addresses the same element in all four: all contiguous.
        let [param, m, v] = [param, m, v].map(writable);
        let (grad, partials) = (into_contiguous(grad), into_contiguous(partials));
        let len = param.meta.num_elements();
        let client = param.client.clone();
        let units = 256;
        let workgroups = len.div_ceil(units).max(1);
        kernel::adamw_kernel::launch(
            &client,
            CubeCount::Static(workgroups as u32, 1, 1),
            CubeDim::new_1d(units as u32),
            param.clone().into_tensor_arg(),
            grad.into_tensor_arg(),
            m.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            partials.clone().into_tensor_arg(),
            len as u32,
            partials.meta.num_elements() as u32,
            beta1 as f32,
            beta2 as f32,
            epsilon as f32,
            decay as f32,
            step_size as f32,
            bias2 as f32,
            max_norm as f32,
            ElemType::Float(FloatKind::F32),
        );
        (param, m, v)
    }
}

/// The tensor itself when nothing else holds its buffer and it is contiguous; a contiguous copy
/// otherwise (the kernel writes into it).
fn writable(t: CubeTensor) -> CubeTensor {
    let t = into_contiguous(t);
    if t.can_mut() { t } else { t.copy() }
}

mod kernel {
    use cubecl::prelude::*;

    /// Invocation i updates element i of the parameter and its two moments.
    // param, grad, m, v: [len], contiguous; partials: [n_partials]
    #[allow(clippy::too_many_arguments)]
    #[cube(launch)]
    pub(super) fn adamw_kernel<F: Float>(
        param: &mut Tensor<F>,
        grad: &Tensor<F>,
        m: &mut Tensor<F>,
        v: &mut Tensor<F>,
        partials: &Tensor<F>,
        len: u32,
        n_partials: u32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        decay: f32,
        step_size: f32,
        bias2: f32,
        max_norm: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS_X;
        if i >= len {
            terminate!();
        }
        let i = i as usize;
        let beta1 = F::cast_from(beta1);
        let beta2 = F::cast_from(beta2);
        let epsilon = F::cast_from(epsilon);
        let decay = F::cast_from(decay);
        let step_size = F::cast_from(step_size);
        let bias2 = F::cast_from(bias2);
        let max_norm = F::cast_from(max_norm);
        let one = F::new(1.0);
        let mut g = grad[i];
        if max_norm > F::new(0.0) {
            let mut total = F::new(0.0);
            for k in 0..n_partials {
                total += partials[k as usize];
            }
            g *= min(one, max_norm / (total.sqrt() + F::new(1e-6)));
        }
        let m_new = beta1 * m[i] + (one - beta1) * g;
        let v_new = beta2 * v[i] + (one - beta2) * g * g;
        m[i] = m_new;
        v[i] = v_new;
        param[i] = param[i] * decay - step_size * m_new / ((v_new / bias2).sqrt() + epsilon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// flex's one-pass loop against the composed body on flex, with and without clipping, for
    /// a parameter whose buffer is shared (which must keep its values), and a transposed
    /// gradient and first moment.
    #[test]
    fn the_cpu_loop_matches_the_composed_update() {
        let device = Device::flex();
        let mut rng = crate::rng::Rng::seeded(9);
        let data: Vec<Vec<f32>> = (0..5).map(|_| (0..30 * 20).map(|_| rng.normal() as f32).collect()).collect();
        let t = |i: usize, shape: [usize; 2]| Tensor::<2>::from_data(TensorData::new(data[i].clone(), shape), &device);
        for max_norm in [0.0, 1.0, 1e6] {
            let c = StepConstants { beta1: 0.9, beta2: 0.99, epsilon: 1e-8, decay: 0.99, step_size: 0.05, bias2: 0.02, max_norm };
            let inputs = || {
                let grad = t(1, [20, 30]).transpose();
                let m = t(2, [20, 30]).transpose();
                (t(0, [30, 20]), grad, m, t(3, [30, 20]).abs(), t(4, [30, 20]).slice([0..4, 0..8]).abs())
            };
            let (param, grad, m, v, partials) = inputs();
            let kept = param.clone();
            let d = |x: Tensor<2>| x.into_dispatch();
            let (p, m, v) = adamw_update(param, grad, m, v, partials, c);
            let (rp, rg, rm, rv, rpart) = inputs();
            let (wp, wm, wv) = composed::<Dispatch>(d(rp), d(rg), d(rm), d(rv), d(rpart), c);
            let read = |x: Tensor<2>| x.into_data().try_to_vec::<f32>().unwrap();
            for (what, got, want) in [("p", p, wp), ("m", m, wm), ("v", v, wv)] {
                let (got, want) = (read(got), read(Tensor::from_dispatch(want)));
                for (x, y) in got.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-6 * (1.0 + y.abs()), "clip {max_norm} {what}: loop {x} vs composed {y}");
                }
            }
            assert_eq!(read(kept), data[0], "the shared parameter buffer keeps its values");
        }
    }
}
