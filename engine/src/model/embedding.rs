//! The token embedding's lookup, whose backward adds into the gradient the tied output head
//! already gave the table; and that tied head ([`tied_head`]), whose backward gives the table a
//! plain `[vocab, d_model]` gradient to add into.
//!
//! Why: with weight tying (GPT-2, nanoGPT) the table `wte` gets two gradients: the output head's
//! product, and the lookup's scatter of the rows' gradients. burn's lookup backward scatters
//! into a new zero-filled table, and autodiff then adds the head's gradient to it: two GPU
//! launches per step (a fill and an addition) that the scatter can do without, by adding into
//! the head's gradient itself. The head is the model's last layer, so its backward runs before
//! the lookup's (autodiff runs steps deepest first); when it has not (no tied head in this
//! batch), the lookup scatters into zeros as burn's does.
//!
//! Both operations are burn backend extensions: every plain backend runs burn's own lookup and
//! product (the default bodies); the autodiff backend registers [`LookupBackward`], which keeps
//! the table's autodiff tensor to find its gradient so far (`Gradients::remove`), and
//! [`TiedHeadBackward`]. Keeping a parameter's tensor holds nothing the module does not hold
//! already.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{IndexingUpdateOp, Int, Shape, Tensor};
use burn_cubecl::CubeBackend;

/// The rows of `weight` named by `ids`.
// weight: [vocab, d_model], ids: [batch, seq] -> [batch, seq, d_model]
pub fn lookup(weight: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as LookupOps>::lookup(weight.into_dispatch(), ids.into_dispatch()))
}

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait LookupOps: Backend {
    /// burn's embedding lookup.
    #[fusion(default)]
    fn lookup(weight: FloatTensor<Self>, ids: IntTensor<Self>) -> FloatTensor<Self> {
        Self::embedding(weight, ids)
    }
}

impl LookupOps for Flex {}

impl LookupOps for CubeBackend {}

/// What the backward needs: the table's autodiff tensor (to find the gradient it already has)
/// and the ids.
#[derive(Clone, Debug)]
struct Saved<B: Backend> {
    /// the table's autodiff tensor (whatever the checkpointing, the same type)
    weight: FloatTensor<Autodiff<B>>,
    ids: IntTensor<B>,
}

#[derive(Debug)]
struct LookupBackward;

impl<B: Backend> Backward<B, 1> for LookupBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_weight] = ops.parents;
        // d_out: [batch, seq, d_model]
        let d_out = grads.consume::<B>(&ops.node);
        let Some(node) = node_weight else { return };
        let Saved { weight, ids } = ops.state;
        let grad = match grads.remove::<B>(&weight) {
            // the head's gradient so far: the rows' gradients added into it
            Some(so_far) => {
                let [b, s] = ids.shape().dims();
                let d = d_out.shape()[2];
                let ids = B::int_reshape(ids, Shape::new([b * s]));
                B::float_select_assign(so_far, 0, ids, B::float_reshape(d_out, Shape::new([b * s, d])), IndexingUpdateOp::Add)
            }
            None => B::embedding_backward(weight.primitive().clone(), d_out, ids),
        };
        grads.register::<B>(node.id, grad);
    }
}

/// The tied output head: `x · weightᵀ`, whose backward hands the table its gradient as a
/// plain `[vocab, d_model]` product.
///
/// Why not burn's `x.matmul(weight.transpose())`: its backward computes `xᵀ · d_logits`
/// (`[d_model, vocab]`) and gives the table the transpose of that, a strided view, which the
/// lookup's scatter then copies into a plain table first (one more launch and a table-sized copy
/// per step). Here the table's gradient is `d_logitsᵀ · x`, written `[vocab, d_model]` by the
/// product itself (the transposed left operand is read in place).
// x: [rows, d_model], weight: [vocab, d_model] -> [rows, vocab]
pub fn tied_head(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as TiedHeadOps>::tied_head(x.into_dispatch(), weight.into_dispatch()))
}

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait TiedHeadOps: Backend {
    /// `x · weightᵀ`.
    #[fusion(default)]
    fn tied_head(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, Self::float_transpose(weight))
    }
}

impl TiedHeadOps for Flex {}

impl TiedHeadOps for CubeBackend {}

/// What the head's backward needs: both operands.
#[derive(Clone, Debug)]
struct HeadSaved<B: Backend> {
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
}

#[derive(Debug)]
struct TiedHeadBackward;

impl<B: Backend> Backward<B, 2> for TiedHeadBackward {
    type State = HeadSaved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        // d_logits: [rows, vocab]
        let d_logits = grads.consume::<B>(&ops.node);
        let HeadSaved { x, weight } = ops.state;
        if let Some(node) = node_weight {
            // d_weight: [vocab, rows] x [rows, d_model] -> [vocab, d_model], a plain table
            grads.register::<B>(node.id, B::float_matmul(B::float_transpose(d_logits.clone()), x));
        }
        if let Some(node) = node_x {
            // d_x: [rows, vocab] x [vocab, d_model] -> [rows, d_model]
            grads.register::<B>(node.id, B::float_matmul(d_logits, weight));
        }
    }
}

impl<B: Backend + TiedHeadOps, C: CheckpointStrategy> TiedHeadOps for Autodiff<B, C> {
    fn tied_head(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match TiedHeadBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let output = B::tied_head(x.clone(), weight.clone());
                prep.finish(HeadSaved { x, weight }, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::tied_head(x.into_primitive(), weight.into_primitive())),
        }
    }
}

impl<B: Backend + LookupOps, C: CheckpointStrategy> LookupOps for Autodiff<B, C> {
    fn lookup(weight: FloatTensor<Self>, ids: IntTensor<Self>) -> FloatTensor<Self> {
        match LookupBackward.prepare::<C>([weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = B::embedding(weight.primitive().clone(), ids.clone());
                prep.finish(Saved { weight, ids }, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::embedding(weight.into_primitive(), ids)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checks::{close, values};
    use burn::module::Param;
    use burn::nn::Embedding;
    use burn::tensor::{Device, Distribution, TensorData};

    /// The tied head's values and both gradients equal burn's `x.matmul(weight.transpose())`.
    #[test]
    fn tied_head_matches_burns_product() {
        let device = Device::flex().autodiff();
        let (rows, d, vocab) = (9, 5, 7);
        let r = Tensor::<2>::random([rows, vocab], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<2>::random([rows, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let weight = Tensor::<2>::random([vocab, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let ours = tied_head(x.clone(), weight.clone());
        let theirs = x.clone().matmul(weight.clone().transpose());
        close(&values(ours.clone()), &values(theirs.clone()), 1e-6);
        let (g_ours, g_theirs) = ((ours * r.clone()).sum().backward(), (theirs * r).sum().backward());
        close(&values(x.grad(&g_ours).unwrap()), &values(x.grad(&g_theirs).unwrap()), 1e-5);
        close(&values(weight.grad(&g_ours).unwrap()), &values(weight.grad(&g_theirs).unwrap()), 1e-5);
    }

    /// A tied table, looked up and used as the output head (and a lookup alone): the values and
    /// the table's gradient equal burn's `Embedding`, with repeated ids.
    #[test]
    fn tied_gradient_matches_burns_embedding() {
        let device = Device::flex().autodiff();
        let (vocab, d, b, s) = (7, 5, 3, 4);
        let ids: Vec<i64> = (0..b * s).map(|i| ((i * 5) % 6) as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &device);
        let r = Tensor::<3>::random([b, s, vocab], Distribution::Normal(0.0, 1.0), &device);
        let q = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &device);
        for tied in [true, false] {
            let weight = Tensor::<2>::random([vocab, d], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let loss = |x: Tensor<3>| {
                let head = tied_head(x.clone().reshape([b * s, d]), weight.clone()).reshape([b, s, vocab]);
                let tail = (x * q.clone()).sum();
                if tied { (head * r.clone()).sum() + tail } else { tail }
            };
            let ours = lookup(weight.clone(), ids.clone());
            let theirs = Embedding { weight: Param::from_tensor(weight.clone()) }.forward(ids.clone());
            close(&values(ours.clone()), &values(theirs.clone()), 0.0);
            let (g_ours, g_theirs) = (loss(ours).backward(), loss(theirs).backward());
            close(&values(weight.grad(&g_ours).unwrap()), &values(weight.grad(&g_theirs).unwrap()), 1e-5);
        }
    }
}
