//! Softmax cross-entropy on the GPU: one launch forward, one backward.
//!
//! The forward is one workgroup: each invocation takes every `UNITS`-th row, computes its
//! log-sum-exp and loss, and the workgroup adds the rows' losses up in shared memory — the
//! loss of a small model's batch (hundreds to a few thousand rows of tens to hundreds of
//! classes) is too little work to be worth a second launch for the sum. In the backward one
//! invocation takes one row, recomputes its softmax and writes its gradient. The arithmetic is
//! `cross_entropy.rs`'s:
//!   forward   loss = scale · Σ_counted rows (m_r + ln Σ_k e^(z_rk − m_r) − z_r[c_r]),  m_r = max_k z_rk
//!   backward  dz_rk = scale · dloss · (e^(z_rk − lse_r) − [k = c_r])  (0 for rows that do not count)

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

const UNITS: usize = 256;
const _: () = assert!(crate::workgroup_sum::fits(UNITS as u32));

// logits: [rows, classes], targets: [rows] -> loss: [1]
pub fn forward(logits: CubeTensor, targets: CubeTensor, scale: f32) -> CubeTensor {
    let (logits, targets) = (into_contiguous(logits), into_contiguous(targets));
    let (rows, classes) = (logits.meta.shape()[0], logits.meta.shape()[1]);
    let client = logits.client.clone();
    let loss = empty_device_dtype(client.clone(), logits.device.clone(), Shape::new([1]), logits.dtype);
    // SAFETY (unchecked): logits [rows, classes] and targets [rows] (the caller's `supported`);
    // the rows loop stops at `rows`, and a target indexes only when it is a class below
    // `classes` (`counts`).
    unsafe {
        kernel::cross_entropy_forward::launch_unchecked(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            logits.into_tensor_arg(),
            targets.into_tensor_arg(),
            loss.clone().into_tensor_arg(),
            rows as u32,
            classes as u32,
            scale,
            UNITS as u32,
            ElemType::Float(FloatKind::F32),
        );
    }
    loss
}

// logits: [rows, classes], targets: [rows], d_loss: [1] -> d_logits: [rows, classes]
pub fn backward(logits: CubeTensor, targets: CubeTensor, d_loss: CubeTensor, scale: f32) -> CubeTensor {
    let (logits, targets, d_loss) = (into_contiguous(logits), into_contiguous(targets), into_contiguous(d_loss));
    let (rows, classes) = (logits.meta.shape()[0], logits.meta.shape()[1]);
    let client = logits.client.clone();
    let d_logits = empty_device_dtype(client.clone(), logits.device.clone(), logits.meta.shape().clone(), logits.dtype);
    // SAFETY (unchecked): as the forward's; invocations past `rows` stop, and d_loss has an
    // element to read (the caller checked).
    unsafe {
        kernel::cross_entropy_backward::launch_unchecked(
            &client,
            CubeCount::Static(rows.div_ceil(UNITS).max(1) as u32, 1, 1),
            CubeDim::new_1d(UNITS as u32),
            logits.into_tensor_arg(),
            targets.into_tensor_arg(),
            d_loss.into_tensor_arg(),
            d_logits.clone().into_tensor_arg(),
            rows as u32,
            classes as u32,
            scale,
            ElemType::Float(FloatKind::F32),
        );
    }
    d_logits
}

mod kernel {
    use crate::workgroup_sum::workgroup_sum;
    use cubecl::prelude::*;

    /// The one workgroup: invocation u sums the losses of rows u, u + units, …, then the
    /// workgroup adds the sums up.
    // logits: [rows, classes], targets: [rows], loss: [1]
    #[cube(launch_unchecked)]
    pub(super) fn cross_entropy_forward<F: Float>(
        logits: &Tensor<F>,
        targets: &Tensor<F>,
        loss: &mut Tensor<F>,
        rows: u32,
        classes: u32,
        scale: f32,
        #[comptime] units: u32,
        #[define(F)] _dtype: ElemType,
    ) {
        let mut total = F::new(0.0);
        let mut r = UNIT_POS_X;
        while r < rows {
            let c = targets[r as usize];
            if counts::<F>(c, classes) {
                let start = r * classes;
                let lse = log_sum_exp::<F>(logits, start, classes);
                total += lse - logits[(start + u32::cast_from(c)) as usize];
            }
            r += CUBE_DIM_X;
        }
        let sum = workgroup_sum::<F>(total, units);
        if UNIT_POS_X == 0 {
            loss[0] = sum * F::cast_from(scale);
        }
    }

    /// Invocation r: the gradient of row r.
    // logits, d_logits: [rows, classes], targets: [rows], d_loss: [1]
    #[cube(launch_unchecked)]
    pub(super) fn cross_entropy_backward<F: Float>(
        logits: &Tensor<F>,
        targets: &Tensor<F>,
        d_loss: &Tensor<F>,
        d_logits: &mut Tensor<F>,
        rows: u32,
        classes: u32,
        scale: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let r = ABSOLUTE_POS_X;
        if r >= rows {
            terminate!();
        }
        let start = r * classes;
        let c = targets[r as usize];
        if counts::<F>(c, classes) {
            let g = d_loss[0] * F::cast_from(scale);
            let class = u32::cast_from(c);
            let lse = log_sum_exp::<F>(logits, start, classes);
            for k in 0..classes {
                let i = (start + k) as usize;
                let p = (logits[i] - lse).exp();
                if k == class {
                    d_logits[i] = g * (p - F::new(1.0));
                } else {
                    d_logits[i] = g * p;
                }
            }
        } else {
            for k in 0..classes {
                d_logits[(start + k) as usize] = F::new(0.0);
            }
        }
    }

    /// Whether a row whose target is `c` counts: a class in [0, classes) (−1 marks an ignored
    /// position), as `class` in `cross_entropy.rs` decides on the CPU.
    #[cube]
    fn counts<F: Float>(c: F, classes: u32) -> bool {
        c >= F::new(0.0) && c < F::cast_from(classes)
    }

    /// ln Σ_k e^(z_k) over the row z = logits[start..start + classes], shifted by its maximum.
    #[cube]
    fn log_sum_exp<F: Float>(logits: &Tensor<F>, start: u32, classes: u32) -> F {
        let mut max = logits[start as usize];
        for k in 1..classes {
            max = F::max(max, logits[(start + k) as usize]);
        }
        let mut total = F::new(0.0);
        for k in 0..classes {
            total += (logits[(start + k) as usize] - max).exp();
        }
        max + total.ln()
    }
}
