//! Σx² of six tensors in one GPU launch: the global gradient norm of gradient clipping.
//!
//! Why a hand-written kernel: clipping needs ‖g‖ over every gradient before any parameter
//! moves. Written with burn's operations that is, per gradient, one fused square and one or two
//! reduction passes — about 130 of baby GPT's 408 launches per step, each moving a few
//! kilobytes, when small models are bound by launches (docs/performance.md). This kernel
//! takes six gradients per launch: each gets `PARTS` workgroups that square and sum a
//! strided share of it in registers, then add their 256 partial sums in shared memory.
//! Each launch adds, in place, to a running [6, 8] tensor of partial sums, which the AdamW
//! kernel (`adamw_update.rs`) adds up itself. Six inputs and the running sum (read and written)
//! are seven storage buffers, with cubecl's metadata buffer WebGPU's default of eight per shader
//! stage (four gradients per launch when the running sum was read from one buffer and written to
//! another: baby GPT's 36 gradients took 9 launches, now 6).
//!
//! The operation is a burn backend extension, like `model/layer_norm.rs`: flex (the CPU) runs
//! one pass per input ([`flex_sums`]), the cubecl backend launches [`sum_squares_kernel`], and fusion
//! runs it as one opaque operation. No gradient flows through it (the optimiser works on
//! plain tensors), so there is no autodiff implementation and no backward.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DType, Dispatch, DispatchTensor, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::PadMode;
use burn::tensor::{Bytes, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_flex::{FlexTensor, Layout};
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

/// Tensors per launch.
pub const GROUP: usize = 6;
/// Workgroups per tensor, each summing every `PARTS`-th block of `UNITS` elements.
pub const PARTS: usize = 8;
/// Invocations per workgroup: WebGPU's default maximum.
const UNITS: u32 = 256;
const _: () = assert!(crate::workgroup_sum::fits(UNITS));

/// Partial sums of squares of all `tensors`, [GROUP, PARTS], adding up to Σx² over every element
/// of every tensor (the AdamW kernel adds the 48 up itself). `zeros` is a [GROUP, PARTS] tensor
/// of zeros and `filler` a `[1]` zero, both on the tensors' device: the sums of no tensors, and
/// the padding of a last group of fewer than six.
pub fn partial_sums_of_squares(tensors: Vec<DispatchTensor>, zeros: &Tensor<2>, filler: &Tensor<1>) -> Tensor<2> {
    let mut running: Option<Tensor<2>> = None;
    let mut tensors = tensors.into_iter().peekable();
    while tensors.peek().is_some() {
        let mut next = || tensors.next().unwrap_or_else(|| filler.clone().into_dispatch());
        let [a, b, c, d, e, f] = [(); GROUP].map(|_| next());
        let sums = match running {
            Some(running) => <Dispatch as SumSquaresOps>::add_sum_squares(running.into_dispatch(), a, b, c, d, e, f),
            None => <Dispatch as SumSquaresOps>::sum_squares(a, b, c, d, e, f),
        };
        running = Some(Tensor::from_dispatch(sums));
    }
    running.unwrap_or_else(|| zeros.clone())
}

#[backend_extension(Flex, Cube, Fusion)]
pub trait SumSquaresOps: Backend {
    /// The partial sums of squares of six inputs (any shapes), [GROUP, PARTS]: row i sums to
    /// Σx² of the i-th input.
    #[fusion(dtype = a, shape = partials_shape(a))]
    fn sum_squares(a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>, e: FloatTensor<Self>, f: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::<Self>([a, b, c, d, e, f])
    }

    /// running + [`SumSquaresOps::sum_squares`] of six more inputs.
    #[fusion(dtype = running, shape = running)]
    fn add_sum_squares(running: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>, e: FloatTensor<Self>, f: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_onto::<Self>(Some(running), [a, b, c, d, e, f])
    }
}

fn partials_shape(_a: &Shape) -> Shape {
    Shape::new([GROUP, PARTS])
}

/// [`composed`]'s sums of `inputs`, added to `running` when there is one: the trait's default
/// body, and each backend's way out for inputs its own loop or kernel does not take.
fn composed_onto<B: Backend>(running: Option<FloatTensor<B>>, inputs: [FloatTensor<B>; GROUP]) -> FloatTensor<B> {
    let sums = composed::<B>(inputs);
    match running {
        Some(running) => B::float_add(running, sums),
        None => sums,
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

/// On the CPU, each input's Σx² in one pass ([`crate::cpu_loops::sum_of`]), where the
/// composed body wrote each gradient's squares to a new tensor and then summed it: ~0.6 ms of
/// a baby-GPT step in the tab, where both workers clip every step (docs/performance.md).
impl SumSquaresOps for Flex {
    fn sum_squares(a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>, e: FloatTensor<Self>, f: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_sums(None, [a, b, c, d, e, f])
    }

    fn add_sum_squares(running: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>, e: FloatTensor<Self>, f: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_sums(Some(running), [a, b, c, d, e, f])
    }
}

/// [`SumSquaresOps`] on flex: row i's first column is Σx² of `inputs[i]` (plus `running`'s),
/// the rest `running`'s or zero, as the composed body lays them out.
// inputs: any shapes, running: [GROUP, PARTS] -> [GROUP, PARTS]
fn flex_sums(running: Option<FlexTensor>, inputs: [FlexTensor; GROUP]) -> FlexTensor {
    let shape = Shape::new([GROUP, PARTS]);
    let fits = inputs.iter().chain(&running).all(|t| t.dtype() == DType::F32) && running.as_ref().is_none_or(|r| *r.layout().shape() == shape);
    if !fits {
        return composed_onto::<Flex>(running, inputs);
    }
    let mut out = match running {
        Some(running) => crate::cpu_loops::contiguous(running).as_slice::<f32>().expect("contiguous f32").to_vec(),
        None => vec![0.0; GROUP * PARTS],
    };
    for (row, t) in out.chunks_exact_mut(PARTS).zip(inputs) {
        let t = crate::cpu_loops::contiguous(t);
        row[0] += squares(t.as_slice::<f32>().expect("contiguous f32"));
    }
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), DType::F32)
}

/// The partial sums of squares of tensors whose Σx² are known already, `sums` in the order
/// [`partial_sums_of_squares`] takes the tensors: laid out and added as flex's loop adds them
/// (the k-th in row k mod GROUP, in order), so that the norm is the same to the bit. The tab's
/// split step has them from the pass that adds the two workers' gradients
/// ([`add_and_square`]), one read of every gradient less per step.
// sums: [tensors] -> [GROUP, PARTS]
pub fn partials_of_sums(sums: &[f32], device: &burn::tensor::Device) -> Tensor<2> {
    let mut out = vec![0.0f32; GROUP * PARTS];
    for (k, &s) in sums.iter().enumerate() {
        out[(k % GROUP) * PARTS] += s;
    }
    Tensor::from_data(burn::tensor::TensorData::new(out, [GROUP, PARTS]), device)
}

/// Σx² over a slice on the CPU, as flex's loop sums each gradient.
pub fn squares(x: &[f32]) -> f32 {
    crate::cpu_loops::vectorized(Squares(x))
}

/// own ← own + theirs, element by element, and Σ of the sums' squares in one pass: the sum
/// [`squares`] would give over the result afterwards, to the bit (the same eight lanes, in the
/// same order), for one read of the result less.
pub fn add_and_square(own: &mut [f32], theirs: &[f32]) -> f32 {
    assert_eq!(own.len(), theirs.len(), "two gradients of one parameter");
    crate::cpu_loops::vectorized(AddSquares(own, theirs))
}

/// [`add_and_square`]'s loop: [`crate::cpu_loops::sum_of`]'s lanes, each value the sum written.
struct AddSquares<'a>(&'a mut [f32], &'a [f32]);

impl crate::cpu_loops::Kernel for AddSquares<'_> {
    type Output = f32;
    #[inline(always)]
    fn run(self) -> f32 {
        let mut acc = [0.0f32; 8];
        let (mut own, mut theirs) = (self.0.chunks_exact_mut(8), self.1.chunks_exact(8));
        for (a, b) in (&mut own).zip(&mut theirs) {
            for l in 0..8 {
                let s = a[l] + b[l];
                a[l] = s;
                acc[l] += s * s;
            }
        }
        for (l, (a, &b)) in own.into_remainder().iter_mut().zip(theirs.remainder()).enumerate() {
            let s = *a + b;
            *a = s;
            acc[l] += s * s;
        }
        acc.iter().sum()
    }
}

/// Σx² over a slice, in eight lanes.
struct Squares<'a>(&'a [f32]);

impl crate::cpu_loops::Kernel for Squares<'_> {
    type Output = f32;
    #[inline(always)]
    fn run(self) -> f32 {
        crate::cpu_loops::sum_of(self.0, |x| x * x)
    }
}

impl SumSquaresOps for CubeBackend {
    fn sum_squares(a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>, e: FloatTensor<Self>, f: FloatTensor<Self>) -> FloatTensor<Self> {
        launch(None, [a, b, c, d, e, f])
    }

    fn add_sum_squares(running: FloatTensor<Self>, a: FloatTensor<Self>, b: FloatTensor<Self>, c: FloatTensor<Self>, d: FloatTensor<Self>, e: FloatTensor<Self>, f: FloatTensor<Self>) -> FloatTensor<Self> {
        launch(Some(running), [a, b, c, d, e, f])
    }
}

/// The kernel's launch: the sums of squares of `inputs` added to `running`, or written to a new
/// tensor without one.
fn launch(running: Option<CubeTensor>, inputs: [CubeTensor; GROUP]) -> CubeTensor {
    type B = CubeBackend;
    if inputs.iter().chain(&running).any(|t| t.dtype != DType::F32) {
        return composed_onto::<B>(running, inputs);
    }
    let [a, b, c, d, e, f] = inputs.map(dense);
    // Added to in place: the running sum's own buffer (a copy of it when something else
    // holds that buffer or another thread's stream made it), or a new one that the kernel
    // writes rather than adds to.
    let accumulate = running.is_some();
    let running = match running.map(into_contiguous) {
        Some(running) if super::writable_in_place(&running) => running,
        Some(running) => running.copy(),
        None => burn_cubecl::ops::numeric::empty_device_dtype(a.client.clone(), a.device.clone(), Shape::new([GROUP, PARTS]), a.dtype),
    };
    let client = a.client.clone();
    let len = |t: &CubeTensor| t.meta.num_elements() as u32;
    let lengths = [len(&a), len(&b), len(&c), len(&d), len(&e), len(&f)];
    // SAFETY (unchecked): each input is read below its own element count (`squares`' loop),
    // and `running` has GROUP·PARTS elements, one per workgroup.
    unsafe {
        kernel::sum_squares_kernel::launch_unchecked(
            &client,
            CubeCount::Static((GROUP * PARTS) as u32, 1, 1),
            CubeDim::new_1d(UNITS),
            running.clone().into_tensor_arg(),
            a.into_tensor_arg(),
            b.into_tensor_arg(),
            c.into_tensor_arg(),
            d.into_tensor_arg(),
            e.into_tensor_arg(),
            f.into_tensor_arg(),
            lengths[0],
            lengths[1],
            lengths[2],
            lengths[3],
            lengths[4],
            lengths[5],
            UNITS,
            PARTS as u32,
            accumulate,
            ElemType::Float(FloatKind::F32),
        );
    }
    running
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
    /// part·UNITS + k·PARTS·UNITS + unit (k = 0, 1, …) and adds that to running[slot, part]
    /// (writes it there, without `accumulate`).
    // running: [GROUP, PARTS]; a…f: [len_*] in any dense layout
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sum_squares_kernel<F: Float>(
        running: &mut Tensor<F>,
        a: &Tensor<F>,
        b: &Tensor<F>,
        c: &Tensor<F>,
        d: &Tensor<F>,
        e: &Tensor<F>,
        f: &Tensor<F>,
        len_a: u32,
        len_b: u32,
        len_c: u32,
        len_d: u32,
        len_e: u32,
        len_f: u32,
        #[comptime] units: u32,
        #[comptime] parts: u32,
        #[comptime] accumulate: bool,
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
        } else if slot == 3 {
            squares::<F>(d, start, step, len_d)
        } else if slot == 4 {
            squares::<F>(e, start, step, len_e)
        } else {
            squares::<F>(f, start, step, len_f)
        };
        let total = workgroup_sum::<F>(mine, units);
        if UNIT_POS_X == 0 {
            if accumulate {
                running[CUBE_POS_X as usize] += total;
            } else {
                running[CUBE_POS_X as usize] = total;
            }
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

    /// Flex's loop: over seven gradients (a second launch's `add_sum_squares`), one of them
    /// transposed (not contiguous), lengths with and without a remainder of eight; against
    /// the host's sum and against the composed body, row by row.
    #[test]
    fn flex_loop_matches_the_host_sum_and_the_composed_body() {
        let device = Device::flex();
        let tensors: Vec<Tensor<2>> = [[3, 5], [1, 1], [64, 33], [4, 4], [2, 9], [16, 8], [129, 7]]
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let t = Tensor::<2>::random(s, Distribution::Normal(0.0, 1.0), &device);
                if i == 2 { t.transpose() } else { t }
            })
            .collect();
        let expected: f64 = tensors.iter().map(host).sum();
        let zeros = Tensor::<2>::zeros([GROUP, PARTS], &device);
        let filler = Tensor::<1>::zeros([1], &device);
        let partial = partial_sums_of_squares(tensors.iter().map(|t| t.clone().into_dispatch()).collect(), &zeros, &filler);
        assert_eq!(partial.dims(), [GROUP, PARTS]);
        let got = host_sum(partial.clone());
        assert!((got - expected).abs() < 1e-5 * expected, "{got} vs {expected}");
        // the first six, row by row, as the composed body lays them out
        let six: [FlexTensor; GROUP] = std::array::from_fn(|i| FlexTensor::from_data(tensors[i].clone().into_data()));
        let (a, b) = (flex_sums(None, six.clone()).into_data().try_to_vec::<f32>().unwrap(), composed::<Flex>(six).into_data().try_to_vec::<f32>().unwrap());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 * y.abs(), "{a:?} vs {b:?}");
        }
        assert_eq!(a.iter().zip(&b).filter(|(x, _)| **x == 0.0).count(), GROUP * (PARTS - 1), "zeros past each row's first column");
    }

    /// The add's pass: the sums burn's addition gives, and the Σx² the clipping pass gives
    /// over them, to the bit, for lengths with and without a remainder of eight; the partial
    /// sums laid out from known sums equal the clipping pass's, to the bit, over 13 tensors.
    #[test]
    fn add_and_square_match_the_separate_passes() {
        let device = Device::flex();
        let random = |n: usize| Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        let mut sums = Vec::new();
        let mut tensors = Vec::new();
        for n in [1, 7, 8, 9, 64, 1000, 3, 16, 17, 5, 129, 2, 40] {
            let (a, b) = (random(n), random(n));
            let expected = (a.clone() + b.clone()).into_data().try_to_vec::<f32>().unwrap();
            let (mut own, theirs) = (a.into_data().try_to_vec::<f32>().unwrap(), b.into_data().try_to_vec::<f32>().unwrap());
            let s = add_and_square(&mut own, &theirs);
            assert_eq!(own, expected, "n = {n}");
            assert_eq!(s.to_bits(), squares(&expected).to_bits(), "n = {n}");
            sums.push(s);
            tensors.push(Tensor::<1>::from_data(burn::tensor::TensorData::new(expected, [n]), &device));
        }
        let zeros = Tensor::<2>::zeros([GROUP, PARTS], &device);
        let filler = Tensor::<1>::zeros([1], &device);
        let clipping = partial_sums_of_squares(tensors.into_iter().map(|t| t.into_dispatch()).collect(), &zeros, &filler);
        let laid_out = partials_of_sums(&sums, &device);
        assert_eq!(laid_out.into_data().try_to_vec::<f32>().unwrap(), clipping.into_data().try_to_vec::<f32>().unwrap());
    }

    #[test]
    fn partial_sums_match_the_host_sum() {
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
