//! Scaled dot-product self-attention over a fused QKV projection (Vaswani et al., "Attention
//! Is All You Need", 2017) as one burn custom operation with a closed-form backward.
//!
//! Why: differentiated primitive by primitive, splitting the fused projection into heads
//! (`narrow` ×3) costs a zero-filled tensor, a slice-assign and an addition per head group in
//! the backward, and the softmax's generic rules a few unfused launches more. Taking `qkv`
//! whole, the backward writes the projection's gradient once, as one tensor: per layer ~10
//! launches fewer. The forward is the same arithmetic as `network.rs`'s `attend`.
//!
//! Two operations, forward and backward. Flex (the CPU) runs each as one loop per (sequence,
//! head) (`attention_cpu.rs`), the cubecl backend as one hand-written kernel launch
//! (`attention_kernel.rs`); both recompute the weights in the backward instead of storing them.
//! Their default bodies, composed of primitive operations, are the fallback for shapes the
//! loops and kernels do not take; fusion runs each as one opaque operation. The autodiff
//! backend registers [`AttentionBackward`], which calls the backward operation.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Slice, Tensor};
use burn_cubecl::CubeBackend;

use super::{attention_cpu, attention_kernel};

/// qkv: [batch, seq, 3 · d_model] (queries, keys, values side by side), bias: [rows, 1, seq, seq]
/// (0 where a query may see a key, −1e9 where not; rows = batch or 1) -> [batch, seq, d_model]
pub fn self_attention(qkv: Tensor<3>, bias: Tensor<4>, n_head: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as AttentionOps>::self_attention(qkv.into_dispatch(), bias.into_dispatch(), n_head))
}

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait AttentionOps: Backend {
    /// softmax(q·kᵀ/√d_head + bias)·v over heads; see [`self_attention`].
    #[fusion(dtype = qkv, shape = output_shape(qkv))]
    fn self_attention(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        composed_forward::<Self>(qkv, bias, n_head)
    }

    /// The gradient of qkv ([b, s, 3·d]) given the output's, d_out: [b, s, d]. `out` is the
    /// forward's output ([b, s, d]): the GPU kernel takes D_i = Σ_j P_ij·(dO_i·v_j) as dO_i·O_i
    /// from it (FlashAttention-2's shortcut); the other paths recompute what they need.
    #[fusion(dtype = qkv, shape = qkv)]
    fn self_attention_backward(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, out: FloatTensor<Self>, d_out: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        let _ = out;
        composed_backward::<Self>(qkv, bias, d_out, n_head)
    }

    /// softmax(scores·scale + bias) over the last axis: the attention weights of the composed
    /// paths. scores: [b, h, s, s], bias: [rows, 1, s, s] (rows = b or 1) -> [b, h, s, s]
    #[fusion(dtype = scores, shape = scores)]
    fn attention_softmax(scores: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        composed_softmax::<Self>(scores, bias, scale)
    }
}

/// Flex runs the attention as one loop per (sequence, head) over `qkv` in place
/// (`attention_cpu.rs`). The composed bodies, with their composed softmax, run what the loops
/// do not take: other dtypes than f32, and empty tensors.
impl AttentionOps for Flex {
    fn self_attention(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        match fits(&qkv, &bias, n_head, &[]) {
            true => attention_cpu::forward(qkv, bias, n_head),
            false => composed_forward::<Self>(qkv, bias, n_head),
        }
    }

    fn self_attention_backward(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, _out: FloatTensor<Self>, d_out: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        match fits(&qkv, &bias, n_head, &[&d_out]) {
            true => attention_cpu::backward(qkv, bias, d_out, n_head),
            false => composed_backward::<Self>(qkv, bias, d_out, n_head),
        }
    }
}

impl AttentionOps for CubeBackend {
    fn self_attention(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        match fits(&qkv, &bias, n_head, &[]) && attention_kernel::within_limits(&qkv, n_head) {
            true => attention_kernel::forward(qkv, bias, n_head),
            false => composed_forward::<Self>(qkv, bias, n_head),
        }
    }

    fn self_attention_backward(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, out: FloatTensor<Self>, d_out: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        match fits(&qkv, &bias, n_head, &[&out, &d_out]) && attention_kernel::within_limits(&qkv, n_head) {
            true => attention_kernel::backward(qkv, bias, out, d_out, n_head),
            false => composed_backward::<Self>(qkv, bias, d_out, n_head),
        }
    }
}

/// Whether flex's loops and the GPU's kernels take these tensors: f32, qkv: [b, s, 3·d] with d
/// divisible by the head count, bias: [b or 1, 1, s, s], and `like_out` (the backward's out
/// and d_out) of [b, s, d]; no empty dimension. Otherwise the composed bodies run. The GPU's
/// kernels also ask `attention_kernel::within_limits`.
pub(super) fn fits<T: TensorMetadata>(qkv: &T, bias: &T, n_head: usize, like_out: &[&T]) -> bool {
    let (shape, bias_shape) = (qkv.shape(), bias.shape());
    if qkv.dtype() != DType::F32 || bias.dtype() != DType::F32 || shape.num_dims() != 3 || bias_shape.num_dims() != 4 {
        return false;
    }
    let (b, s, d3) = (shape[0], shape[1], shape[2]);
    let out_fits = like_out.iter().all(|t| t.dtype() == DType::F32 && t.shape().to_vec() == [b, s, d3 / 3]);
    n_head > 0
        && b > 0
        && s > 0
        && d3 > 0
        && d3 % (3 * n_head) == 0
        && (bias_shape[0] == b || bias_shape[0] == 1)
        && bias_shape[1] == 1
        && bias_shape[2] == s
        && bias_shape[3] == s
        && out_fits
}

// qkv: [b, s, 3·d] -> [b, s, d]
fn output_shape(qkv: &Shape) -> Shape {
    Shape::new([qkv[0], qkv[1], qkv[2] / 3])
}

fn composed_forward<B: AttentionOps>(qkv: FloatTensor<B>, bias: FloatTensor<B>, n_head: usize) -> FloatTensor<B> {
    let [q, k, v] = split_heads::<B>(qkv, n_head);
    let weights = attention_weights::<B>(q, k, bias);
    merge_heads::<B>(B::float_matmul(weights, v))
}

/// The backward from the inputs alone: the weights recomputed, then [`closed_form_backward`].
fn composed_backward<B: AttentionOps>(qkv: FloatTensor<B>, bias: FloatTensor<B>, d_out: FloatTensor<B>, n_head: usize) -> FloatTensor<B> {
    let [q, k, v] = split_heads::<B>(qkv, n_head);
    let weights = attention_weights::<B>(q.clone(), k.clone(), bias);
    closed_form_backward::<B>(q, k, v, weights, d_out)
}

/// The composed forward and backward on flex (through [`Dispatch`]): the reference the CPU
/// loops of `attention_cpu.rs` are tested against.
// qkv: [b, s, 3·d], bias: [rows, 1, s, s], dy: [b, s, d] -> [y: [b, s, d], d_qkv: [b, s, 3·d]]
#[cfg(test)]
pub(super) fn composed_reference(qkv: Tensor<3>, bias: Tensor<4>, dy: Tensor<3>, n_head: usize) -> [Tensor<3>; 2] {
    let y = composed_forward::<Dispatch>(qkv.clone().into_dispatch(), bias.clone().into_dispatch(), n_head);
    let d_qkv = composed_backward::<Dispatch>(qkv.into_dispatch(), bias.into_dispatch(), dy.into_dispatch(), n_head);
    [Tensor::from_dispatch(y), Tensor::from_dispatch(d_qkv)]
}

fn dims<B: Backend>(t: &FloatTensor<B>) -> Vec<usize> {
    t.shape().to_vec()
}

// qkv: [b, s, 3·d] -> q, k, v: [b, h, s, d/h]
fn split_heads<B: Backend>(qkv: FloatTensor<B>, h: usize) -> [FloatTensor<B>; 3] {
    let [b, s, d3] = dims::<B>(&qkv)[..] else { panic!("qkv must be [batch, seq, 3·d_model]") };
    let dh = d3 / 3 / h;
    // [b, s, 3, h, dh] -> [3, b, h, s, dh], made contiguous once so that each third is a plain view
    let heads = B::float_permute(B::float_reshape(qkv, Shape::from(vec![b, s, 3, h, dh])), &[2, 0, 3, 1, 4]);
    let heads = B::float_reshape(heads, Shape::from(vec![3, b * h * s * dh]));
    [0, 1, 2].map(|i| {
        let third = B::float_slice(heads.clone(), &[Slice::new(i as isize, Some(i as isize + 1), 1), Slice::new(0, None, 1)]);
        B::float_reshape(third, Shape::from(vec![b, h, s, dh]))
    })
}

// y: [b, h, s, dh] -> [b, s, h·dh]
fn merge_heads<B: Backend>(y: FloatTensor<B>) -> FloatTensor<B> {
    let [b, h, s, dh] = dims::<B>(&y)[..] else { panic!("heads must be [batch, heads, seq, d_head]") };
    B::float_reshape(B::float_swap_dims(y, 1, 2), Shape::from(vec![b, s, h * dh]))
}

// q, k: [b, h, s, dh], bias: [rows, 1, s, s] -> weights: [b, h, s, s], each row sums to 1
fn attention_weights<B: AttentionOps>(q: FloatTensor<B>, k: FloatTensor<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let dh = dims::<B>(&q)[3];
    let scores = B::float_matmul(q, B::float_swap_dims(k, 2, 3));
    B::attention_softmax(scores, bias, 1.0 / (dh as f32).sqrt())
}

// scores: [b, h, s, s], bias: [rows, 1, s, s] -> [b, h, s, s], each row sums to 1
fn composed_softmax<B: Backend>(scores: FloatTensor<B>, bias: FloatTensor<B>, scale: f32) -> FloatTensor<B> {
    let scores = B::float_add(B::float_mul_scalar(scores, scale.into()), bias);
    let max = B::float_max_dim(scores.clone(), 3);
    let exp = B::float_exp(B::float_sub(scores, max));
    let total = B::float_sum_dim(exp.clone(), 3);
    B::float_div(exp, total)
}

/// The closed-form backward. With P the weights and dO the output gradient in head layout:
///   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)) / √d_head,
///   dQ = dS·K,   dK = dSᵀ·Q,  and d(qkv) = [dQ, dK, dV] back in the projection's layout.
// q, k, v: [b, h, s, dh], weights: [b, h, s, s], dy: [b, s, d] -> d_qkv: [b, s, 3·d]
fn closed_form_backward<B: Backend>(q: FloatTensor<B>, k: FloatTensor<B>, v: FloatTensor<B>, weights: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    let [b, h, s, dh] = dims::<B>(&q)[..] else { unreachable!() };
    // d_out: [b, h, s, dh]
    let d_out = B::float_swap_dims(B::float_reshape(dy, Shape::from(vec![b, s, h, dh])), 1, 2);
    let dv = B::float_matmul(B::float_swap_dims(weights.clone(), 2, 3), d_out.clone());
    // dp, ds: [b, h, s, s]
    let dp = B::float_matmul(d_out, B::float_swap_dims(v, 2, 3));
    let row = B::float_sum_dim(B::float_mul(dp.clone(), weights.clone()), 3);
    let ds = B::float_mul_scalar(B::float_mul(weights, B::float_sub(dp, row)), (1.0 / (dh as f64).sqrt()).into());
    let dq = B::float_matmul(ds.clone(), k);
    let dk = B::float_matmul(B::float_swap_dims(ds, 2, 3), q);
    // [3, b, h, s, dh] -> [b, s, 3, h, dh] -> [b, s, 3·d]
    let stacked = B::float_cat(
        [dq, dk, dv].into_iter().map(|t| B::float_reshape(t, Shape::from(vec![1, b, h, s, dh]))).collect(),
        0,
    );
    B::float_reshape(B::float_permute(stacked, &[1, 3, 0, 2, 4]), Shape::from(vec![b, s, 3 * h * dh]))
}

/// What the forward keeps for the backward: qkv, bias, its output and the head count. The
/// backward operation recomputes the weights (the GPU's kernel in registers, flex's loop per
/// query row), so no [b, h, s, s] tensor is kept per layer.
#[derive(Clone, Debug)]
struct Saved<B: Backend> {
    qkv: FloatTensor<B>,
    bias: FloatTensor<B>,
    out: FloatTensor<B>,
    n_head: usize,
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend + AttentionOps> Backward<B, 1> for AttentionBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_qkv] = ops.parents;
        // dy: [b, s, d]
        let dy = grads.consume::<B>(&ops.node);
        let Some(node) = node_qkv else { return };
        let Saved { qkv, bias, out, n_head } = ops.state;
        let d_qkv = B::self_attention_backward(qkv, bias, out, dy, n_head);
        grads.register::<B>(node.id, d_qkv);
    }
}

impl<B: Backend + AttentionOps, C: CheckpointStrategy> AttentionOps for Autodiff<B, C> {
    fn self_attention(qkv: FloatTensor<Self>, bias: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        // The bias is a constant (the mask): only qkv is differentiated.
        let bias = bias.into_primitive();
        match AttentionBackward.prepare::<C>([qkv.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let qkv = qkv.into_primitive();
                let output = B::self_attention(qkv.clone(), bias.clone(), n_head);
                prep.finish(Saved { qkv, bias, out: output.clone(), n_head }, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as AttentionOps>::self_attention(qkv.into_primitive(), bias, n_head)),
        }
    }

    fn self_attention_backward(_qkv: FloatTensor<Self>, _bias: FloatTensor<Self>, _out: FloatTensor<Self>, _d_out: FloatTensor<Self>, _n_head: usize) -> FloatTensor<Self> {
        unimplemented!("the attention backward is not differentiated twice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checks::{close, values};
    use crate::model::AttentionMode;
    use crate::model::network::{attend, split_qkv};
    use burn::tensor::{Device, Distribution};

    /// Attention composed of burn tensor operations (the model's own composed path,
    /// differentiated by burn): the reference.
    fn reference(qkv: Tensor<3>, bias: Tensor<4>, h: usize) -> Tensor<3> {
        let [q, k, v] = split_qkv(qkv, h);
        attend(q, k, v, bias)
    }

    /// Values and the gradient of qkv against burn's composed attention, for a causal mask
    /// (one bias row for the batch) and a per-row prefix mask.
    #[test]
    fn values_and_gradients_match_composed_attention() {
        let device = Device::flex().autodiff();
        let (b, s, d, h) = (2, 5, 8, 2);
        for mode in [AttentionMode::Causal, AttentionMode::Prefix(vec![2, 4])] {
            let bias = mode.bias(b, s, &device);
            let qkv = Tensor::<3>::random([b, s, 3 * d], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let r = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
            let ours = self_attention(qkv.clone(), bias.clone(), h);
            let theirs = reference(qkv.clone(), bias, h);
            close(&values(ours.clone()), &values(theirs.clone()), 1e-5);
            let g_ours = (ours * r.clone()).sum().backward();
            let g_theirs = (theirs * r).sum().backward();
            close(&values(qkv.grad(&g_ours).unwrap()), &values(qkv.grad(&g_theirs).unwrap()), 1e-4);
        }
    }

    /// The backward operation on its own (what the GPU backend falls back to beyond its
    /// kernels' sizes: the weights recomputed from qkv) against autodiff through the reference.
    #[test]
    fn backward_operation_matches_autodiff() {
        let (b, s, d, h) = (2, 5, 8, 2);
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let mode = AttentionMode::Prefix(vec![1, 3]);
        let qkv = Tensor::<3>::random([b, s, 3 * d], Distribution::Normal(0.0, 1.0), &plain);
        let dy = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &plain);
        let tracked = Tensor::<3>::from_data(qkv.to_data(), &device).require_grad();
        let grads = (reference(tracked.clone(), mode.bias(b, s, &device), h) * Tensor::<3>::from_data(dy.to_data(), &device)).sum().backward();
        let out = self_attention(qkv.clone(), mode.bias(b, s, &plain), h);
        let ours = Tensor::<3>::from_dispatch(<Dispatch as AttentionOps>::self_attention_backward(
            qkv.into_dispatch(),
            mode.bias(b, s, &plain).into_dispatch(),
            out.into_dispatch(),
            dy.into_dispatch(),
            h,
        ));
        close(&values(ours), &values(tracked.grad(&grads).unwrap()), 1e-4);
    }

    /// The gradient of qkv against central finite differences of the plain forward.
    #[test]
    fn gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let (b, s, d, h) = (1, 3, 4, 2);
        let xs: Vec<f32> = (0..b * s * 3 * d).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect();
        let rs: Vec<f32> = (0..b * s * d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
        let data = |v: &Vec<f32>, shape: [usize; 3], dev: &Device| Tensor::<3>::from_data(burn::tensor::TensorData::new(v.clone(), shape), dev);
        let qkv = data(&xs, [b, s, 3 * d], &device).require_grad();
        let grads = (self_attention(qkv.clone(), AttentionMode::Causal.bias(b, s, &device), h) * data(&rs, [b, s, d], &device)).sum().backward();
        let analytic = values(qkv.grad(&grads).unwrap());
        let f = |x: &Vec<f32>| -> f64 {
            let y = self_attention(data(x, [b, s, 3 * d], &plain), AttentionMode::Causal.bias(b, s, &plain), h);
            (y * data(&rs, [b, s, d], &plain)).sum().into_scalar::<f32>() as f64
        };
        for i in 0..xs.len() {
            let (mut up, mut down) = (xs.clone(), xs.clone());
            up[i] += 1e-2;
            down[i] -= 1e-2;
            let numeric = (f(&up) - f(&down)) / 2e-2;
            assert!((analytic[i] as f64 - numeric).abs() < 1e-2 * numeric.abs().max(1.0), "qkv[{i}]: {} vs {numeric}", analytic[i]);
        }
    }
}
