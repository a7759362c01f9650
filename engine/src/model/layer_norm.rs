//! LayerNorm (Ba, Kiros & Hinton, "Layer Normalization", 2016) as one burn custom operation
//! with a hand-written backward.
//!
//! Why not `burn::nn::LayerNorm`: burn differentiates LayerNorm through its eleven primitive
//! operations, and on the GPU their generic backward rules (mean, sub, square, sqrt, div and
//! the broadcast sums) come out as ~20 kernel launches per LayerNorm, most of them unfused —
//! ~180 of baby GPT's ~670 launches per step, when small models are bound by launches. The
//! closed-form backward below is two row reductions, two column reductions and two fused
//! elementwise passes. The forward is the same arithmetic as burn's. Unlike burn's module, γ and
//! β are the two rows of one [2, d] parameter (`affine`): the optimiser updates it as one, and
//! on the GPU AdamW takes two parameters per launch (WebGPU's limit of eight buffers), so
//! baby GPT's 9 LayerNorms cost 5 of its launches per step rather than 9.
//!
//! The operation is a burn backend extension (`#[backend_extension]`): the plain backends
//! (flex on the CPU, cubecl with its fusion on the GPU) run the default body below, composed
//! of primitive operations that fusion merges as it does any others; the autodiff backend
//! runs the same forward and registers [`LayerNormBackward`].
//!
//! A pre-norm block's residual addition `x + branch` is followed by the next LayerNorm:
//! [`LayerNorm::forward_residual`] forms the sum and normalises it in one pass (one launch, not
//! two), and the backward adds the stream's other gradient (the next addition's) into its dx
//! rather than in a launch of its own (`residual.rs`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Slice, Tensor};
use burn_cubecl::CubeBackend;

use super::residual::{self, ResidualAddBackward, Slot};
use super::{layer_norm_cpu, layer_norm_kernel};

/// LayerNorm over the last dimension with a learned scale and shift.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// affine: [2, d_model], the scale γ (row 0, starts at 1) and the shift β (row 1, starts at 0)
    pub affine: Param<Tensor<2>>,
    epsilon: f64,
}

impl LayerNorm {
    /// PyTorch's default ε.
    pub fn new(d_model: usize, device: &Device) -> Self {
        Self::from_scale_shift(Tensor::ones([d_model], device), Tensor::zeros([d_model], device))
    }

    /// With the scale γ and the shift β given: both `[d_model]`.
    pub fn from_scale_shift(gamma: Tensor<1>, beta: Tensor<1>) -> Self {
        Self { affine: Param::from_tensor(Tensor::stack(vec![gamma, beta], 0)), epsilon: 1e-5 }
    }

    /// γ: `[d_model]` (a view of `affine`'s first row)
    pub fn gamma(&self) -> Tensor<1> {
        let d = self.affine.dims()[1];
        self.affine.val().narrow(0, 0, 1).reshape([d])
    }

    /// β: `[d_model]` (a view of `affine`'s second row)
    pub fn beta(&self) -> Tensor<1> {
        let d = self.affine.dims()[1];
        self.affine.val().narrow(0, 1, 1).reshape([d])
    }

    // x: [..., d_model] -> [..., d_model]
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as LayerNormOps>::layer_norm(x.into_dispatch(), self.affine.val().into_dispatch(), self.epsilon))
    }

    /// The residual addition of a pre-norm block and this LayerNorm in one pass:
    /// (x + branch, LayerNorm(x + branch)), the sum for the stream, the rest for the sublayer.
    /// The branch must be computed from an earlier LayerNorm of x (as a sublayer's output is),
    /// which is what lets the backward fold the sum's gradient into that LayerNorm's
    /// (`residual.rs`), or depend on nothing x depends on (the position embeddings). It has x's
    /// shape, or 1 in the first dimension to be broadcast over it.
    // x: [n, ..., d_model], branch: [n or 1, ..., d_model] -> sum, normed: [n, ..., d_model]
    pub fn forward_residual<const D: usize>(&self, x: Tensor<D>, branch: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
        let (sum, normed) = <Dispatch as LayerNormOps>::add_layer_norm(x.into_dispatch(), branch.into_dispatch(), self.affine.val().into_dispatch(), self.epsilon);
        (Tensor::from_dispatch(sum), Tensor::from_dispatch(normed))
    }
}

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait LayerNormOps: Backend {
    /// y = (x − mean) / √(var + ε) · γ + β over the last dimension, with affine = [γ; β]: [2, d].
    #[fusion(dtype = x, shape = x)]
    fn layer_norm(x: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        composed_forward::<Self>(x, affine, epsilon)
    }

    /// (dx, [dγ; dβ]) from x, affine and the output's gradient dy.
    #[fusion(meta = |x, affine, _dy, _epsilon| (x.clone(), affine.clone()))]
    fn layer_norm_backward(x: FloatTensor<Self>, affine: FloatTensor<Self>, dy: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_backward::<Self>(x, affine, dy, epsilon)
    }

    /// (s, y): s = x + branch (x's shape, or 1 in the first dimension: broadcast) and y its
    /// LayerNorm, as `layer_norm` computes it.
    #[fusion(meta = |x, _branch, _affine, _epsilon| (x.clone(), x.clone()))]
    fn add_layer_norm(x: FloatTensor<Self>, branch: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_add_forward::<Self>(x, branch, affine, epsilon)
    }

    /// `layer_norm_backward` with `d_other`, the gradient x has from its other readers, added
    /// to dx.
    #[fusion(meta = |x, affine, _dy, _d_other, _epsilon| (x.clone(), affine.clone()))]
    fn layer_norm_backward_plus(x: FloatTensor<Self>, affine: FloatTensor<Self>, dy: FloatTensor<Self>, d_other: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_backward_plus::<Self>(x, affine, dy, d_other, epsilon)
    }
}

impl LayerNormOps for Flex {
    fn layer_norm(x: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        match fits(&x, &affine, &[]) {
            true => layer_norm_cpu::forward(x, affine, epsilon),
            false => composed_forward::<Self>(x, affine, epsilon),
        }
    }

    fn layer_norm_backward(x: FloatTensor<Self>, affine: FloatTensor<Self>, dy: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match fits(&x, &affine, &[&dy]) {
            true => layer_norm_cpu::backward_plus(x, affine, dy, None, epsilon),
            false => composed_backward::<Self>(x, affine, dy, epsilon),
        }
    }

    fn add_layer_norm(x: FloatTensor<Self>, branch: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match fits_with_branch(&x, &branch, &affine) {
            true => layer_norm_cpu::forward_add(x, branch, affine, epsilon),
            false => composed_add_forward::<Self>(x, branch, affine, epsilon),
        }
    }

    fn layer_norm_backward_plus(x: FloatTensor<Self>, affine: FloatTensor<Self>, dy: FloatTensor<Self>, d_other: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match fits(&x, &affine, &[&dy, &d_other]) {
            true => layer_norm_cpu::backward_plus(x, affine, dy, Some(d_other), epsilon),
            false => composed_backward_plus::<Self>(x, affine, dy, d_other, epsilon),
        }
    }
}

impl LayerNormOps for CubeBackend {
    fn layer_norm(x: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        if !fits(&x, &affine, &[]) {
            return composed_forward::<Self>(x, affine, epsilon);
        }
        layer_norm_kernel::forward(x, affine, epsilon)
    }

    fn layer_norm_backward(x: FloatTensor<Self>, affine: FloatTensor<Self>, dy: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !fits(&x, &affine, &[&dy]) {
            return composed_backward::<Self>(x, affine, dy, epsilon);
        }
        layer_norm_kernel::backward(x, affine, dy, None, epsilon)
    }

    fn add_layer_norm(x: FloatTensor<Self>, branch: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !fits_with_branch(&x, &branch, &affine) {
            return composed_add_forward::<Self>(x, branch, affine, epsilon);
        }
        layer_norm_kernel::forward_add(x, branch, affine, epsilon)
    }

    fn layer_norm_backward_plus(x: FloatTensor<Self>, affine: FloatTensor<Self>, dy: FloatTensor<Self>, d_other: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !fits(&x, &affine, &[&dy, &d_other]) {
            return composed_backward_plus::<Self>(x, affine, dy, d_other, epsilon);
        }
        layer_norm_kernel::backward(x, affine, dy, Some(d_other), epsilon)
    }
}

/// Whether flex's loops and the GPU's kernels take these tensors: f32, x of rank ≥ 1 with rows
/// of d > 0 features, affine = [γ; β] of 2·d elements, and `like_x` (dy, the other gradient) of
/// x's shape. Otherwise the composed bodies run.
fn fits<T: TensorMetadata>(x: &T, affine: &T, like_x: &[&T]) -> bool {
    let shape = x.shape();
    let d = shape.num_dims().checked_sub(1).map_or(0, |last| shape[last]);
    [x, affine].into_iter().chain(like_x.iter().copied()).all(|t| t.dtype() == DType::F32)
        && d > 0
        && affine.shape().num_elements() == 2 * d
        && like_x.iter().all(|t| t.shape() == shape)
}

/// [`fits`] for the fused addition: an f32 branch of x's shape, or with 1 in the first
/// dimension (its rows repeat over it).
fn fits_with_branch<T: TensorMetadata>(x: &T, branch: &T, affine: &T) -> bool {
    let (x_shape, branch_shape) = (x.shape(), branch.shape());
    fits(x, affine, &[])
        && branch.dtype() == DType::F32
        && x_shape.num_dims() == branch_shape.num_dims()
        && (branch_shape[0] == 1 || branch_shape[0] == x_shape[0])
        && (1..x_shape.num_dims()).all(|i| x_shape[i] == branch_shape[i])
}

/// The forward of primitive operations: the reference, and the GPU's fallback for other dtypes.
fn composed_forward<B: Backend>(x: FloatTensor<B>, affine: FloatTensor<B>, epsilon: f64) -> FloatTensor<B> {
    let (gamma, beta) = split_affine::<B>(affine);
    let (normalized, _) = normalize::<B>(x, epsilon);
    scale_shift::<B>(normalized, gamma, beta)
}

/// x + branch, and the LayerNorm of that sum.
fn composed_add_forward<B: Backend>(x: FloatTensor<B>, branch: FloatTensor<B>, affine: FloatTensor<B>, epsilon: f64) -> (FloatTensor<B>, FloatTensor<B>) {
    let sum = B::float_add(x, branch);
    (sum.clone(), composed_forward::<B>(sum, affine, epsilon))
}

/// [`composed_backward`] with `d_other` added to dx.
fn composed_backward_plus<B: Backend>(x: FloatTensor<B>, affine: FloatTensor<B>, dy: FloatTensor<B>, d_other: FloatTensor<B>, epsilon: f64) -> (FloatTensor<B>, FloatTensor<B>) {
    let (dx, d_affine) = composed_backward::<B>(x, affine, dy, epsilon);
    (B::float_add(dx, d_other), d_affine)
}

/// The backward from x alone: the row statistics recomputed, then [`closed_form_backward`].
fn composed_backward<B: Backend>(x: FloatTensor<B>, affine: FloatTensor<B>, dy: FloatTensor<B>, epsilon: f64) -> (FloatTensor<B>, FloatTensor<B>) {
    let (gamma, _) = split_affine::<B>(affine);
    let (normalized, rstd) = normalize::<B>(x, epsilon);
    let (dx, d_gamma, d_beta) = closed_form_backward::<B>(normalized, rstd, gamma, dy);
    let d = d_gamma.shape()[0];
    let row = |t: FloatTensor<B>| B::float_reshape(t, Shape::new([1, d]));
    (dx, B::float_cat(vec![row(d_gamma), row(d_beta)], 0))
}

/// (γ, β), each [d], the rows of affine: [2, d].
fn split_affine<B: Backend>(affine: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let d = affine.shape()[1];
    let row = |i: isize| B::float_reshape(B::float_slice(affine.clone(), &[Slice::new(i, Some(i + 1), 1), Slice::new(0, None, 1)]), Shape::new([d]));
    (row(0), row(1))
}

/// x̂ = (x − mean) · rstd and rstd = 1/√(var + ε), both over the last dimension.
// x: [..., d] -> x̂: [..., d], rstd: [..., 1]
fn normalize<B: Backend>(x: FloatTensor<B>, epsilon: f64) -> (FloatTensor<B>, FloatTensor<B>) {
    let last = x.shape().num_dims() - 1;
    let mean = B::float_mean_dim(x.clone(), last);
    let centered = B::float_sub(x, mean);
    let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
    (B::float_mul(centered, rstd.clone()), rstd)
}

/// `v` ([d]) shaped to broadcast over `like` ([..., d]): [1, …, 1, d].
fn row_shape<B: Backend>(v: FloatTensor<B>, like: &Shape) -> FloatTensor<B> {
    let rank = like.num_dims();
    let d = like[rank - 1];
    B::float_reshape(v, Shape::from((0..rank).map(|i| if i == rank - 1 { d } else { 1 }).collect::<Vec<_>>()))
}

/// x̂ · γ + β
fn scale_shift<B: Backend>(normalized: FloatTensor<B>, gamma: FloatTensor<B>, beta: FloatTensor<B>) -> FloatTensor<B> {
    let shape = normalized.shape();
    B::float_add(B::float_mul(normalized, row_shape::<B>(gamma, &shape)), row_shape::<B>(beta, &shape))
}

/// Sum over every dimension but the last: [..., d] -> [d].
fn column_sums<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let shape = t.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    B::float_reshape(B::float_sum_dim(B::float_reshape(t, Shape::from(vec![rows, d])), 0), Shape::from(vec![d]))
}

/// The closed-form LayerNorm backward. With g = dy·γ (per row, n = d):
///   dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))
///   dγ = Σ_rows dy · x̂,   dβ = Σ_rows dy
// x̂, dy: [..., d], rstd: [..., 1], γ: [d] -> dx: [..., d], dγ, dβ: [d]
fn closed_form_backward<B: Backend>(normalized: FloatTensor<B>, rstd: FloatTensor<B>, gamma: FloatTensor<B>, dy: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = dy.shape();
    let last = shape.num_dims() - 1;
    let d_gamma = column_sums::<B>(B::float_mul(dy.clone(), normalized.clone()));
    let d_beta = column_sums::<B>(dy.clone());
    let g = B::float_mul(dy, row_shape::<B>(gamma, &shape));
    let mean_g = B::float_mean_dim(g.clone(), last);
    let mean_gx = B::float_mean_dim(B::float_mul(g.clone(), normalized.clone()), last);
    let inner = B::float_sub(B::float_sub(g, mean_g), B::float_mul(normalized, mean_gx));
    (B::float_mul(inner, rstd), d_gamma, d_beta)
}

/// What the forward keeps for the backward: x, [γ; β] and ε, and the slot where a residual
/// addition reading x may leave x's other gradient (`residual.rs`). The backward operation
/// recomputes the row statistics (the GPU's kernels, flex's row loops), so x̂ is never stored.
#[derive(Clone, Debug)]
struct Saved<B: Backend> {
    x: FloatTensor<B>,
    affine: FloatTensor<B>,
    epsilon: f64,
    other: Slot<FloatTensor<B>>,
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend + LayerNormOps> Backward<B, 2> for LayerNormBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_affine] = ops.parents;
        // dy: [..., d]
        let dy = grads.consume::<B>(&ops.node);
        let Saved { x, affine, epsilon, other } = ops.state;
        // d_other: [..., d], what a residual addition reading x left for this backward
        let (dx, d_affine) = match other.close() {
            Some(d_other) => B::layer_norm_backward_plus(x, affine, dy, d_other, epsilon),
            None => B::layer_norm_backward(x, affine, dy, epsilon),
        };
        if let Some(node) = node_affine {
            grads.register::<B>(node.id, d_affine);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: Backend + LayerNormOps, C: CheckpointStrategy> LayerNormOps for Autodiff<B, C> {
    fn layer_norm(x: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        let id = x.id().value;
        match LayerNormBackward.prepare::<C>([x.node(), affine.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, affine) = (x.into_primitive(), affine.into_primitive());
                let output = <B as LayerNormOps>::layer_norm(x.clone(), affine.clone(), epsilon);
                prep.finish(Saved { x, affine, epsilon, other: residual::reader(id) }, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as LayerNormOps>::layer_norm(x.into_primitive(), affine.into_primitive(), epsilon)),
        }
    }

    fn layer_norm_backward(_x: FloatTensor<Self>, _affine: FloatTensor<Self>, _dy: FloatTensor<Self>, _epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unimplemented!("the LayerNorm backward is not differentiated twice")
    }

    /// Two nodes from one forward: the sum (its backward hands the gradient to x's LayerNorm,
    /// `residual.rs`) and the LayerNorm of the sum, whose slot the next addition will find.
    fn add_layer_norm(x: FloatTensor<Self>, branch: FloatTensor<Self>, affine: FloatTensor<Self>, epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let x_reader = residual::find::<FloatTensor<B>>(x.id().value);
        let (sum, normed) = <B as LayerNormOps>::add_layer_norm(x.primitive().clone(), branch.primitive().clone(), affine.primitive().clone(), epsilon);
        let branch_shape = branch.shape();
        let sum: FloatTensor<Self> = match ResidualAddBackward.prepare::<C>([x.node(), branch.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x_reader, branch_shape), sum),
            OpsKind::UnTracked(prep) => prep.finish(sum),
        };
        let id = sum.id().value;
        let normed = match LayerNormBackward.prepare::<C>([sum.node(), affine.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(Saved { x: sum.primitive().clone(), affine: affine.into_primitive(), epsilon, other: residual::reader(id) }, normed),
            OpsKind::UnTracked(prep) => prep.finish(normed),
        };
        (sum, normed)
    }

    fn layer_norm_backward_plus(_x: FloatTensor<Self>, _affine: FloatTensor<Self>, _dy: FloatTensor<Self>, _d_other: FloatTensor<Self>, _epsilon: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unimplemented!("the LayerNorm backward is not differentiated twice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checks::{close, values};
    use burn::tensor::{Distribution, TensorData};

    /// burn's LayerNorm with the same γ, β: the reference for values and gradients.
    fn reference(ln: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
        burn::tensor::module::layer_norm(x, ln.gamma(), Some(ln.beta()), ln.epsilon)
    }

    /// Values and all three gradients of our LayerNorm over x: [b, s, d] against burn's,
    /// differentiated by autodiff, with random γ and β.
    fn check_against_burn([b, s, d]: [usize; 3]) {
        let device = Device::flex().autodiff();
        let ln = LayerNorm::from_scale_shift(Tensor::random([d], Distribution::Normal(1.0, 0.5), &device), Tensor::random([d], Distribution::Normal(0.0, 0.5), &device));
        let x = Tensor::<3>::random([b, s, d], Distribution::Normal(0.5, 2.0), &device).require_grad();
        let r = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);

        let ours = ln.forward(x.clone());
        let theirs = reference(&ln, x.clone());
        close(&values(ours.clone()), &values(theirs.clone()), 1e-5);

        let g_ours = (ours * r.clone()).sum().backward();
        let g_theirs = (theirs * r).sum().backward();
        close(&values(x.grad(&g_ours).unwrap()), &values(x.grad(&g_theirs).unwrap()), 1e-4);
        close(&values(ln.affine.grad(&g_ours).unwrap()), &values(ln.affine.grad(&g_theirs).unwrap()), 1e-4);
    }

    /// Values and all three gradients against burn's LayerNorm differentiated by autodiff.
    #[test]
    fn values_and_gradients_match_burns_layer_norm() {
        check_against_burn([2, 3, 8]);
    }

    /// flex's row loops over several chunks of rows, with rows whose length is not a multiple of
    /// the eight lanes: values and the three gradients against burn's LayerNorm.
    #[test]
    fn row_loops_over_many_chunks_match_burns_layer_norm() {
        check_against_burn([3, 100, 131]);
    }

    /// The backward operation on its own (what the GPU backend falls back to for other dtypes:
    /// the statistics recomputed from x) against autodiff through burn's LayerNorm.
    #[test]
    fn backward_operation_matches_autodiff() {
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let ln = LayerNorm::from_scale_shift(Tensor::random([6], Distribution::Normal(1.0, 0.5), &device), Tensor::zeros([6], &device));
        let x = Tensor::<3>::random([2, 4, 6], Distribution::Normal(0.5, 2.0), &plain);
        let dy = Tensor::<3>::random([2, 4, 6], Distribution::Normal(0.0, 1.0), &plain);
        let tracked = Tensor::<3>::from_data(x.to_data(), &device).require_grad();
        let grads = (reference(&ln, tracked.clone()) * Tensor::<3>::from_data(dy.to_data(), &device)).sum().backward();
        let affine = Tensor::<2>::from_data(ln.affine.val().to_data(), &plain);
        let (dx, d_affine) = <Dispatch as LayerNormOps>::layer_norm_backward(x.into_dispatch(), affine.into_dispatch(), dy.into_dispatch(), ln.epsilon);
        close(&values(Tensor::<3>::from_dispatch(dx)), &values(tracked.grad(&grads).unwrap()), 1e-4);
        close(&values(Tensor::<2>::from_dispatch(d_affine)), &values(ln.affine.grad(&grads).unwrap()), 1e-4);
    }

    /// The gradient with respect to x against central finite differences (f64 on the host).
    #[test]
    fn input_gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let ln = LayerNorm::new(5, &device);
        let xs: Vec<f32> = vec![0.3, -1.2, 2.0, 0.7, -0.4, 1.5, 1.4, -2.2, 0.1, 0.0];
        let rs: Vec<f32> = vec![1.0, -0.5, 0.25, 2.0, -1.0, 0.3, 0.9, -0.7, 1.1, 0.2];
        let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [2, 5]), &device).require_grad();
        let r = Tensor::<2>::from_data(TensorData::new(rs.clone(), [2, 5]), &device);
        let grads = (ln.forward(x.clone()) * r).sum().backward();
        let analytic = values(x.grad(&grads).unwrap());
        // f(x) = Σ r · layer_norm(x), rows of 5, on the host
        let f = |x: &[f64]| -> f64 {
            x.chunks(5)
                .zip(rs.chunks(5))
                .map(|(row, r)| {
                    let mean = row.iter().sum::<f64>() / 5.0;
                    let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 5.0;
                    row.iter().zip(r).map(|(v, r)| (v - mean) / (var + 1e-5).sqrt() * *r as f64).sum::<f64>()
                })
                .sum()
        };
        let x64: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
        for i in 0..x64.len() {
            let (mut up, mut down) = (x64.clone(), x64.clone());
            up[i] += 1e-5;
            down[i] -= 1e-5;
            let numeric = (f(&up) - f(&down)) / 2e-5;
            assert!((analytic[i] as f64 - numeric).abs() < 1e-3, "x[{i}]: {} vs {numeric}", analytic[i]);
        }
    }

    /// A pre-norm residual step on flex, ours against burn's LayerNorm and addition:
    /// h = ln_a(x), branch = f(h), (s, y) = ln_b(x + branch), loss = Σ y·r + Σ s·q (the stream
    /// read again, as the next addition reads it). Values and every gradient agree; with
    /// `derived` the branch comes from h and the sum's gradient reaches x through ln_a's backward
    /// (a fold), otherwise the branch is a leaf of its own and the fold may not happen but the
    /// gradients are the same.
    fn check_residual_step(derived: bool, [b, s, d]: [usize; 3]) -> usize {
        let device = Device::flex().autodiff();
        let random_norm = |mean: f64| LayerNorm::from_scale_shift(Tensor::random([d], Distribution::Normal(mean, 0.5), &device), Tensor::random([d], Distribution::Normal(0.0, 0.5), &device));
        let (ln_a, ln_b) = (random_norm(1.0), random_norm(0.8));
        let x = Tensor::<3>::random([b, s, d], Distribution::Normal(0.5, 2.0), &device).require_grad();
        let w = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        let leaf = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let r = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        let q = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        let branch_of = |h: Tensor<3>| if derived { h.tanh() * w.clone() } else { leaf.clone() * w.clone() };

        let folds = residual::FOLDS.with(|f| f.get());
        let h = ln_a.forward(x.clone());
        let (sum, y) = ln_b.forward_residual(x.clone(), branch_of(h.clone()));
        let ours = (y.clone() * r.clone()).sum() + (sum.clone() * q.clone()).sum() + h.sum();
        let g_ours = ours.backward();
        let folds = residual::FOLDS.with(|f| f.get()) - folds;

        let h_ref = reference(&ln_a, x.clone());
        let sum_ref = x.clone() + branch_of(h_ref.clone());
        let y_ref = reference(&ln_b, sum_ref.clone());
        close(&values(sum), &values(sum_ref.clone()), 1e-5);
        close(&values(y), &values(y_ref.clone()), 1e-5);
        let g_ref = ((y_ref * r).sum() + (sum_ref * q).sum() + h_ref.sum()).backward();
        close(&values(x.grad(&g_ours).unwrap()), &values(x.grad(&g_ref).unwrap()), 1e-4);
        for ln in [&ln_a, &ln_b] {
            close(&values(ln.affine.grad(&g_ours).unwrap()), &values(ln.affine.grad(&g_ref).unwrap()), 1e-4);
        }
        if !derived {
            close(&values(leaf.grad(&g_ours).unwrap()), &values(leaf.grad(&g_ref).unwrap()), 1e-4);
        }
        folds
    }

    /// The fused addition and LayerNorm, and the sum's gradient folded into the first
    /// LayerNorm's backward: values and gradients as burn's, and the fold happened.
    #[test]
    fn residual_step_matches_burn_and_folds_the_sum_gradient() {
        for size in [[2, 3, 8], [3, 100, 131]] {
            assert_eq!(check_residual_step(true, size), 1, "{size:?}: the addition leaves x's gradient to ln_a");
        }
    }

    /// A branch that does not come from the LayerNorm of x still gets exact gradients (the
    /// addition registers its gradient itself when the LayerNorm's backward has run first).
    #[test]
    fn residual_step_with_an_unrelated_branch_keeps_exact_gradients() {
        check_residual_step(false, [2, 3, 8]);
    }

    /// A branch broadcast over the first dimension (the position embeddings, [1, s, d]), on
    /// flex's loops over several chunks: the values, and the gradients of x, the branch and
    /// [γ; β] as burn's broadcasting addition and LayerNorm.
    #[test]
    fn broadcast_branch_matches_burn() {
        let device = Device::flex().autodiff();
        let (b, s, d) = (3, 300, 70);
        let ln = LayerNorm::from_scale_shift(Tensor::random([d], Distribution::Normal(1.0, 0.5), &device), Tensor::random([d], Distribution::Normal(0.0, 0.5), &device));
        let x = Tensor::<3>::random([b, s, d], Distribution::Normal(0.5, 2.0), &device).require_grad();
        let pos = Tensor::<3>::random([1, s, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let r = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        let q = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        let (sum, y) = ln.forward_residual(x.clone(), pos.clone());
        let (sum_ref, y_ref) = (x.clone() + pos.clone(), reference(&ln, x.clone() + pos.clone()));
        close(&values(sum.clone()), &values(sum_ref.clone()), 1e-6);
        close(&values(y.clone()), &values(y_ref.clone()), 1e-5);
        let g_ours = ((y * r.clone()).sum() + (sum * q.clone()).sum()).backward();
        let g_ref = ((y_ref * r).sum() + (sum_ref * q).sum()).backward();
        close(&values(x.grad(&g_ours).unwrap()), &values(x.grad(&g_ref).unwrap()), 1e-4);
        close(&values(pos.grad(&g_ours).unwrap()), &values(pos.grad(&g_ref).unwrap()), 1e-4);
        close(&values(ln.affine.grad(&g_ours).unwrap()), &values(ln.affine.grad(&g_ref).unwrap()), 1e-4);
    }

    /// The backward with x's other gradient on its own against the backward plus an addition.
    #[test]
    fn backward_plus_adds_the_other_gradient() {
        let plain = Device::flex();
        let x = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.5, 2.0), &plain);
        let affine = Tensor::<2>::random([2, 12], Distribution::Normal(1.0, 0.5), &plain);
        let dy = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &plain);
        let other = Tensor::<3>::random([2, 5, 12], Distribution::Normal(0.0, 1.0), &plain);
        let d = |t| Tensor::<3>::into_dispatch(t);
        let (dx, d_affine) = <Dispatch as LayerNormOps>::layer_norm_backward(d(x.clone()), affine.clone().into_dispatch(), d(dy.clone()), 1e-5);
        let (dx_plus, d_affine_plus) = <Dispatch as LayerNormOps>::layer_norm_backward_plus(d(x), affine.into_dispatch(), d(dy), d(other.clone()), 1e-5);
        close(&values(Tensor::<3>::from_dispatch(dx_plus)), &values(Tensor::<3>::from_dispatch(dx) + other), 1e-6);
        close(&values(Tensor::<2>::from_dispatch(d_affine_plus)), &values(Tensor::<2>::from_dispatch(d_affine)), 1e-6);
    }

    /// Without gradients (evaluation) the plain path gives the same values.
    #[test]
    fn plain_device_values_match() {
        let device = Device::flex();
        let ln = LayerNorm::new(4, &device);
        let x = Tensor::<3>::random([1, 2, 4], Distribution::Normal(0.0, 3.0), &device);
        close(&values(ln.forward(x.clone())), &values(reference(&ln, x)), 1e-5);
    }
}
