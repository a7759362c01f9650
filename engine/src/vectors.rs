//! Reading a GPU kernel's rows a few floats at a time: the widest vector the device loads in
//! one access that divides the row, and the sum of a vector's lanes.
//!
//! Why: the hand-written kernels walk rows of 16–128 floats (a head, a token's features). Four
//! floats a load take a quarter of the load instructions, and of the bounds clamps a browser
//! adds to each storage access. On lavapipe baby GPT's attention kernels ran 2.1× faster
//! (docs/performance.md, "GPU", twenty-eighth session).

use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Floats per load for rows of `n` floats of `tensor`'s device: the widest of the device's
/// vector sizes that divides `n` (1 at worst), so that every row starts on a vector and ends
/// where its last vector does.
pub(crate) fn lanes(tensor: &CubeTensor, n: usize) -> usize {
    tensor.client.io_optimized_vector_sizes(size_of::<f32>()).filter(|lanes| n.is_multiple_of(*lanes)).max().unwrap_or(1)
}

/// The sum of `v`'s lanes.
#[cube]
pub(crate) fn lane_sum<F: Float, N: Size>(v: Vector<F, N>) -> F {
    let mut total = F::new(0.0);
    #[unroll]
    for lane in 0..v.vector_size() {
        total += v.extract(lane);
    }
    total
}
