//! The sum of one value per invocation over a GPU workgroup, in shared memory: the last step of
//! the kernels that reduce (the gradient's sum of squares, the cross-entropy's loss, LayerNorm's
//! column sums).
//!
//! Two levels with two barriers, not a halving tree (log₂ 256 + 1 = 9 barriers): after the
//! first barrier [`LANES`] invocations each add a strided share of the values, after the
//! second every invocation adds those [`LANES`] partial sums. A barrier is cheap on a GPU, but a
//! CPU rasteriser (Chromium's SwiftShader, lavapipe) switches every invocation of the workgroup
//! at each one: the halving tree made LayerNorm's column sums ~10 ms a launch there for `tiny`
//! (docs/performance.md, "In the tab", twenty-seventh session). On a GPU the two levels are 16
//! dependent additions each where the tree had 8 rounds of one addition and a barrier.

use cubecl::prelude::*;

/// Invocations that add the first level's shares (and partial sums the second level adds).
const LANES: u32 = 16;

/// Whether a workgroup of `units` invocations can be summed (its kernels assert it at compile
/// time beside their workgroup sizes).
pub(crate) const fn fits(units: u32) -> bool {
    units >= LANES && units.is_multiple_of(LANES)
}

/// Σ `value` over the workgroup's `units` invocations (a multiple of [`LANES`], the workgroup's
/// size); every invocation gets the total. Every invocation must call it (it synchronises the
/// workgroup).
#[cube]
pub(crate) fn workgroup_sum<F: Float>(value: F, #[comptime] units: u32) -> F {
    let mut values = Shared::<[F]>::new_slice(units as usize);
    let mut partial = Shared::<[F]>::new_slice(LANES as usize);
    values[UNIT_POS_X as usize] = value;
    sync_cube();
    if UNIT_POS_X < LANES {
        partial[UNIT_POS_X as usize] = strided_sum::<F>(&values, UNIT_POS_X, units);
    }
    sync_cube();
    lanes_sum::<F>(&partial)
}

/// [`workgroup_sum`] of two values at once, through the same two barriers: (Σ a, Σ b).
#[cube]
pub(crate) fn workgroup_sum_pair<F: Float>(a: F, b: F, #[comptime] units: u32) -> (F, F) {
    let mut values_a = Shared::<[F]>::new_slice(units as usize);
    let mut values_b = Shared::<[F]>::new_slice(units as usize);
    let mut partial_a = Shared::<[F]>::new_slice(LANES as usize);
    let mut partial_b = Shared::<[F]>::new_slice(LANES as usize);
    values_a[UNIT_POS_X as usize] = a;
    values_b[UNIT_POS_X as usize] = b;
    sync_cube();
    if UNIT_POS_X < LANES {
        partial_a[UNIT_POS_X as usize] = strided_sum::<F>(&values_a, UNIT_POS_X, units);
        partial_b[UNIT_POS_X as usize] = strided_sum::<F>(&values_b, UNIT_POS_X, units);
    }
    sync_cube();
    (lanes_sum::<F>(&partial_a), lanes_sum::<F>(&partial_b))
}

/// values[lane] + values[lane + LANES] + … below `units`.
#[cube]
fn strided_sum<F: Float>(values: &Shared<[F]>, lane: u32, #[comptime] units: u32) -> F {
    let mut sum = F::new(0.0);
    for k in 0..units / LANES {
        sum += values[(lane + k * LANES) as usize];
    }
    sum
}

/// partial[0] + … + partial[LANES − 1].
#[cube]
fn lanes_sum<F: Float>(partial: &Shared<[F]>) -> F {
    let mut total = F::new(0.0);
    for k in 0..LANES {
        total += partial[k as usize];
    }
    total
}
