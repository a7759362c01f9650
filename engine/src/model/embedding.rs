//! The token embedding's lookup, whose backward adds into the gradient the tied output head
//! already gave the table.
//!
//! Why: with weight tying (GPT-2, nanoGPT) the table `wte` gets two gradients: the output head's
//! product, and the lookup's scatter of the rows' gradients. burn's lookup backward scatters
//! into a new zero-filled table, and autodiff then adds the head's gradient to it: two GPU
//! launches per step (a fill and an addition) that the scatter can do without, by adding into
//! the head's gradient itself. The head is the model's last layer, so its backward runs before
//! the lookup's (autodiff runs steps deepest first); when it has not (no tied head in this
//! batch), the lookup scatters into zeros as burn's does.
//!
//! The operation is a burn backend extension: every plain backend runs burn's own lookup (the
//! default body); the autodiff backend registers [`LookupBackward`], which keeps the table's
//! autodiff tensor to find its gradient so far (`Gradients::remove`). Keeping a parameter's
//! tensor holds nothing the module does not hold already.

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
                let head = x.clone().reshape([b * s, d]).matmul(weight.clone().transpose()).reshape([b, s, vocab]);
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
