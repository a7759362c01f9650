//! The sum of one value per invocation over a GPU workgroup, in shared memory: the last step of
//! the kernels that reduce (the gradient's sum of squares, the cross-entropy's loss, LayerNorm's
//! column sums).

use cubecl::prelude::*;

/// Σ `value` over the workgroup's `units` invocations (a power of two, the workgroup's size),
/// by halving in shared memory; every invocation gets the total. Every invocation must call it
/// (it synchronises the workgroup).
#[cube]
pub(crate) fn workgroup_sum<F: Float>(value: F, #[comptime] units: u32) -> F {
    let mut shared = Shared::<[F]>::new_slice(units as usize);
    let unit = UNIT_POS_X as usize;
    shared[unit] = value;
    sync_cube();
    let mut half = CUBE_DIM_X / 2;
    while half > 0 {
        if UNIT_POS_X < half {
            let other = shared[unit + half as usize];
            shared[unit] += other;
        }
        sync_cube();
        half /= 2;
    }
    shared[0]
}
