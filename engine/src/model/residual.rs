//! The residual stream's gradient handed straight to the LayerNorm that reads the stream, so
//! that its backward kernel adds it in instead of a separate addition.
//!
//! Why: in a pre-norm block, `x` is read twice: by the LayerNorm in front of a sublayer and by
//! the residual addition `x + sublayer(ln(x))`. burn's autodiff sums the two gradients of `x`
//! with one more kernel launch per LayerNorm (8 of baby GPT's ~160 launches per step), when
//! the LayerNorm's backward kernel could add the addition's gradient as it writes its own dx.
//!
//! How: when a LayerNorm reads a tracked tensor x, it leaves a [`Slot`] in a table under x's
//! node id. The residual addition that later reads x ([`ResidualAddBackward`], made by
//! `LayerNormOps::add_layer_norm`) finds the slot, and in the backward pass leaves its
//! gradient for x there instead of registering it. The LayerNorm's backward runs after it
//! (autodiff runs steps deepest first, and the addition's branch is computed from the
//! LayerNorm's output, so it is deeper), takes the gradient and adds it in its kernel.
//! Whenever that order does not hold — the LayerNorm's backward already ran, or a gradient is
//! already waiting — the addition registers its gradient as burn's addition does: the fold
//! saves launches and never changes a gradient.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use burn::backend::Backend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, broadcast_shape};
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;

/// Where a residual addition leaves x's gradient for the LayerNorm that reads x.
#[derive(Debug)]
enum Hand<T> {
    /// The LayerNorm's backward has not run; nothing left yet.
    Open,
    /// A gradient of x waits for the LayerNorm's backward.
    Holding(T),
    /// The LayerNorm's backward has run: anything later goes to burn's gradients.
    Closed,
}

/// A LayerNorm's slot for the other gradient of its input (see the module's doc).
#[derive(Debug)]
pub(super) struct Slot<T>(Arc<Mutex<Hand<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Send + 'static> Slot<T> {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Hand::Open)))
    }

    /// Leaves `grad` for the LayerNorm; gives it back when the LayerNorm's backward has already
    /// run or another gradient already waits (the caller then registers it).
    pub(super) fn give(&self, grad: T) -> Result<(), T> {
        let mut hand = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *hand {
            Hand::Open => {
                *hand = Hand::Holding(grad);
                #[cfg(test)]
                FOLDS.with(|folds| folds.set(folds.get() + 1));
                Ok(())
            }
            Hand::Holding(_) | Hand::Closed => Err(grad),
        }
    }

    /// Called by the LayerNorm's backward: takes the gradient left, if any, and closes the slot.
    pub(super) fn close(&self) -> Option<T> {
        let mut hand = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match std::mem::replace(&mut *hand, Hand::Closed) {
            Hand::Holding(grad) => Some(grad),
            Hand::Open | Hand::Closed => None,
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Gradients left in slots on this thread, for tests that the fold happens.
    pub(super) static FOLDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Past this many entries, `reader` first drops those whose LayerNorm is gone.
const TABLE_PRUNE: usize = 256;

thread_local! {
    /// Node id of a tensor -> the slot of the LayerNorm that read it last. Weak: a slot lives
    /// as long as its LayerNorm's backward step (and the additions that may fill it).
    static READERS: RefCell<HashMap<u64, Weak<dyn Any + Send + Sync>>> = RefCell::new(HashMap::new());
}

/// A new slot for a LayerNorm reading the tensor with node id `x`, found by later additions.
pub(super) fn reader<T: Send + 'static>(x: u64) -> Slot<T> {
    let slot = Slot::<T>::new();
    let shared: Arc<dyn Any + Send + Sync> = slot.0.clone();
    READERS.with(|table| {
        let mut table = table.borrow_mut();
        if table.len() >= TABLE_PRUNE {
            table.retain(|_, weak| weak.strong_count() > 0);
        }
        table.insert(x, Arc::downgrade(&shared));
    });
    slot
}

/// The slot of the LayerNorm that read the tensor with node id `x`, if it is still alive.
pub(super) fn find<T: Send + 'static>(x: u64) -> Option<Slot<T>> {
    let shared = READERS.with(|table| table.borrow().get(&x).and_then(Weak::upgrade))?;
    shared.downcast::<Mutex<Hand<T>>>().ok().map(Slot)
}

/// The backward of `sum = x + branch` in `add_layer_norm`: the sum's gradient goes to the
/// branch (summed over the dimensions it was broadcast over), and to x through x's LayerNorm
/// slot when there is one.
#[derive(Debug)]
pub(super) struct ResidualAddBackward;

impl<B: Backend> Backward<B, 2> for ResidualAddBackward {
    /// The slot of the LayerNorm that read x, if any, and the branch's shape.
    type State = (Option<Slot<FloatTensor<B>>>, Shape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_branch] = ops.parents;
        // d_sum: [..., d]
        let d_sum = grads.consume::<B>(&ops.node);
        let (x_reader, branch_shape) = ops.state;
        if let Some(node) = node_branch {
            grads.register::<B>(node.id, broadcast_shape::<B>(d_sum.clone(), &branch_shape));
        }
        if let Some(node) = node_x {
            let left = match &x_reader {
                Some(slot) => slot.give(d_sum),
                None => Err(d_sum),
            };
            if let Err(d_sum) = left {
                grads.register::<B>(node.id, d_sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_one_gradient_until_its_layer_norm_closes_it() {
        let slot = Slot::<u32>::new();
        assert_eq!(slot.give(1), Ok(()));
        assert_eq!(slot.give(2), Err(2), "a second gradient goes to burn's gradients");
        assert_eq!(slot.close(), Some(1));
        assert_eq!(slot.give(3), Err(3), "after the LayerNorm's backward nothing is left behind");
        assert_eq!(slot.close(), None);
    }

    #[test]
    fn the_table_finds_live_slots_only() {
        let slot = reader::<u32>(7);
        assert!(find::<u32>(7).is_some());
        assert!(find::<f64>(7).is_none(), "another tensor type is another slot");
        assert!(find::<u32>(8).is_none());
        drop(slot);
        assert!(find::<u32>(7).is_none(), "a slot lives as long as its LayerNorm's step");
    }
}
