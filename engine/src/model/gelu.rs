//! GELU (Hendrycks & Gimpel, "Gaussian Error Linear Units", 2016), exact form as in nanoGPT's
//! `nn.GELU()`: gelu(x) = x·Φ(x) = ½·x·(1 + erf(x/√2)), as one burn custom operation with its
//! closed-form backward gelu'(x) = Φ(x) + x·φ(x).
//!
//! Why: on the CPU, flex computes erf with libm's scalar `erff`, one call per element, in the
//! forward and again in the backward — about 10 % of a baby-GPT step on flex
//! (docs/performance.md). Here the loops vectorise (SSE/AVX natively, SIMD128 in the browser),
//! with two branch-free erfs, both within 10⁻⁶ of libm's `erff` in f32:
//! - **in training**, one loop computes gelu(x) and the slope gelu'(x) together and keeps the
//!   slope instead of x, so the backward is one multiply. φ needs e^(−x²/2), which Abramowitz &
//!   Stegun's 7.1.26 erf (the formula PyTorch's own vectorised CPU erf uses) computes inside, so
//!   each element costs one erf and one exp per step, where a forward and a backward that each
//!   compute their own cost two erfs. In the worker's FMA build the loop is written on four
//!   lanes with relaxed SIMD's fused multiply-add (`lanes4.rs`), one per polynomial step;
//! - **outside training** (evaluation, sampling), the forward alone takes the rational erf that
//!   XLA and Eigen vectorise: no exp, ~36 vector operations per four elements in wasm against
//!   ~48.
//!
//! On the GPU the forward is the default body: the same closed form composed of primitive
//! operations, which fusion compiles into the neighbouring elementwise kernels; the backward is
//! one kernel of its own (`gelu_kernel.rs`), where fusion left the product with the incoming
//! gradient unfused. (burn's own GELU backward on the GPU differentiates the tanh
//! approximation instead of the exact form.)

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use burn_cubecl::CubeBackend;
use burn_flex::FlexTensor;

use super::gelu_kernel;
use crate::cpu_loops;
#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
use crate::lanes4::F32x4;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π)
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

// x: any shape -> the same shape
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GeluOps>::exact_gelu(x.into_dispatch()))
}

#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait GeluOps: Backend {
    /// ½·x·(1 + erf(x/√2))
    #[fusion(default)]
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_forward::<Self>(x)
    }

    /// grad · (Φ(x) + x·φ(x))
    #[fusion(dtype = x, shape = x)]
    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_backward::<Self>(x, grad)
    }

    /// The forward in training: gelu(x), and what [`GeluOps::exact_gelu_backward_saved`] needs
    /// of x. By default x itself (on the GPU fusion folds the recomputed Φ into the backward's
    /// kernel); flex keeps the slope gelu'(x), computed in the forward's loop.
    #[fusion(default)]
    fn exact_gelu_saving(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        (Self::exact_gelu(x.clone()), x)
    }

    /// The backward from what [`GeluOps::exact_gelu_saving`] kept.
    #[fusion(default)]
    fn exact_gelu_backward_saved(saved: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::exact_gelu_backward(saved, grad)
    }
}

/// Φ(x) = ½·(1 + erf(x/√2)) of primitive operations.
fn composed_cdf<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul_scalar(B::float_add_scalar(B::float_erf(B::float_mul_scalar(x, FRAC_1_SQRT_2.into())), 1.0.into()), 0.5.into())
}

fn composed_forward<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), composed_cdf::<B>(x))
}

/// gelu'(x) = Φ(x) + x·φ(x) of primitive operations.
fn composed_slope<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    // φ(x) = e^(−x²/2)/√(2π)
    let pdf = B::float_mul_scalar(B::float_exp(B::float_mul_scalar(B::float_mul(x.clone(), x.clone()), (-0.5).into())), FRAC_1_SQRT_2PI.into());
    B::float_add(composed_cdf::<B>(x.clone()), B::float_mul(x, pdf))
}

fn composed_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(grad, composed_slope::<B>(x))
}

/// The GPU's forward is the default body, which fusion compiles with its neighbours; the
/// backward is one kernel (`gelu_kernel.rs`).
impl GeluOps for CubeBackend {
    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        match gelu_kernel::supported(&x, &grad) {
            true => gelu_kernel::backward(x, grad),
            false => composed_backward::<Self>(x, grad),
        }
    }
}

impl GeluOps for Flex {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return <Flex as burn::backend::ops::ActivationOps<Flex>>::gelu(x);
        }
        elementwise(x, None, |x, _| x * (0.5 * (1.0 + erf_rational(x * FRAC_1_SQRT_2))))
    }

    fn exact_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.layout().shape() != grad.layout().shape() {
            return <Flex as burn::backend::ops::ActivationOps<Flex>>::gelu_backward(x, grad);
        }
        elementwise(x, Some(grad), |x, g| g * value_and_slope(x).1)
    }

    /// (gelu(x), gelu'(x)) from one erf and one exp per element.
    fn exact_gelu_saving(x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if x.dtype() != DType::F32 {
            return (<Flex as burn::backend::ops::ActivationOps<Flex>>::gelu(x.clone()), composed_slope::<Flex>(x));
        }
        let x = cpu_loops::contiguous(x);
        let xs = x.as_slice::<f32>().expect("contiguous f32");
        cpu_loops::new_tensor_pair(x.layout().shape().clone(), CHUNK, &WithSlope { xs })
    }

    /// grad · gelu'(x), the slope kept by [`GeluOps::exact_gelu_saving`].
    fn exact_gelu_backward_saved(slope: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if slope.dtype() != DType::F32 || grad.dtype() != DType::F32 || slope.layout().shape() != grad.layout().shape() {
            return <Flex as burn::backend::ops::FloatTensorOps<Flex>>::float_mul(grad, slope);
        }
        elementwise(slope, Some(grad), |slope, g| g * slope)
    }
}

/// gelu(x) = x·Φ(x) and gelu'(x) = Φ(x) + x·φ(x): erf(x/√2) and e^(−x²/2) = √(2π)·φ(x) with
/// one exp.
#[inline(always)]
fn value_and_slope(x: f32) -> (f32, f32) {
    let (erf, gauss) = erf_and_gauss(x * FRAC_1_SQRT_2);
    let cdf = 0.5 * (1.0 + erf);
    (x * cdf, cdf + x * FRAC_1_SQRT_2PI * gauss)
}

/// One chunk of [`GeluOps::exact_gelu_saving`] on flex: ys = gelu(xs), slopes = gelu'(xs).
struct WithSlope<'a> {
    xs: &'a [f32],
}

impl cpu_loops::PairLoop for WithSlope<'_> {
    #[inline(always)]
    fn run(&self, start: usize, ys: &mut [cpu_loops::Out], slopes: &mut [cpu_loops::Out]) {
        let xs = &self.xs[start..start + ys.len()];
        #[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
        // SAFETY: the worker's FMA build runs only where the browser validated relaxed SIMD
        // (app/src/wasm_features.rs).
        let (xs, ys, slopes) = {
            let done = unsafe { relaxed_with_slope(xs, ys, slopes) };
            (&xs[done..], &mut ys[done..], &mut slopes[done..])
        };
        for ((y, s), &x) in ys.iter_mut().zip(slopes.iter_mut()).zip(xs) {
            let (value, slope) = value_and_slope(x);
            y.write(value);
            s.write(slope);
        }
    }
}

/// [`WithSlope`]'s loop four elements at a time with relaxed SIMD's fused multiply-adds (the
/// worker's FMA build); how many elements it wrote (the rest are fewer than four).
#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
#[target_feature(enable = "simd128,relaxed-simd")]
unsafe fn relaxed_with_slope(xs: &[f32], ys: &mut [cpu_loops::Out], slopes: &mut [cpu_loops::Out]) -> usize {
    let k = Constants4::hidden();
    for ((x, y), s) in xs.chunks_exact(4).zip(ys.chunks_exact_mut(4)).zip(slopes.chunks_exact_mut(4)) {
        let (value, slope) = value_and_slope_x4(F32x4::load(x), &k);
        value.store(y);
        slope.store(s);
    }
    xs.len() / 4 * 4
}

/// The constants of [`value_and_slope_x4`] and [`exp_x4`], each splat to four lanes once per
/// loop. Why: where they stay visible to LLVM, it writes each back as a `v128.const` at its use
/// inside the loop, and V8 builds every such constant from an immediate with three instructions
/// (`movabs`, `vmovq`, `vpunpcklqdq`) on every iteration: in a profile of the tab (`perf` with
/// V8's `--perf-prof`), 22 constants made ~66 of the GELU loop's ~110 instructions per four
/// elements. Passed through [`std::hint::black_box`] they are values the loop only reads, which
/// V8 keeps in registers or reads from its stack as an operand. (The integer constants of
/// [`F32x4::exp2_of_shifted`] stay inline: LLVM folds them into one, the bits of 1.0.)
#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
#[derive(Clone, Copy)]
struct Constants4 {
    zero: F32x4,
    half: F32x4,
    frac_1_sqrt_2: F32x4,
    frac_1_sqrt_2pi: F32x4,
    as_p: F32x4,
    as_a: [F32x4; 5],
    /// the exponential's, whose 1.0 serves GELU too
    exp: ExpConstants4,
}

#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
impl Constants4 {
    /// The constants, hidden from the optimiser (see the type's doc).
    #[inline(always)]
    fn hidden() -> Self {
        let c = F32x4::splat;
        std::hint::black_box(Self {
            zero: c(0.0),
            half: c(0.5),
            frac_1_sqrt_2: c(FRAC_1_SQRT_2),
            frac_1_sqrt_2pi: c(FRAC_1_SQRT_2PI),
            as_p: c(AS_P),
            as_a: AS_A.map(c),
            exp: ExpConstants4::new(),
        })
    }
}

/// The constants of [`exp_x4`], four lanes each: part of [`Constants4`], and on their own for
/// the attention softmax's exponentials ([`relaxed_exp_shifted`]), for the same reason.
#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
#[derive(Clone, Copy)]
pub(super) struct ExpConstants4 {
    floor: F32x4,
    log2_e: F32x4,
    magic: F32x4,
    ln2_high: F32x4,
    ln2_low: F32x4,
    poly: [F32x4; 6],
    one: F32x4,
}

#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
impl ExpConstants4 {
    #[inline(always)]
    fn new() -> Self {
        let c = F32x4::splat;
        Self { floor: c(-87.0), log2_e: c(std::f32::consts::LOG2_E), magic: c(MAGIC), ln2_high: c(LN2_HIGH), ln2_low: c(LN2_LOW), poly: EXP_POLY.map(c), one: c(1.0) }
    }

    /// The constants, hidden from the optimiser (see [`Constants4`]'s doc): made once where
    /// a loop over rows starts, for every row's exponentials.
    #[inline(always)]
    pub(super) fn hidden() -> Self {
        std::hint::black_box(Self::new())
    }
}

/// [`value_and_slope`] on four lanes, each polynomial step one fused multiply-add: the FMA
/// worker's GELU (relaxed SIMD), and natively the tests' (`f32::mul_add`), which check it.
#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
#[inline(always)]
fn value_and_slope_x4(x: F32x4, k: &Constants4) -> (F32x4, F32x4) {
    // erf(u) and e^(−u²) for u = x/√2, as `erf_and_gauss`
    let u = x.mul(k.frac_1_sqrt_2);
    let z = u.abs();
    let t = k.exp.one.div(z.madd(k.as_p, k.exp.one));
    let [a1, a2, a3, a4, a5] = k.as_a;
    let mut h = t.madd(a5, a4);
    h = h.madd(t, a3);
    h = h.madd(t, a2);
    h = h.madd(t, a1);
    let poly = h.mul(t);
    let gauss = exp_x4(z.nmadd(z, k.zero), &k.exp);
    let erf = poly.nmadd(gauss, k.exp.one).copysign(u);
    // as `value_and_slope`
    let cdf = erf.madd(k.half, k.half);
    (x.mul(cdf), x.mul(k.frac_1_sqrt_2pi).madd(gauss, cdf))
}

/// [`exp_approx`] on four lanes with fused multiply-adds (x ≤ 0).
#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
#[inline(always)]
fn exp_x4(x: F32x4, k: &ExpConstants4) -> F32x4 {
    let x = x.max(k.floor);
    let shifted = x.madd(k.log2_e, k.magic);
    let n = shifted.sub(k.magic);
    let r = n.nmadd(k.ln2_high, x);
    let r = n.madd(k.ln2_low, r);
    let [p0, p1, p2, p3, p4, p5] = k.poly;
    let mut p = r.madd(p5, p4);
    p = p.madd(r, p3);
    p = p.madd(r, p2);
    p = p.madd(r, p1);
    p = p.madd(r, p0);
    let e = p.madd(r.mul(r), r).add(k.one);
    e.mul(F32x4::exp2_of_shifted(shifted, MAGIC))
}

/// e^(y − max) of four lanes, exactly 0 where y − max < −87: the attention softmax's
/// numerators (masked keys, whose scores carry a bias of −1e9, get 0 as from libm's `expf`);
/// NaN where y − max is (a diverged run must show it, as the scalar loop's does).
#[cfg(any(test, all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
#[inline(always)]
fn exp_shifted_x4(y: F32x4, max: F32x4, k: &ExpConstants4) -> F32x4 {
    let z = y.sub(max);
    exp_x4(z, k).zero_where_below(z, k.floor)
}

/// [`exp_shifted_x4`] over `ys` in place, four at a time, with constants made once per loop
/// over rows ([`ExpConstants4::hidden`]): the attention softmax's exponentials in the FMA
/// worker. How many elements it wrote (the rest are fewer than four).
#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
#[target_feature(enable = "simd128,relaxed-simd")]
pub(super) unsafe fn relaxed_exp_shifted(ys: &mut [f32], max: f32, k: &ExpConstants4) -> usize {
    let max4 = F32x4::splat(max);
    for y in ys.chunks_exact_mut(4) {
        exp_shifted_x4(F32x4::load(y), max4, k).store_f32(y);
    }
    ys.len() / 4 * 4
}

/// f(x, g) over every element of `x` (and `grad`, when given), into a new contiguous tensor.
fn elementwise(x: FlexTensor, grad: Option<FlexTensor>, f: impl Fn(f32, f32) -> f32 + Sync) -> FlexTensor {
    let (x, grad) = (cpu_loops::contiguous(x), grad.map(cpu_loops::contiguous));
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    let gs = grad.as_ref().map(|g| g.as_slice::<f32>().expect("contiguous f32"));
    cpu_loops::new_tensor(x.layout().shape().clone(), CHUNK, &Elementwise { xs, gs, f })
}

/// One chunk of [`elementwise`]; each chunk is long enough to vectorise and to be worth a thread.
struct Elementwise<'a, F> {
    xs: &'a [f32],
    gs: Option<&'a [f32]>,
    f: F,
}

impl<F: Fn(f32, f32) -> f32 + Sync> cpu_loops::ChunkLoop for Elementwise<'_, F> {
    #[inline(always)]
    fn run(&self, start: usize, ys: &mut [cpu_loops::Out]) {
        let xs = &self.xs[start..start + ys.len()];
        match self.gs {
            Some(gs) => {
                for ((y, &x), &g) in ys.iter_mut().zip(xs).zip(&gs[start..start + xs.len()]) {
                    y.write((self.f)(x, g));
                }
            }
            None => {
                for (y, &x) in ys.iter_mut().zip(xs) {
                    y.write((self.f)(x, 0.0));
                }
            }
        }
    }
}

/// Elements per chunk of the loop (64 KiB of f32): baby GPT's GELU input, 768 × 512, is 24 chunks.
const CHUNK: usize = 16 * 1024;

/// Abramowitz & Stegun 7.1.26's erf (|error| ≤ 1.5·10⁻⁷): t = 1/(1 + p·|u|) with p =
/// `AS_P`, and a1…a5 of its polynomial in t; shared by [`erf_and_gauss`] and
/// [`value_and_slope_x4`].
const AS_P: f32 = 0.327_591_1;
const AS_A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];

/// Cephes' expf: ln 2 = `LN2_HIGH` − `LN2_LOW`, split so that n·`LN2_HIGH` is exact for the
/// n that occur (the high part has few mantissa bits), and the polynomial of
/// (e^r − 1 − r)/r², lowest degree first; shared by [`exp_approx`] and [`exp_x4`].
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = 2.121_944_4e-4;
#[allow(clippy::excessive_precision)] // Cephes' digits, as published
const EXP_POLY: [f32; 6] = [5.000_000_1e-1, 1.666_666_5e-1, 4.166_579_6e-2, 8.333_452e-3, 1.398_199_9e-3, 1.987_569_1e-4];

/// 1.5·2²³: adding it to a float rounds it to an integer, which its low mantissa bits then
/// hold, so n is read back with integer operations only (no float-to-int conversion, which
/// does not vectorise).
const MAGIC: f32 = 12_582_912.0;

/// erf(u) and e^(−u²), by Abramowitz & Stegun 7.1.26: erf(u) = 1 − t·(a1 + t·(a2 + …))·e^(−u²),
/// t = 1/(1 + p·|u|).
#[inline(always)]
fn erf_and_gauss(u: f32) -> (f32, f32) {
    let z = u.abs();
    let [a1, a2, a3, a4, a5] = AS_A;
    let t = 1.0 / (1.0 + AS_P * z);
    let poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))));
    let gauss = exp_approx(-z * z);
    ((1.0 - poly * gauss).copysign(u), gauss)
}

/// erf(x) as a ratio of an odd polynomial of degree 13 and an even one of degree 8, on x
/// clamped to [−4, 4] (erf is ±1 in f32 beyond): XLA's `ErfImpl32` and Eigen's
/// `generic_fast_erf_float`, which need no exp.
#[inline(always)]
#[allow(clippy::manual_clamp)]
fn erf_rational(x: f32) -> f32 {
    // compares and selects, not `clamp`: wasm has no vector instruction with its NaN rule
    let x = if x > 4.0 { 4.0 } else if x < -4.0 { -4.0 } else { x };
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329_2e-3;
    q = x2 * q - 1.426_473_9e-2;
    x * p / q
}

/// e^x for x ≤ 0 without branches or calls (so that loops over it vectorise): x = n·ln2 + r,
/// e^r by Cephes' expf polynomial, 2ⁿ by building the float's exponent.
#[inline(always)]
pub(super) fn exp_approx(x: f32) -> f32 {
    // a compare and select, not `x.max(-87.0)`: wasm has no vector instruction with `max`'s
    // NaN rule, so LLVM made that four calls to libm's `fmaxf` per vector in the tab
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HIGH + n * LN2_LOW;
    let [p0, p1, p2, p3, p4, p5] = EXP_POLY;
    let p = ((((p5 * r + p4) * r + p3) * r + p2) * r + p1) * r + p0;
    let e = p * r * r + r + 1.0;
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    e * f32::from_bits((n_bits.wrapping_add(127) << 23) as u32)
}

#[derive(Debug)]
struct GeluBackward;

impl<B: Backend + GeluOps> Backward<B, 1> for GeluBackward {
    /// what [`GeluOps::exact_gelu_saving`] kept: x, or its slope on flex
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::exact_gelu_backward_saved(ops.state, grad));
        }
    }
}

impl<B: Backend + GeluOps, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn exact_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, saved) = B::exact_gelu_saving(x.into_primitive());
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::exact_gelu(x.into_primitive())),
        }
    }

    fn exact_gelu_backward(_x: FloatTensor<Self>, _grad: FloatTensor<Self>) -> FloatTensor<Self> {
        unimplemented!("the GELU backward is not differentiated twice")
    }

    fn exact_gelu_saving(_x: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unimplemented!("the GELU forward is differentiated through exact_gelu")
    }

    fn exact_gelu_backward_saved(_saved: FloatTensor<Self>, _grad: FloatTensor<Self>) -> FloatTensor<Self> {
        unimplemented!("the GELU backward is not differentiated twice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checks::{close, values};
    use burn::tensor::{Device, TensorData};

    /// erf against flex's (libm's `erff`), exp against f64's.
    #[test]
    fn fast_erf_and_exp_are_accurate() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 500.0).collect();
        let reference = values(Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &Device::flex()).erf());
        for (&x, &want) in xs.iter().zip(&reference) {
            let (erf, gauss) = erf_and_gauss(x);
            assert!((erf - want).abs() < 1e-6, "A&S erf({x}): {erf} vs {want}");
            let want_gauss = (-(x as f64) * x as f64).exp();
            assert!((gauss as f64 - want_gauss).abs() < 1e-6 * (1.0 + (x * x) as f64) * want_gauss, "e^-x² at {x}: {gauss} vs {want_gauss}");
            assert!((erf_rational(x) - want).abs() < 1e-6, "rational erf({x}): {} vs {want}", erf_rational(x));
            let e = -x.abs() * 10.0;
            let want = (e as f64).exp();
            let exp_err = (exp_approx(e) as f64 - want).abs() / want;
            assert!(exp_err < 3e-7, "exp({e}): {} vs {want}", exp_approx(e));
        }
        assert_eq!(exp_approx(-200.0), exp_approx(-87.0), "clamped, not a garbage exponent");
        assert!(exp_approx(-87.0) > 0.0);
    }

    /// The four-lane GELU with fused multiply-adds (the FMA worker's) against libm's erf and
    /// f64's exp, and against the scalar loop's, over [−12, 12] and the exp's clamp.
    #[test]
    fn four_lane_gelu_is_accurate() {
        let xs: Vec<f32> = (-6000..=6000).map(|i| i as f32 / 500.0).chain([-40.0, -20.0, 20.0, 40.0]).collect();
        for x4 in xs.chunks_exact(4) {
            let (value, slope) = value_and_slope_x4(F32x4::load(x4), &Constants4::hidden());
            for ((&x, v), s) in x4.iter().zip(value.to_array()).zip(slope.to_array()) {
                let xd = x as f64;
                let cdf = 0.5 * (1.0 + libm_erf(x * FRAC_1_SQRT_2) as f64);
                let (want_v, want_s) = (xd * cdf, cdf + xd * (-xd * xd / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt());
                assert!((v as f64 - want_v).abs() < 2e-6 * (1.0 + want_v.abs()), "gelu({x}): {v} vs {want_v}");
                assert!((s as f64 - want_s).abs() < 2e-6, "gelu'({x}): {s} vs {want_s}");
                let (sv, ss) = value_and_slope(x);
                assert!((v - sv).abs() <= 1e-6 * (1.0 + sv.abs()) && (s - ss).abs() <= 1e-6, "x4 and scalar at {x}: {v} {s} vs {sv} {ss}");
            }
        }
        let nan = value_and_slope_x4(F32x4::splat(f32::NAN), &Constants4::hidden());
        assert!(nan.0.to_array()[0].is_nan() && nan.1.to_array()[0].is_nan(), "NaN stays NaN (a diverged run must show it)");
    }

    /// The four-lane shifted exponential of the FMA worker's softmax against the scalar one
    /// (`attention_cpu.rs`' loop), including exactly 0 below e^−87 and e^0 = 1.
    #[test]
    fn four_lane_softmax_exp_matches_the_scalar_one() {
        let k = ExpConstants4::hidden();
        let max = 1.5f32;
        let ys: Vec<f32> = (-1999..=0).map(|i| max + i as f32 / 20.0).chain([-1e9, f32::NEG_INFINITY, max - 87.5, max, f32::NAN, 0.0, -1e9, f32::NAN]).collect();
        assert_eq!(ys.len() % 4, 0);
        for y4 in ys.chunks_exact(4) {
            let got = exp_shifted_x4(F32x4::load(y4), F32x4::splat(max), &k).to_array();
            for (&y, e) in y4.iter().zip(got) {
                let z = y - max;
                let want = if z < -87.0 { 0.0 } else { exp_approx(z) };
                if want.is_nan() {
                    assert!(e.is_nan(), "NaN stays NaN (a diverged run must show it): {e}");
                    continue;
                }
                assert!((e - want).abs() <= 2e-7 * want, "e^{z}: {e} vs {want}");
                assert_eq!(e == 0.0, want == 0.0, "e^{z}: {e} vs {want}");
            }
        }
        assert_eq!(exp_shifted_x4(F32x4::splat(max), F32x4::splat(max), &k).to_array(), [1.0; 4]);
    }

    /// flex's erf (libm's `erff`), the reference above.
    fn libm_erf(x: f32) -> f32 {
        values(Tensor::<1>::from_data(TensorData::new(vec![x], [1]), &Device::flex()).erf())[0]
    }

    /// Values and gradients on flex (the vectorised path) against burn's GELU, which flex
    /// computes with libm's erf, differentiated by burn.
    #[test]
    fn matches_burns_gelu_with_gradients() {
        let device = Device::flex().autodiff();
        let xs: Vec<f32> = (0..400).map(|i| (i as f32 - 200.0) / 25.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(xs, [20, 20]), &device).require_grad();
        let r = Tensor::<2>::from_data(TensorData::new((0..400).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect::<Vec<_>>(), [20, 20]), &device);
        let ours = gelu(x.clone());
        let theirs = burn::tensor::activation::gelu(x.clone());
        close(&values(ours.clone()), &values(theirs.clone()), 1e-6);
        let g_ours = (ours * r.clone()).sum().backward();
        let g_theirs = (theirs * r).sum().backward();
        close(&values(x.grad(&g_ours).unwrap()), &values(x.grad(&g_theirs).unwrap()), 1e-6);
        // more elements than several chunks of the threaded loop, the last one ragged
        let n = 3 * CHUNK + 123;
        let big = Tensor::<1>::from_data(TensorData::new((0..n).map(|i| (i % 1000) as f32 / 125.0 - 4.0).collect::<Vec<_>>(), [n]), &device).require_grad();
        let w = Tensor::<1>::from_data(TensorData::new((0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect::<Vec<_>>(), [n]), &device);
        let (ours, theirs) = (gelu(big.clone()), burn::tensor::activation::gelu(big.clone()));
        close(&values(ours.clone()), &values(theirs.clone()), 1e-6);
        let (g_ours, g_theirs) = ((ours * w.clone()).sum().backward(), (theirs * w).sum().backward());
        close(&values(big.grad(&g_ours).unwrap()), &values(big.grad(&g_theirs).unwrap()), 1e-6);
        // a transposed (non-contiguous) input
        let t = x.clone().transpose();
        close(&values(gelu(t.clone())), &values(burn::tensor::activation::gelu(t)), 1e-6);
    }

    /// Another float type takes the composed path on flex, forward and backward, and agrees
    /// with burn's GELU.
    #[test]
    fn f64_gelu_is_differentiated_too() {
        let device = Device::flex().autodiff();
        let xs: Vec<f64> = (0..100).map(|i| (i as f64 - 50.0) / 10.0).collect();
        let x = Tensor::<1>::from_data(TensorData::new(xs, [100]), &device).cast(DType::F64).require_grad();
        assert_eq!(x.dtype(), DType::F64);
        let r = Tensor::<1>::from_data(TensorData::new((0..100).map(|i| ((i * 7 % 13) as f64 - 6.0) / 3.0).collect::<Vec<_>>(), [100]), &device).cast(DType::F64);
        let (ours, theirs) = (gelu(x.clone()), burn::tensor::activation::gelu(x.clone()));
        let read = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        close(&read(ours.clone()), &read(theirs.clone()), 1e-6);
        let (g_ours, g_theirs) = ((ours * r.clone()).sum().backward(), (theirs * r).sum().backward());
        close(&read(x.grad(&g_ours).unwrap()), &read(x.grad(&g_theirs).unwrap()), 1e-6);
    }

    /// The composed default bodies (the GPU's) against the same reference, run on flex.
    #[test]
    fn composed_bodies_match_burns_gelu() {
        let device = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::new((0..200).map(|i| (i as f32 - 100.0) / 12.5).collect::<Vec<_>>(), [200]), &device);
        let g = Tensor::<1>::from_data(TensorData::new((0..200).map(|i| ((i * 5 % 11) as f32 - 5.0) / 2.0).collect::<Vec<_>>(), [200]), &device);
        let forward = Tensor::<1>::from_dispatch(composed_forward::<Dispatch>(x.clone().into_dispatch()));
        close(&values(forward), &values(burn::tensor::activation::gelu(x.clone())), 1e-6);
        let backward = Tensor::<1>::from_dispatch(composed_backward::<Dispatch>(x.clone().into_dispatch(), g.clone().into_dispatch()));
        let reference = Tensor::<1>::from_dispatch(<Dispatch as GeluOps>::exact_gelu_backward(x.into_dispatch(), g.into_dispatch()));
        close(&values(backward), &values(reference), 1e-5);
    }
}
