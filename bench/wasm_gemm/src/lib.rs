//! Exports for `page/measure.js`: one matrix product as the tab's flex runs it (gemm, one
//! thread), and the core's 128-bit fused multiply-add peak, both in GFLOP/s terms of work.
#![cfg(target_arch = "wasm32")]

use core::arch::wasm32::*;
use gemm::{Parallelism, gemm};

static mut BUFFER: Vec<f32> = Vec::new();

/// `reps` products C[m,n] = A[m,k]·B[k,n] (row-major), A or B read transposed where `a_t` /
/// `b_t` is 1, as the backward reads them. Returns C[0] so that nothing is optimised away.
///
/// # Safety
/// Single-threaded wasm: nothing else touches `BUFFER`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn product(m: usize, k: usize, n: usize, a_t: u32, b_t: u32, reps: usize) -> f32 {
    let buffer = unsafe { &mut *core::ptr::addr_of_mut!(BUFFER) };
    let need = m * k + k * n + m * n;
    if buffer.len() < need {
        *buffer = (0..need).map(|i| (i % 17) as f32 * 0.01).collect();
    }
    let (a, rest) = buffer.split_at_mut(m * k);
    let (b, c) = rest.split_at_mut(k * n);
    // gemm takes (column stride, row stride) per operand
    let (a_cs, a_rs) = if a_t == 1 { (m as isize, 1) } else { (1, k as isize) };
    let (b_cs, b_rs) = if b_t == 1 { (k as isize, 1) } else { (1, n as isize) };
    for _ in 0..reps {
        unsafe {
            gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), a_cs, a_rs, b.as_ptr(), b_cs, b_rs, 0.0f32, 1.0f32, false, false, false, Parallelism::None);
        }
    }
    c[0]
}

/// The peak: `reps` × 1024 rounds of 12 independent 4-lane fused multiply-adds (enough chains
/// to cover the latency of two FMA units): 96 FLOP per round.
#[unsafe(no_mangle)]
#[target_feature(enable = "simd128,relaxed-simd")]
pub extern "C" fn peak(reps: usize) -> f32 {
    let (x, y) = (f32x4_splat(1.000_000_1), f32x4_splat(0.999_999_9));
    let mut c = [f32x4_splat(0.0); 12];
    for (i, c) in c.iter_mut().enumerate() {
        *c = f32x4_splat(i as f32);
    }
    for _ in 0..reps * 1024 {
        for c in c.iter_mut() {
            *c = f32x4_relaxed_madd(*c, x, y);
        }
    }
    c.iter().map(|c| f32x4_extract_lane::<0>(*c)).sum()
}

static mut SCRATCH: Vec<f32> = Vec::new();

/// Writes one float per cache line of a 16 MiB buffer, so that the next product finds its
/// operands in no cache nearer than the last level (the dev VM has 2 MiB of L2 per core), as
/// a training step's products often do: their operands were last written by other
/// operations. Returns a sum so that nothing is optimised away.
///
/// # Safety
/// Single-threaded wasm: nothing else touches `SCRATCH`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn evict() -> f32 {
    let scratch = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    if scratch.is_empty() {
        *scratch = vec![1.0; 4 << 20];
    }
    let mut sum = 0.0;
    for v in scratch.iter_mut().step_by(16) {
        *v += 1.0;
        sum += *v;
    }
    sum
}
