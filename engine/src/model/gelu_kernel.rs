//! GELU's backward on the GPU in one launch: dx = grad · (Φ(x) + x·φ(x)).
//!
//! Why: composed of primitive operations, fusion compiled the slope into one kernel but left
//! the product with the incoming gradient as a launch of its own (one per MLP, four of baby
//! GPT's launches per step). One invocation per element here reads x and grad and writes dx.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

const UNITS: usize = 256;

/// Whether the kernel takes these inputs: f32, one shape.
pub fn supported(x: &CubeTensor, grad: &CubeTensor) -> bool {
    x.dtype == burn::backend::DType::F32 && grad.dtype == x.dtype && x.meta.shape() == grad.meta.shape()
}

// x, grad: any shape (the same) -> dx: that shape
pub fn backward(x: CubeTensor, grad: CubeTensor) -> CubeTensor {
    let (x, grad) = (into_contiguous(x), into_contiguous(grad));
    let n = x.meta.shape().num_elements();
    let client = x.client.clone();
    let dx = empty_device_dtype(client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype);
    // up to 65535 workgroups in x, the rest in y
    let groups = n.div_ceil(UNITS).max(1);
    let (gx, gy) = (groups.min(65535), groups.div_ceil(65535));
    // SAFETY (unchecked): x, grad and dx have n elements each (`supported`), and invocations
    // past n stop.
    unsafe {
        kernel::gelu_backward::launch_unchecked(
            &client,
            CubeCount::Static(gx as u32, gy as u32, 1),
            CubeDim::new_1d(UNITS as u32),
            x.into_tensor_arg(),
            grad.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            n as u32,
            ElemType::Float(FloatKind::F32),
        );
    }
    dx
}

mod kernel {
    use cubecl::prelude::*;

    /// Invocation i: dx_i = grad_i · (Φ(x_i) + x_i·φ(x_i)).
    #[cube(launch_unchecked)]
    pub(super) fn gelu_backward<F: Float>(x: &Tensor<F>, grad: &Tensor<F>, dx: &mut Tensor<F>, n: u32, #[define(F)] _dtype: ElemType) {
        let i = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * CUBE_DIM_X + UNIT_POS_X;
        if i >= n {
            terminate!();
        }
        let v = x[i as usize];
        let cdf = F::new(0.5) * (F::new(1.0) + F::erf(v * F::new(std::f32::consts::FRAC_1_SQRT_2)));
        // φ(v) = e^(−v²/2)/√(2π)
        let pdf = (F::new(-0.5) * v * v).exp() * F::new(0.398_942_3);
        dx[i as usize] = grad[i as usize] * (cdf + v * pdf);
    }
}
