//! Σx² of four tensors in one GPU launch: the global gradient norm of gradient clipping.
//!
//! Why a hand-written kernel: clipping needs ‖g‖ over every gradient before any parameter
//! moves. Written with burn's operations that is, per gradient, one fused square and one or two
//! reduction passes — about 130 of baby GPT's 408 launches per step, each moving a few
//! kilobytes, when small models are bound by launches (docs/performance.md). This kernel
//! takes four gradients per launch: each gets `PARTS` workgroups that square and sum a
//! strided share of it in registers, then add their 256 partial sums in shared memory.
//! Each launch adds to a running [4, 8] tensor of partial sums, which the AdamW kernel
//! (`adamw_update.rs`) adds up itself. Five inputs and one output stay within WebGPU's default of
//! eight storage buffers per shader stage, with room for cubecl's metadata buffer.
//!
//! The operation is a burn backend extension, like `model/layer_norm.rs`: flex (the CPU) runs
//! the composed default body, the cubecl backend launches [`sum_squares_kernel`], and fusion
//! runs it as one opaque operation. No gradient flows through it (the optimiser works on
//! plain tensors), so there is no autodiff implementation and no backward.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DType, Dispatch, DispatchTensor, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::PadMode;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

/// Tensors per launch.
pub const GROUP: usize = 4;
/// Workgroups per tensor, each summing every `PARTS`-th block of `UNITS` elements.
pub const PARTS: usize = 8;
/// Invocations per workgroup: WebGPU's default maximum.
const UNITS: u32 = 256;

/// Partial sums of squares of all `tensors`, [GROUP, PARTS], adding up to Σx² over every element
/// of every tensor (the AdamW kernel adds the 32 up itself). `zeros` is a [GROUP, PARTS] tensor
/// of zeros and `filler` a [1] zero, both on the tensors' device: the start of the running sum
/// and the padding of a last group of fewer than four.
pub fn partial_sums_of_squares(tensors: Vec<DispatchTensor>, zeros: &Tensor<2>, filler: &Tensor<1>) -> Tensor<2> {
    let mut running = zeros.clone();
    let mut tensors = tensors.into_iter().peekable();
    while tensors.peek().is_some() {
        let mut next = || tensors.next().unwrap_or_else(|| filler.clone().into_dispatch());
        let [a, b, c, d] = [next(), next(), next(), next()];
        running = Tensor::from_dispatch(<Dispatch as SumSquaresOps>::sum_squares(running.into_dispatch(), a, b, c, d));
    }
    running
}

#[backend_extension(Flex, Cube, Fusion)]
pub trait SumSquaresOps: Backend {
    /// running + the partial sums of squares of four inputs (any shapes), [GROUP, PARTS]: row i
    /// of what is added sums to Σx² of the i-th input.
    #[fusion(dtype = running, shape = running)]
    fn sum_squares(running: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_add(running, composed::<Self>([a, b, c, d]))
    }
}

/// The reference: each input squared and summed, in the first column of its row.
fn composed<B: Backend>(inputs: [FloatTensor<B>; GROUP]) -> FloatTensor<B> {
    let sums: Vec<_> = inputs
        .into_iter()
        .map(|t| {
            let n = t.shape().num_elements();
            let flat = B::float_reshape(t, Shape::new([n]));
            B::float_reshape(B::float_sum(B::float_mul(flat.clone(), flat)), Shape::new([1, 1]))
        })
        .collect();
    // column: [GROUP, 1] -> [GROUP, PARTS]
    B::float_pad(B::float_cat(sums, 0), &[(0, 0), (0, PARTS - 1)], PadMode::Constant(0.0))
}

impl SumSquaresOps for Flex {}

impl SumSquaresOps for CubeBackend {
    fn sum_squares(running: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>) -> FloatTensor<Self> {
        if a.dtype != DType::F32 || [&running, &b, &c, &d].iter().any(|t| t.dtype != a.dtype) {
            return Self::float_add(running, composed::<Self>([a, b, c, d]));
        }
        let [a, b, c, d] = [a, b, c, d].map(dense);
        let running = into_contiguous(running);
        let client = a.client.clone();
        let out = burn_cubecl::ops::numeric::empty_device_dtype(client.clone(), a.device.clone(), Shape::new([GROUP, PARTS]), a.dtype);
        let len = |t: &CubeTensor| t.meta.num_elements() as u32;
        let lengths = [len(&a), len(&b), len(&c), len(&d)];
        kernel::sum_squares_kernel::launch(
            &client,
            CubeCount::Static((GROUP * PARTS) as u32, 1, 1),
            CubeDim::new_1d(UNITS),
            running.into_tensor_arg(),
            a.into_tensor_arg(),
            b.into_tensor_arg(),
            c.into_tensor_arg(),
            d.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            lengths[0],
            lengths[1],
            lengths[2],
            lengths[3],
            UNITS,
            PARTS as u32,
            ElemType::Float(FloatKind::F32),
        );
        out
    }
}

/// The kernel reads element i at buffer offset i: fine for any layout that covers its buffer
/// exactly once (a transposed gradient, say); anything else (a strided view) is copied first.
fn dense(t: CubeTensor) -> CubeTensor {
    let shape = t.meta.shape().clone();
    let strides = t.meta.strides().clone();
    let mut dims: Vec<(usize, usize)> = shape.iter().copied().zip(strides.iter().copied()).filter(|&(n, _)| n > 1).collect();
    dims.sort_unstable_by_key(|&(_, stride)| stride);
    let mut expected = 1;
    for (n, stride) in dims {
        if stride != expected {
            return into_contiguous(t);
        }
        expected *= n;
    }
    t
}

mod kernel {
    use crate::workgroup_sum::workgroup_sum;
    use cubecl::prelude::*;

    /// Workgroup `slot·PARTS + part` sums the squares of input `slot`'s elements
    /// part·UNITS + k·PARTS·UNITS + unit (k = 0, 1, …) and writes running[slot, part] + that.
    // running, out: [GROUP, PARTS]; a, b, c, d: [len_*] in any dense layout
    #[cube(launch)]
    pub(super) fn sum_squares_kernel<F: Float>(
        running: &Tensor<F>,
        a: &Tensor<F>,
        b: &Tensor<F>,
        c: &Tensor<F>,
        d: &Tensor<F>,
        out: &mut Tensor<F>,
        len_a: u32,
        len_b: u32,
        len_c: u32,
        len_d: u32,
        #[comptime] units: u32,
        #[comptime] parts: u32,
        #[define(F)] _dtype: ElemType,
    ) {
        let slot = CUBE_POS_X / parts;
        let part = CUBE_POS_X % parts;
        let start = part * units + UNIT_POS_X;
        let step = parts * units;
        let mine = if slot == 0 {
            squares::<F>(a, start, step, len_a)
        } else if slot == 1 {
            squares::<F>(b, start, step, len_b)
        } else if slot == 2 {
            squares::<F>(c, start, step, len_c)
        } else {
            squares::<F>(d, start, step, len_d)
        };
        let total = workgroup_sum::<F>(mine, units);
        if UNIT_POS_X == 0 {
            out[CUBE_POS_X as usize] = running[CUBE_POS_X as usize] + total;
        }
    }

    /// Σ t[i]² over i = start, start + step, … below len.
    #[cube]
    fn squares<F: Float>(t: &Tensor<F>, start: u32, step: u32, len: u32) -> F {
        let mut acc = F::new(0.0);
        let mut i = start;
        while i < len {
            let x = t[i as usize];
            acc += x * x;
            i += step;
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    fn host(t: &Tensor<2>) -> f64 {
        t.clone().into_data().try_to_vec::<f32>().unwrap().iter().map(|x| (*x as f64).powi(2)).sum()
    }

    #[test]
    fn composed_matches_the_host_sum() {
        let device = Device::flex();
        let tensors: Vec<Tensor<2>> = [[3, 5], [1, 1], [7, 2], [4, 4], [2, 9]]
            .into_iter()
            .map(|s| Tensor::<2>::random(s, Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let expected: f64 = tensors.iter().map(host).sum();
        let zeros = Tensor::<2>::zeros([GROUP, PARTS], &device);
        let filler = Tensor::<1>::zeros([1], &device);
        let partial = partial_sums_of_squares(tensors.into_iter().map(|t| t.into_dispatch()).collect(), &zeros, &filler);
        let got = host_sum(partial);
        assert!((got - expected).abs() < 1e-4 * expected, "{got} vs {expected}");
        assert_eq!(host_sum(partial_sums_of_squares(Vec::new(), &zeros, &filler)), 0.0);
    }

    fn host_sum(t: Tensor<2>) -> f64 {
        t.into_data().try_to_vec::<f32>().unwrap().iter().map(|x| *x as f64).sum()
    }
}
