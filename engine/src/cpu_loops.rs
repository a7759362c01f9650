//! The CPU loops of the custom operations (GELU, the attention softmax, LayerNorm, AdamW) on
//! flex: split over the cores, and compiled for the widest vector instructions the processor
//! has; and the eight-lane reductions and the contiguous layout they share.
//!
//! Why: a portable x86-64 binary (no `-C target-cpu`) compiles plain loops for SSE2's four
//! lanes without FMA, while flex's and gemm's own kernels pick AVX2 or AVX-512 at run time.
//! Here each loop is a [`Kernel`] whose `run` is `#[inline(always)]`, so that it is compiled
//! again inside functions with those features enabled; [`vectorized`] picks one at run time.
//! The loops themselves stay plain scalar code that the compiler vectorises (in wasm for
//! SIMD128, which the worker is built with).

use std::mem::MaybeUninit;

use burn::backend::DType;
use burn::tensor::{Bytes, Shape};
use burn_flex::{FlexTensor, Layout};

/// An output element not yet written: the loops write into fresh memory, which nothing zeroes
/// first (`FlexTensor::empty` does, a pass over every output that the loop then overwrites).
pub(crate) type Out = MaybeUninit<f32>;

/// A loop, by value, for [`vectorized`]. Implementations mark `run` `#[inline(always)]`.
pub(crate) trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// `t` itself when its elements lie in order in its buffer, a contiguous copy otherwise: the
/// layout every loop here indexes.
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() { t } else { t.to_contiguous() }
}

/// Whether `t`'s buffer holds exactly its elements, in order, from the start: the tensor a loop
/// may write in place through `storage_mut` (when nothing else holds the buffer).
pub(crate) fn owns_its_elements(t: &FlexTensor) -> bool {
    let n = t.layout().num_elements();
    t.layout().contiguous_offsets() == Some((0, n)) && t.bytes().len() == n * t.dtype().size()
}

/// Folds `row` with `f` in eight interleaved lanes, then folds the lanes: a reduction the
/// compiler can keep in vector registers (a single running value is a chain it may not
/// reorder). `f` is a compare-and-select max or a sum; wasm has no vector `f32::max`.
#[inline(always)]
pub(crate) fn lanes(row: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = f(*a, v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = f(*a, v);
    }
    acc.into_iter().fold(init, f)
}

/// Σ f(v) over `row` in eight interleaved lanes (one running sum is a chain the compiler may
/// not reorder, so it would not vectorise).
#[inline(always)]
pub(crate) fn sum_of(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    acc.iter().sum()
}

/// a · b + c, fused into one rounding where [`vectorized`] compiled the loop for FMA (natively
/// on AVX2 and AVX-512: one instruction instead of two). Wasm keeps the plain form: its
/// `f32::mul_add` is a call to libm. (On an x86 processor without FMA, which [`vectorized`]
/// runs with the portable build, it is libm's call too: correct, and slow.)
#[inline(always)]
pub(crate) fn mul_add(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_family = "wasm")]
    return a * b + c;
    #[cfg(not(target_family = "wasm"))]
    return a.mul_add(b, c);
}

/// One chunk's loop of an operation whose output is split into chunks (see [`for_chunks`]).
/// Implementations mark `run` `#[inline(always)]`.
pub(crate) trait ChunkLoop: Sync {
    /// Writes `ys`, the chunk of the output whose first index is `start`: **every element**
    /// of it ([`new_tensor`] relies on that).
    fn run(&self, start: usize, ys: &mut [Out]);
}

/// A new contiguous f32 tensor of `shape`, written by `body` in chunks of `len` elements
/// ([`for_chunks`]), in memory that nothing zeroes first.
pub(crate) fn new_tensor(shape: Shape, len: usize, body: &impl ChunkLoop) -> FlexTensor {
    let n = shape.num_elements();
    let mut out: Vec<f32> = Vec::with_capacity(n);
    for_chunks(&mut out.spare_capacity_mut()[..n], len.max(1), body);
    // SAFETY: every chunk's loop wrote every element of its chunk (`ChunkLoop::run`'s
    // contract), and the chunks cover all n.
    unsafe { out.set_len(n) };
    FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(shape), DType::F32)
}

/// One chunk's loop of an operation with two outputs of one shape (see [`new_tensor_pair`]).
/// Implementations mark `run` `#[inline(always)]`.
pub(crate) trait PairLoop: Sync {
    /// Writes **every element** of `ys` and `zs`, the chunks of the two outputs whose first
    /// index is `start` (they have the same length).
    fn run(&self, start: usize, ys: &mut [Out], zs: &mut [Out]);
}

/// Two new contiguous f32 tensors of `shape`, written together by `body` in chunks of `len`
/// elements, as [`new_tensor`] writes one: for a loop that computes two results from one
/// expensive intermediate (GELU's value and slope from one erf).
pub(crate) fn new_tensor_pair(shape: Shape, len: usize, body: &impl PairLoop) -> (FlexTensor, FlexTensor) {
    let n = shape.num_elements();
    let (mut ys, mut zs): (Vec<f32>, Vec<f32>) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (y, z) = (&mut ys.spare_capacity_mut()[..n], &mut zs.spare_capacity_mut()[..n]);
    let len = len.max(1);
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        y.par_chunks_mut(len).zip(z.par_chunks_mut(len)).enumerate().for_each(|(i, (ys, zs))| vectorized(Pair { body, start: i * len, ys, zs }));
    }
    #[cfg(target_family = "wasm")]
    for (i, (ys, zs)) in y.chunks_mut(len).zip(z.chunks_mut(len)).enumerate() {
        body.run(i * len, ys, zs);
    }
    // SAFETY: every chunk's loop wrote every element of both its chunks (`PairLoop::run`'s
    // contract), and the chunks cover all n of each.
    unsafe {
        ys.set_len(n);
        zs.set_len(n);
    }
    let tensor = |v: Vec<f32>| FlexTensor::new(Bytes::from_elems(v), Layout::contiguous(shape.clone()), DType::F32);
    (tensor(ys), tensor(zs))
}

#[cfg(not(target_family = "wasm"))]
struct Pair<'a, 'b, L> {
    body: &'a L,
    start: usize,
    ys: &'b mut [Out],
    zs: &'b mut [Out],
}

#[cfg(not(target_family = "wasm"))]
impl<L: PairLoop> Kernel for Pair<'_, '_, L> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.body.run(self.start, self.ys, self.zs)
    }
}

/// dst[i] = src[i] for every element of `dst` (`src` as long or longer).
#[inline(always)]
pub(crate) fn write(dst: &mut [Out], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
}

/// `body.run(start, chunk)` over `ys` in chunks of `len` elements: on flex's thread pool
/// natively, and in place in wasm, which has one thread.
pub(crate) fn for_chunks(ys: &mut [Out], len: usize, body: &impl ChunkLoop) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        ys.par_chunks_mut(len).enumerate().for_each(|(i, ys)| vectorized(Chunk { body, start: i * len, ys }));
    }
    #[cfg(target_family = "wasm")]
    for (i, ys) in ys.chunks_mut(len).enumerate() {
        body.run(i * len, ys);
    }
}

#[cfg(not(target_family = "wasm"))]
struct Chunk<'a, 'b, L> {
    body: &'a L,
    start: usize,
    ys: &'b mut [Out],
}

#[cfg(not(target_family = "wasm"))]
impl<L: ChunkLoop> Kernel for Chunk<'_, '_, L> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        self.body.run(self.start, self.ys)
    }
}

/// `kernel.run()`, compiled for AVX-512 or AVX2+FMA where the processor has them.
#[inline(always)]
pub(crate) fn vectorized<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the processor has the features the function is compiled for.
            return unsafe { x86::avx512(kernel) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { x86::avx2(kernel) };
        }
    }
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::Kernel;

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
        kernel.run()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn avx2<K: Kernel>(kernel: K) -> K::Output {
        kernel.run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Poly<'a>(&'a [f32], &'a mut [f32]);

    impl Kernel for Poly<'_> {
        type Output = f32;
        #[inline(always)]
        fn run(self) -> f32 {
            for (y, &x) in self.1.iter_mut().zip(self.0) {
                *y = (x * 0.5 + 1.0) * x - 2.0 / (1.0 + x * x);
            }
            self.1.iter().sum()
        }
    }

    /// Every build of a loop this processor can run gives the plain build's values, bit for bit
    /// (no FMA contraction: Rust does not fuse `a * b + c` on its own).
    #[test]
    fn every_instruction_set_gives_the_same_values() {
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 37.0).collect();
        let mut want = vec![0.0; xs.len()];
        let want_sum = Poly(&xs, &mut want).run();
        let mut got = vec![0.0; xs.len()];
        assert_eq!(vectorized(Poly(&xs, &mut got)), want_sum);
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut got = vec![0.0; xs.len()];
                // SAFETY: checked just above.
                assert_eq!(unsafe { x86::avx2(Poly(&xs, &mut got)) }, want_sum);
                assert_eq!(got, want);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut got = vec![0.0; xs.len()];
                // SAFETY: as above.
                assert_eq!(unsafe { x86::avx512(Poly(&xs, &mut got)) }, want_sum);
                assert_eq!(got, want);
            }
        }
    }

    struct Square;

    impl ChunkLoop for Square {
        #[inline(always)]
        fn run(&self, start: usize, ys: &mut [Out]) {
            for (i, y) in ys.iter_mut().enumerate() {
                y.write(((start + i) as f32).powi(2));
            }
        }
    }

    /// Chunks cover the output once each, the last one ragged, with the right offsets.
    #[test]
    fn chunks_cover_the_output() {
        let ys = new_tensor(Shape::new([17, 59]), 100, &Square);
        let ys = ys.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(ys.len(), 1003);
        assert!(ys.iter().enumerate().all(|(i, &y)| y == (i as f32).powi(2)));
    }

    struct SquareAndCube;

    impl PairLoop for SquareAndCube {
        #[inline(always)]
        fn run(&self, start: usize, ys: &mut [Out], zs: &mut [Out]) {
            assert_eq!(ys.len(), zs.len());
            for (i, (y, z)) in ys.iter_mut().zip(zs).enumerate() {
                let x = (start + i) as f32;
                y.write(x * x);
                z.write(x * x * x);
            }
        }
    }

    /// Both outputs' chunks line up and cover them once each, the last one ragged.
    #[test]
    fn pair_chunks_cover_both_outputs() {
        let (ys, zs) = new_tensor_pair(Shape::new([17, 59]), 100, &SquareAndCube);
        assert_eq!(ys.layout().shape().to_vec(), [17, 59]);
        let (ys, zs) = (ys.into_data().try_to_vec::<f32>().unwrap(), zs.into_data().try_to_vec::<f32>().unwrap());
        assert_eq!((ys.len(), zs.len()), (1003, 1003));
        assert!(ys.iter().zip(&zs).enumerate().all(|(i, (&y, &z))| y == (i as f32).powi(2) && z == (i as f32).powi(3)));
    }
}
