//! Softmax cross-entropy over class logits, the loss of the vocabulary and position heads, as
//! one burn custom operation with its closed-form backward:
//!   loss = scale · Σ_rows (logsumexp(z_r) − z_r[c_r]),   dz_r = scale · dloss · (softmax(z_r) − onehot(c_r))
//! over the rows whose class c_r counts (rows of ignored positions contribute nothing).
//!
//! Why: composed of burn operations (log-softmax, gather, weighting, sum) the loss is about
//! 16 kernel launches per step on the GPU, forward and backward (the log-softmax's reductions,
//! the gather's zero-filled scatter in the backward, the weights' products), ~10 % of baby
//! GPT's launches, when it is one pass over the logits each way. Here the GPU runs one launch
//! forward and one backward (`cross_entropy_kernel.rs`), flex a loop over rows each way; the
//! backward recomputes each row's softmax from the logits rather than keeping it.
//!
//! Targets are class ids as floats (exact below 2²⁴), with any value outside [0, classes) for
//! a row that does not count (−1 for an ignored position): one small upload, and no integer
//! tensor in the kernels' bindings.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::backend::ops::FloatTensorOps;
use burn::tensor::{Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;

use super::cross_entropy_kernel;
use super::gelu::exp_approx;
use crate::cpu_loops::{ChunkLoop, Out, contiguous, lanes, new_tensor, sum_of};

/// Mean cross-entropy of `logits` against `targets` over `count` counted rows (the scale 1/count
/// is known on the CPU, so the mean needs no device read).
// logits: [rows, classes], targets: [rows] (class id, or −1 where the row does not count) -> [1]
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1>, count: usize) -> Tensor<1> {
    let scale = 1.0 / count.max(1) as f32;
    Tensor::from_dispatch(<Dispatch as CrossEntropyOps>::cross_entropy(logits.into_dispatch(), targets.into_dispatch(), scale))
}

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait CrossEntropyOps: Backend {
    /// scale · Σ_counted rows (logsumexp(z_r) − z_r[c_r]): [1]
    #[fusion(dtype = logits, shape = loss_shape(logits))]
    fn cross_entropy(logits: FloatTensor<Self>, targets: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        composed_forward::<Self>(logits, targets, scale)
    }

    /// The logits' gradient given the loss's, d_loss: [1].
    #[fusion(dtype = logits, shape = logits)]
    fn cross_entropy_backward(logits: FloatTensor<Self>, targets: FloatTensor<Self>, d_loss: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        composed_backward::<Self>(logits, targets, d_loss, scale)
    }
}

fn loss_shape(_logits: &Shape) -> Shape {
    Shape::new([1])
}

/// Whether flex's loops and the GPU's kernels take these tensors: f32 logits [rows, classes]
/// with at least one class, and one f32 target per row.
fn supported<T: TensorMetadata>(logits: &T, targets: &T) -> bool {
    let shape = logits.shape();
    shape.num_dims() == 2 && shape[1] > 0 && targets.shape().num_elements() == shape[0] && logits.dtype() == DType::F32 && targets.dtype() == DType::F32
}

impl CrossEntropyOps for Flex {
    fn cross_entropy(logits: FloatTensor<Self>, targets: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        if !supported(&logits, &targets) {
            return composed_forward::<Self>(logits, targets, scale);
        }
        let device = logits.device();
        let (logits, targets) = (contiguous(logits), contiguous(targets));
        let classes = logits.layout().shape()[1];
        let zs = logits.as_slice::<f32>().expect("contiguous f32");
        let cs = targets.as_slice::<f32>().expect("contiguous f32");
        let total: f64 = zs
            .chunks_exact(classes)
            .zip(cs)
            .filter_map(|(z, &c)| class(c, classes).map(|c| (log_sum_exp(z) - z[c]) as f64))
            .sum();
        Flex::float_from_data(TensorData::new(vec![(total * scale as f64) as f32], [1]), &device)
    }

    fn cross_entropy_backward(logits: FloatTensor<Self>, targets: FloatTensor<Self>, d_loss: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        if !supported(&logits, &targets) || d_loss.dtype() != DType::F32 {
            return composed_backward::<Self>(logits, targets, d_loss, scale);
        }
        let (logits, targets, d_loss) = (contiguous(logits), contiguous(targets), contiguous(d_loss));
        let classes = logits.layout().shape()[1];
        let rows = RowGradients {
            zs: logits.as_slice().expect("contiguous f32"),
            cs: targets.as_slice().expect("contiguous f32"),
            classes,
            // the gradient of each counted row's loss
            g: scale * d_loss.as_slice::<f32>().expect("contiguous f32")[0],
        };
        new_tensor(logits.layout().shape().clone(), (16 * 1024 / classes).max(1) * classes, &rows)
    }
}

impl CrossEntropyOps for CubeBackend {
    fn cross_entropy(logits: FloatTensor<Self>, targets: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        if !supported(&logits, &targets) {
            return composed_forward::<Self>(logits, targets, scale);
        }
        cross_entropy_kernel::forward(logits, targets, scale)
    }

    fn cross_entropy_backward(logits: FloatTensor<Self>, targets: FloatTensor<Self>, d_loss: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        // the kernel reads d_loss[0], unchecked
        if !supported(&logits, &targets) || d_loss.dtype != DType::F32 || d_loss.meta.num_elements() == 0 {
            return composed_backward::<Self>(logits, targets, d_loss, scale);
        }
        cross_entropy_kernel::backward(logits, targets, d_loss, scale)
    }
}

/// The class of a row whose target counts: c in [0, classes).
fn class(c: f32, classes: usize) -> Option<usize> {
    (c >= 0.0 && (c as usize) < classes).then_some(c as usize)
}

/// log Σ_k e^(z_k), shifted by the maximum so that nothing overflows. In eight lanes with a
/// compare-and-select maximum and `gelu.rs`'s polynomial e^x (every shifted logit is ≤ 0), so
/// that it vectorises: libm's `expf` per logit (and `fmaxf`, wasm having no vector `f32::max`)
/// was a call per element, ~1.5 % of the tab's step.
#[inline(always)]
fn log_sum_exp(z: &[f32]) -> f32 {
    let max = lanes(z, f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
    max + sum_of(z, |v| exp_approx(v - max)).ln()
}

/// dz for a chunk of whole rows.
struct RowGradients<'a> {
    zs: &'a [f32],
    cs: &'a [f32],
    classes: usize,
    g: f32,
}

impl ChunkLoop for RowGradients<'_> {
    #[inline(always)]
    fn run(&self, start: usize, dzs: &mut [Out]) {
        let (n, len) = (self.classes, dzs.len());
        for (r, (dz, z)) in dzs.chunks_exact_mut(n).zip(self.zs[start..start + len].chunks_exact(n)).enumerate() {
            match class(self.cs[start / n + r], n) {
                Some(c) => {
                    let lse = log_sum_exp(z);
                    for (k, (dz, &v)) in dz.iter_mut().zip(z).enumerate() {
                        let onehot = if k == c { 1.0 } else { 0.0 };
                        // v − lse ≤ 0: lse ≥ the row's largest logit
                        dz.write(self.g * (exp_approx(v - lse) - onehot));
                    }
                }
                None => {
                    for dz in dz.iter_mut() {
                        dz.write(0.0);
                    }
                }
            }
        }
    }
}

/// (log-softmax of each row: [rows, classes], one-hot of the counted classes: [rows, classes])
/// of primitive operations. The one-hot row of a row that does not count is all zeros.
fn log_softmax_and_onehot<B: Backend>(logits: FloatTensor<B>, targets: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = logits.shape();
    let (rows, classes) = (shape[0], shape[1]);
    let device = logits.device();
    let max = B::float_max_dim(logits.clone(), 1);
    let shifted = B::float_sub(logits, max);
    let log_total = B::float_log(B::float_sum_dim(B::float_exp(shifted.clone()), 1));
    let log_p = B::float_sub(shifted, log_total);
    // ks: [1, classes] = 0, 1, …, classes − 1
    let ks: Vec<f32> = (0..classes).map(|k| k as f32).collect();
    let ks = B::float_cast(B::float_from_data(TensorData::new(ks, [1, classes]), &device), log_p.dtype().into());
    let cs = B::float_reshape(targets, Shape::new([rows, 1]));
    // 1 − |k − c| clamped at 0: 1 where k = c, else 0 (both are whole numbers)
    let distance = B::float_abs(B::float_sub(B::float_expand(ks, Shape::new([rows, classes])), B::float_expand(cs, Shape::new([rows, classes]))));
    let onehot = B::float_clamp_min(B::float_add_scalar(B::float_neg(distance), 1.0.into()), 0.0.into());
    (log_p, onehot)
}

/// The forward of primitive operations: −scale · Σ onehot ⊙ log-softmax.
fn composed_forward<B: Backend>(logits: FloatTensor<B>, targets: FloatTensor<B>, scale: f32) -> FloatTensor<B> {
    let (log_p, onehot) = log_softmax_and_onehot::<B>(logits, targets);
    B::float_mul_scalar(B::float_sum(B::float_mul(log_p, onehot)), (-scale).into())
}

/// The backward of primitive operations: scale · dloss · counted · (softmax − onehot), where a
/// row counts when its one-hot row holds its class.
fn composed_backward<B: Backend>(logits: FloatTensor<B>, targets: FloatTensor<B>, d_loss: FloatTensor<B>, scale: f32) -> FloatTensor<B> {
    let (log_p, onehot) = log_softmax_and_onehot::<B>(logits, targets);
    // counted: [rows, 1], 1 where the row has a class
    let counted = B::float_sum_dim(onehot.clone(), 1);
    let g = B::float_mul_scalar(B::float_reshape(d_loss, Shape::new([1, 1])), scale.into());
    B::float_mul(B::float_mul(B::float_sub(B::float_exp(log_p), onehot), counted), g)
}

/// What the forward keeps: the logits, the targets and the scale.
#[derive(Clone, Debug)]
struct Saved<B: Backend> {
    logits: FloatTensor<B>,
    targets: FloatTensor<B>,
    scale: f32,
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: Backend + CrossEntropyOps> Backward<B, 1> for CrossEntropyBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_logits] = ops.parents;
        // d_loss: [1]
        let d_loss = grads.consume::<B>(&ops.node);
        let Some(node) = node_logits else { return };
        let Saved { logits, targets, scale } = ops.state;
        grads.register::<B>(node.id, B::cross_entropy_backward(logits, targets, d_loss, scale));
    }
}

impl<B: Backend + CrossEntropyOps, C: CheckpointStrategy> CrossEntropyOps for Autodiff<B, C> {
    fn cross_entropy(logits: FloatTensor<Self>, targets: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        // The targets are data: only the logits are differentiated.
        let targets = targets.into_primitive();
        match CrossEntropyBackward.prepare::<C>([logits.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let logits = logits.into_primitive();
                let loss = B::cross_entropy(logits.clone(), targets.clone(), scale);
                prep.finish(Saved { logits, targets, scale }, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as CrossEntropyOps>::cross_entropy(logits.into_primitive(), targets, scale)),
        }
    }

    fn cross_entropy_backward(_logits: FloatTensor<Self>, _targets: FloatTensor<Self>, _d_loss: FloatTensor<Self>, _scale: f32) -> FloatTensor<Self> {
        unimplemented!("the cross-entropy backward is not differentiated twice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checks::{close, values};
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Device, Distribution, Int};

    /// burn's log-softmax, gather and weighted mean (the loss before this operation): the
    /// reference for values and gradients.
    fn reference(logits: Tensor<2>, classes: &[i32], count: usize) -> Tensor<1> {
        let device = logits.device();
        let rows = classes.len();
        let ids: Vec<i32> = classes.iter().map(|&c| c.max(0)).collect();
        let weights: Vec<f32> = classes.iter().map(|&c| if c >= 0 { 1.0 } else { 0.0 }).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [rows]), &device);
        let weights = Tensor::<1>::from_data(TensorData::new(weights, [rows]), &device);
        let picked = log_softmax(logits, 1).gather(1, ids.reshape([rows, 1])).reshape([rows]);
        (picked * weights).sum().mul_scalar(-1.0 / count.max(1) as f64)
    }

    fn targets(classes: &[i32], device: &Device) -> Tensor<1> {
        Tensor::from_data(TensorData::new(classes.iter().map(|&c| c as f32).collect::<Vec<_>>(), [classes.len()]), device)
    }

    /// `rows` targets over `n` classes, every fifth row ignored (−1).
    fn classes(rows: usize, n: usize) -> Vec<i32> {
        (0..rows).map(|r| if r % 5 == 3 { -1 } else { ((r * 7 + 2) % n) as i32 }).collect()
    }

    /// Values and the logits' gradient on flex (the loops) against burn's composition.
    #[test]
    fn values_and_gradients_match_burns_log_softmax() {
        let device = Device::flex().autodiff();
        // one chunk of the backward's loop, then several with a ragged last one
        for (rows, n) in [(12, 7), (700, 65)] {
            let cs = classes(rows, n);
            let count = cs.iter().filter(|&&c| c >= 0).count();
            let logits = Tensor::<2>::random([rows, n], Distribution::Normal(0.0, 3.0), &device).require_grad();
            let ours = cross_entropy(logits.clone(), targets(&cs, &device), count);
            let theirs = reference(logits.clone(), &cs, count);
            close(&values(ours.clone()), &values(theirs.clone()), 1e-5);
            let (g_ours, g_theirs) = (ours.mul_scalar(1.7).backward(), theirs.mul_scalar(1.7).backward());
            close(&values(logits.grad(&g_ours).unwrap()), &values(logits.grad(&g_theirs).unwrap()), 1e-5);
        }
    }

    /// The composed bodies (the fallback for other dtypes) against the same reference.
    #[test]
    fn composed_operations_match_burns_log_softmax() {
        let device = Device::flex().autodiff();
        let plain = Device::flex();
        let (rows, n) = (9, 6);
        let cs = classes(rows, n);
        let count = cs.iter().filter(|&&c| c >= 0).count();
        let z = Tensor::<2>::random([rows, n], Distribution::Normal(0.0, 2.0), &plain);
        let tracked = Tensor::<2>::from_data(z.to_data(), &device).require_grad();
        let reference_loss = reference(tracked.clone(), &cs, count);
        let grads = reference_loss.clone().backward();
        let scale = 1.0 / count as f32;
        let loss = composed_forward::<Dispatch>(z.clone().into_dispatch(), targets(&cs, &plain).into_dispatch(), scale);
        close(&values(Tensor::<1>::from_dispatch(loss)), &values(reference_loss), 1e-5);
        let one = Tensor::<1>::ones([1], &plain);
        let dz = composed_backward::<Dispatch>(z.into_dispatch(), targets(&cs, &plain).into_dispatch(), one.into_dispatch(), scale);
        close(&values(Tensor::<2>::from_dispatch(dz)), &values(tracked.grad(&grads).unwrap()), 1e-5);
    }

    /// Huge logits do not overflow (the maximum is subtracted first), and a class id past the
    /// last class does not count.
    #[test]
    fn large_logits_and_out_of_range_targets() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![1000.0f32, 0.0, 1000.0, 0.0, 0.0, 0.0], [2, 3]), &device);
        let loss = cross_entropy(logits, targets(&[0, 3], &device), 1);
        let value = values(loss)[0];
        assert!((value - std::f32::consts::LN_2).abs() < 1e-4, "{value}");
    }
}
