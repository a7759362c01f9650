//! Self-attention's forward and backward on flex as one loop per (sequence, head), reading
//! queries, keys and values in place from the fused projection `qkv`, like the GPU's kernel
//! (`attention_kernel.rs`). Each sequence is one chunk of the thread pool's loop, and the loops
//! are compiled for the processor's widest vectors (`cpu_loops.rs`).
//!
//! Why: composed, the attention of baby GPT is six batched products per layer over 48
//! (sequence, head) pairs of 64×64×32, so ~1,150 tiny gemm calls per step, each paying gemm's
//! setup and packing, plus the copies that split `qkv` into heads and merge them back. Here a
//! pair's keys and values (8 KiB each) stay in L1, and a query row stops at its last visible
//! key: a causal mask halves the work, which gemm cannot skip.
//!
//! As on the GPU, the backward recomputes the softmax weights from q and k instead of storing
//! them: one product more per pair, and no [b, h, s, s] tensor kept per layer.

use burn_flex::FlexTensor;

use crate::cpu_loops::{ChunkLoop, Out, contiguous, lanes, mul_add, new_tensor, write};

/// A key whose bias is this far below its row's largest bias gets a weight of exactly 0 (its
/// exponent is below e^−87, see [`softmax_in_place`]) for any score below ~10⁶: keys past the
/// last one within this margin are skipped. The masks are 0 and −1e9.
pub(super) const MASK_MARGIN: f32 = 1e7;

/// softmax(q·kᵀ/√d_head + bias)·v for every head.
// qkv: [b, s, 3·d], bias: [rows, 1, s, s] -> y: [b, s, d]
pub(super) fn forward(qkv: FlexTensor, bias: FlexTensor, n_head: usize) -> FlexTensor {
    let (qkv, bias) = (contiguous(qkv), contiguous(bias));
    let g = Geometry::of(&qkv, &bias, n_head);
    let body = Forward { qkv: qkv.as_slice().expect("contiguous f32"), bias: bias.as_slice().expect("contiguous f32"), g };
    new_tensor(vec![g.batch, g.seq, g.d_model].into(), g.seq * g.d_model, &body)
}

/// The gradient of qkv. With P the weights of one head, dO its slice of d_out and scale
/// 1/√d_head: dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale, dQ = dS·K,
/// dK = dSᵀ·Q (as `attention.rs`'s closed form).
// qkv: [b, s, 3·d], bias: [rows, 1, s, s], d_out: [b, s, d] -> d_qkv: [b, s, 3·d]
pub(super) fn backward(qkv: FlexTensor, bias: FlexTensor, d_out: FlexTensor, n_head: usize) -> FlexTensor {
    let (qkv, bias, d_out) = (contiguous(qkv), contiguous(bias), contiguous(d_out));
    let g = Geometry::of(&qkv, &bias, n_head);
    let body = Backward {
        qkv: qkv.as_slice().expect("contiguous f32"),
        bias: bias.as_slice().expect("contiguous f32"),
        d_out: d_out.as_slice().expect("contiguous f32"),
        g,
    };
    new_tensor(qkv.layout().shape().clone(), g.seq * 3 * g.d_model, &body)
}

/// The sizes both loops index by.
#[derive(Clone, Copy)]
struct Geometry {
    batch: usize,
    seq: usize,
    d_model: usize,
    heads: usize,
    d_head: usize,
    /// one bias per sequence (a prefix mask), or one for all (causal, bidirectional)
    per_row_bias: bool,
    /// 1/√d_head
    scale: f32,
}

impl Geometry {
    fn of(qkv: &FlexTensor, bias: &FlexTensor, heads: usize) -> Self {
        let shape = qkv.layout().shape();
        let (batch, seq, d_model) = (shape[0], shape[1], shape[2] / 3);
        let d_head = d_model / heads;
        let per_row_bias = bias.layout().shape()[0] == batch && batch > 1;
        Self { batch, seq, d_model, heads, d_head, per_row_bias, scale: 1.0 / (d_head as f32).sqrt() }
    }

    /// The bias row of query `i` of sequence `b`: [s]
    #[inline(always)]
    fn bias_row<'a>(&self, bias: &'a [f32], b: usize, i: usize) -> &'a [f32] {
        let s = self.seq;
        let at = (if self.per_row_bias { b } else { 0 }) * s * s + i * s;
        &bias[at..at + s]
    }
}

/// Columns of one accumulator tile: an AVX-512 register, two AVX2 ones; in wasm two of
/// SIMD128's, so that [`R`] rows of tiles fit V8's sixteen vector registers.
#[cfg(not(target_family = "wasm"))]
const W: usize = 16;
#[cfg(target_family = "wasm")]
const W: usize = 8;

/// Rows computed together: their tiles are independent sums (one would wait on each FMA's
/// latency), and they share each vector loaded from the other operand.
const R: usize = 4;

/// How many keys, from the first, a query row needs: up to its last key whose bias is within
/// [`MASK_MARGIN`] of the row's largest (every key after it has a weight of exactly 0), rounded
/// up to whole tiles of [`W`] keys within the row.
#[inline(always)]
fn visible_keys(bias: &[f32]) -> usize {
    let top = lanes(bias, f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
    let last = bias.iter().rposition(|&c| c > top - MASK_MARGIN).map_or(bias.len(), |j| j + 1);
    last.div_ceil(W).saturating_mul(W).min(bias.len())
}

/// For one sequence: n[i], the keys query i needs ([`visible_keys`]). It depends on the mask
/// only, not on the head.
fn keys_needed(g: &Geometry, bias: &[f32], b: usize, n: &mut [usize]) {
    for (i, n) in n.iter_mut().enumerate() {
        *n = visible_keys(g.bias_row(bias, b, i));
    }
}

/// first[j], the first query that needs key j (s when none does), from n of [`keys_needed`].
fn first_queries(n: &[usize], first: &mut [usize]) {
    // keys below `covered` have their first query already
    let mut covered = 0;
    first.fill(n.len());
    for (i, &n) in n.iter().enumerate() {
        while covered < n {
            first[covered] = i;
            covered += 1;
        }
    }
}

/// Copies head columns `[at, at + d_head)` of a sequence's rows of `qkv` into `t`, transposed:
/// t: [d_head, s], t[c·s + j] = rows[j · 3d + at + c], so that scores against every key are
/// vector updates over keys.
#[inline(always)]
fn transpose(rows: &[f32], row_len: usize, at: usize, d_head: usize, t: &mut [f32]) {
    let s = rows.len() / row_len;
    transpose_block(rows, row_len, at, s, d_head, t, s, 0);
}

/// t[c·t_stride + t_at + r] = src[r·src_stride + src_at + c] for r < rows, c < cols: a block
/// transposed, four rows at a time, so that each group of stores writes four neighbouring
/// floats of t (a column of the block) instead of one float per cache line; in wasm, 4 × 4
/// blocks in vector registers ([`transpose4x4`]).
// src: [rows, cols] (strided) -> t: [cols, rows] (strided)
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transpose_block(src: &[f32], src_stride: usize, src_at: usize, rows: usize, cols: usize, t: &mut [f32], t_stride: usize, t_at: usize) {
    let mut r0 = 0;
    while r0 + 4 <= rows {
        let x: [&[f32]; 4] = std::array::from_fn(|k| &src[(r0 + k) * src_stride + src_at..][..cols]);
        #[allow(unused_mut)]
        let mut c = 0;
        // in wasm, 4 × 4 blocks with vector loads, shuffles and stores
        #[cfg(target_family = "wasm")]
        while c + 4 <= cols {
            transpose4x4(x.map(|x| &x[c..c + 4]), t, t_stride, c * t_stride + t_at + r0);
            c += 4;
        }
        for c in c..cols {
            let d = &mut t[c * t_stride + t_at + r0..][..4];
            d[0] = x[0][c];
            d[1] = x[1][c];
            d[2] = x[2][c];
            d[3] = x[3][c];
        }
        r0 += 4;
    }
    for r in r0..rows {
        for (c, &v) in src[r * src_stride + src_at..][..cols].iter().enumerate() {
            t[c * t_stride + t_at + r] = v;
        }
    }
}

/// t[k·t_stride + at..][..4] = [x[0][k], x[1][k], x[2][k], x[3][k]] for k < 4: a 4 × 4 block
/// transposed in registers, four loads, eight shuffles (V8's `unpcklps`/`unpckhps` and
/// `punpcklqdq`/`punpckhqdq`) and four stores, where the scalar loop moves one float at a
/// time (the transposed copies were ~a third of the backward's own code in the tab).
// x: 4 rows × [4] -> t: 4 rows of 4 (strided)
#[cfg(target_family = "wasm")]
#[inline(always)]
fn transpose4x4(x: [&[f32]; 4], t: &mut [f32], t_stride: usize, at: usize) {
    use core::arch::wasm32::{i32x4_shuffle, i64x2_shuffle, v128, v128_load, v128_store};
    let [a0, a1, a2, a3] = x.map(|x| {
        assert!(x.len() >= 4);
        // SAFETY: four floats are there; v128 loads need no alignment.
        unsafe { v128_load(x.as_ptr() as *const v128) }
    });
    // t0 = [a00 a10 a01 a11], t1 = [a02 a12 a03 a13], t2 and t3 likewise of rows 2 and 3
    let (t0, t1) = (i32x4_shuffle::<0, 4, 1, 5>(a0, a1), i32x4_shuffle::<2, 6, 3, 7>(a0, a1));
    let (t2, t3) = (i32x4_shuffle::<0, 4, 1, 5>(a2, a3), i32x4_shuffle::<2, 6, 3, 7>(a2, a3));
    // column k of the block: [a0k a1k a2k a3k]
    let columns = [i64x2_shuffle::<0, 2>(t0, t2), i64x2_shuffle::<1, 3>(t0, t2), i64x2_shuffle::<0, 2>(t1, t3), i64x2_shuffle::<1, 3>(t1, t3)];
    for (k, column) in columns.into_iter().enumerate() {
        let d = &mut t[k * t_stride + at..][..4];
        // SAFETY: `d` holds four floats.
        unsafe { v128_store(d.as_mut_ptr() as *mut v128, column) }
    }
}

/// out[r·cols + c] = Σ_j w_r[j] · x[j · stride + c] for [`R`] rows w_r = w[r · w_stride ..][..m]
/// and the first `cols` columns of m rows of x: every product here, [`W`] columns at a time in
/// registers. x is a transposed head for the scores q·kᵀ and dO·vᵀ (w: query rows, cols: keys)
/// and a head's slice of rows for p·v, dS·k, dSᵀ·q, Pᵀ·dO (w: weights, cols: d_head). Rows
/// from `count` on repeat the last one (their output is not used).
// w: [R, m] (strided), x: [m, ≥ cols] (strided) -> out: [R, cols]
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the hot loop's operands and strides, kept as plain values
fn rows_times(w: &[f32], w_stride: usize, count: usize, m: usize, x: &[f32], stride: usize, cols: usize, out: &mut [f32]) {
    if m == 0 {
        out[..R * cols].fill(0.0);
        return;
    }
    let w: [&[f32]; R] = std::array::from_fn(|r| &w[r.min(count - 1) * w_stride..][..m]);
    let c = whole_tiles(&w, m, x, stride, cols, out);
    // columns past the last whole tile (keys when s, or d_head, is not a multiple of W)
    for (r, w) in w.iter().enumerate() {
        for k in c..cols {
            out[r * cols + k] = (0..m).fold(0.0, |sum, j| mul_add(w[j], x[j * stride + k], sum));
        }
    }
}

/// The tiles of [`rows_times`] that are [`W`] columns wide: out[r·cols + c] for c below the
/// returned column (the first not covered). Plain arithmetic that the compiler vectorises.
// w: R × [m], x: [m, ≥ cols] (strided) -> out: [R, cols]
#[cfg(not(all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
#[inline(always)]
fn whole_tiles(w: &[&[f32]; R], m: usize, x: &[f32], stride: usize, cols: usize, out: &mut [f32]) -> usize {
    let mut c = 0;
    while c + W <= cols {
        let mut acc = [[0.0f32; W]; R];
        for j in 0..m {
            let x = &x[j * stride + c..j * stride + c + W];
            for (acc, w) in acc.iter_mut().zip(w) {
                let wj = w[j];
                for l in 0..W {
                    acc[l] = mul_add(wj, x[l], acc[l]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            out[r * cols + c..r * cols + c + W].copy_from_slice(acc);
        }
        c += W;
    }
    c
}

/// [`whole_tiles`] with relaxed SIMD's fused multiply-add (the worker's FMA build): one
/// `f32x4.relaxed_madd` per four products where SIMD128 has a multiply and an add, as the
/// patched gemm's tiles (patches/README.md). LLVM does not fuse `a * b + c` by itself, and wasm's
/// `f32::mul_add` is a libm call, so the tile is written with the intrinsics.
// w: R × [m], x: [m, ≥ cols] (strided) -> out: [R, cols]
#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
#[inline(always)]
fn whole_tiles(w: &[&[f32]; R], m: usize, x: &[f32], stride: usize, cols: usize, out: &mut [f32]) -> usize {
    let tiles = cols / W;
    // every load is inside x and w (checked once here, not per load; the stores go through
    // bounds-checked slices of out)
    assert!(m == 0 || (m - 1) * stride + tiles * W <= x.len(), "x holds m rows of cols");
    assert!(w.iter().all(|w| w.len() >= m));
    // SAFETY: the asserts above bound every index; the worker's FMA build runs only where the
    // browser validated relaxed SIMD (app/src/wasm_features.rs).
    unsafe { relaxed::tiles(w, m, x.as_ptr(), stride, tiles, out, cols) };
    tiles * W
}

#[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
mod relaxed {
    use super::{R, W};
    use core::arch::wasm32::{f32x4_relaxed_madd, f32x4_splat, v128, v128_load, v128_store};

    const _: () = assert!(W == 8, "a tile is two vectors of four");

    /// `whole_tiles`' loop over `tiles` tiles, the accumulators of a tile (R × 2 vectors) in
    /// registers. Its own function: the relaxed instructions need the target feature, which a
    /// caller without it cannot inline.
    // w: R × [m], x: [m, stride] -> out: [R, cols]
    #[target_feature(enable = "simd128,relaxed-simd")]
    pub(super) unsafe fn tiles(w: &[&[f32]; R], m: usize, x: *const f32, stride: usize, tiles: usize, out: &mut [f32], cols: usize) {
        for t in 0..tiles {
            let c = t * W;
            let mut acc = [[f32x4_splat(0.0); 2]; R];
            for j in 0..m {
                // SAFETY (all loads): the caller checked (m − 1)·stride + tiles·W ≤ len(x), and
                // w[r].len() ≥ m.
                let at = unsafe { x.add(j * stride + c) };
                let (x0, x1) = unsafe { (v128_load(at as *const v128), v128_load(at.add(4) as *const v128)) };
                for (acc, w) in acc.iter_mut().zip(w) {
                    let wj = f32x4_splat(unsafe { *w.get_unchecked(j) });
                    acc[0] = f32x4_relaxed_madd(wj, x0, acc[0]);
                    acc[1] = f32x4_relaxed_madd(wj, x1, acc[1]);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let row = &mut out[r * cols + c..r * cols + c + W];
                // SAFETY: `row` holds W = 8 floats.
                unsafe {
                    v128_store(row.as_mut_ptr() as *mut v128, acc[0]);
                    v128_store(row.as_mut_ptr().add(4) as *mut v128, acc[1]);
                }
            }
        }
    }
}

/// softmax of a row in place, without branches or libm calls, so that it vectorises: e^x by
/// `gelu.rs`'s polynomial, and 0 below e^−87.
#[inline(always)]
fn softmax_in_place(y: &mut [f32], #[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))] k: &super::gelu::ExpConstants4) {
    let max = lanes(y, f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
    // in the FMA worker, four at a time with fused multiply-adds and the exponential's
    // constants `k` made once for several rows (left visible, LLVM writes them back into the
    // loop, where V8 rebuilds each on every iteration: `gelu.rs`' `Constants4`)
    #[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
    // SAFETY: the worker's FMA build runs only where the browser validated relaxed SIMD
    // (app/src/wasm_features.rs).
    let done = unsafe { super::gelu::relaxed_exp_shifted(y, max, k) };
    #[cfg(not(all(target_family = "wasm", feature = "wasm-relaxed-simd")))]
    let done = 0;
    for y in y[done..].iter_mut() {
        let z = *y - max;
        // exactly 0 below e^−87 (masked keys), as libm's expf gives for −1e9
        *y = if z < -87.0 { 0.0 } else { super::gelu::exp_approx(z) };
    }
    let inv = 1.0 / lanes(y, 0.0, |t, v| t + v);
    for y in y.iter_mut() {
        *y *= inv;
    }
}

/// Turns `count` rows of scores, [count, n], into weights: softmax(scores·scale + bias), the
/// bias rows those of queries i0, i0 + 1, …
#[inline(always)]
fn to_weights(g: &Geometry, bias: &[f32], b: usize, i0: usize, count: usize, n: usize, scores: &mut [f32]) {
    #[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
    let k = super::gelu::ExpConstants4::hidden();
    for (r, row) in scores.chunks_exact_mut(n).take(count).enumerate() {
        for (p, &c) in row.iter_mut().zip(g.bias_row(bias, b, i0 + r)) {
            *p = *p * g.scale + c;
        }
        softmax_in_place(
            row,
            #[cfg(all(target_family = "wasm", feature = "wasm-relaxed-simd"))]
            &k,
        );
    }
}

/// The forward for one sequence: a chunk of y, [s, d].
struct Forward<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    g: Geometry,
}

impl ChunkLoop for Forward<'_> {
    #[inline(always)]
    fn run(&self, start: usize, ys: &mut [Out]) {
        let Geometry { seq: s, d_model: d, heads, d_head: dh, .. } = self.g;
        let b = start / (s * d);
        // rows: [s, 3·d], this sequence's q, k, v
        let rows = &self.qkv[b * s * 3 * d..(b + 1) * s * 3 * d];
        // kt: [dh, s]; p: [R, ≤ s] weights, y: [R, dh]
        let (mut kt, mut p, mut y) = (vec![0.0f32; dh * s], vec![0.0f32; R * s], vec![0.0f32; R * dh]);
        // n: [s] keys per query
        let mut n = vec![0usize; s];
        keys_needed(&self.g, self.bias, b, &mut n);
        for h in 0..heads {
            let (q_at, k_at, v_at) = (h * dh, d + h * dh, 2 * d + h * dh);
            transpose(rows, 3 * d, k_at, dh, &mut kt);
            for i0 in (0..s).step_by(R) {
                let count = R.min(s - i0);
                let n = n[i0..i0 + count].iter().copied().max().unwrap_or(0);
                let p = &mut p[..R * n];
                rows_times(&rows[i0 * 3 * d + q_at..], 3 * d, count, dh, &kt, s, n, p);
                to_weights(&self.g, self.bias, b, i0, count, n, p);
                // y_i = Σ_j p_ij · v_j
                rows_times(p, n, count, n, &rows[v_at..], 3 * d, dh, &mut y);
                for (r, y) in y.chunks_exact(dh).take(count).enumerate() {
                    write(&mut ys[(i0 + r) * d + q_at..][..dh], y);
                }
            }
        }
    }
}

/// The backward for one sequence: a chunk of d_qkv, [s, 3·d]. Per head, a pass over queries
/// (weights, dS and dQ), then one over keys (dK and dV, each summed in registers over the
/// queries that see the key, from Pᵀ and dSᵀ kept for the head).
struct Backward<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    d_out: &'a [f32],
    g: Geometry,
}

impl ChunkLoop for Backward<'_> {
    #[inline(always)]
    fn run(&self, start: usize, d_rows: &mut [Out]) {
        let Geometry { seq: s, d_model: d, heads, d_head: dh, scale, .. } = self.g;
        let b = start / (s * 3 * d);
        // rows: [s, 3·d], d_out: [s, d]
        let rows = &self.qkv[b * s * 3 * d..(b + 1) * s * 3 * d];
        let d_out = &self.d_out[b * s * d..(b + 1) * s * d];
        // kt, vt: [dh, s]; pt, dst: [s keys, s queries]; p, ds: [R, ≤ s]; out: [R, dh]
        let (mut kt, mut vt) = (vec![0.0f32; dh * s], vec![0.0f32; dh * s]);
        let (mut pt, mut dst) = (vec![0.0f32; s * s], vec![0.0f32; s * s]);
        let (mut p, mut ds, mut out) = (vec![0.0f32; R * s], vec![0.0f32; R * s], vec![0.0f32; R * dh]);
        let (mut n, mut first) = (vec![0usize; s], vec![0usize; s]);
        keys_needed(&self.g, self.bias, b, &mut n);
        first_queries(&n, &mut first);
        for h in 0..heads {
            let (q_at, k_at, v_at) = (h * dh, d + h * dh, 2 * d + h * dh);
            transpose(rows, 3 * d, k_at, dh, &mut kt);
            transpose(rows, 3 * d, v_at, dh, &mut vt);
            // entries of keys a query does not need stay 0
            pt.fill(0.0);
            dst.fill(0.0);
            // queries, R at a time: the weights, dS and dQ
            for i0 in (0..s).step_by(R) {
                let count = R.min(s - i0);
                let n = n[i0..i0 + count].iter().copied().max().unwrap_or(0);
                let (p, ds) = (&mut p[..R * n], &mut ds[..R * n]);
                rows_times(&rows[i0 * 3 * d + q_at..], 3 * d, count, dh, &kt, s, n, p);
                to_weights(&self.g, self.bias, b, i0, count, n, p);
                // dp_ij = dO_i · v_j, then dS_ij = p_ij (dp_ij − Σ_k dp_ik p_ik) · scale
                rows_times(&d_out[i0 * d + q_at..], d, count, dh, &vt, s, n, ds);
                for (ds, p) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)).take(count) {
                    let row = dot(ds, p);
                    for (ds, &p) in ds.iter_mut().zip(p) {
                        *ds = p * (*ds - row) * scale;
                    }
                }
                // dQ_i = Σ_j dS_ij · k_j
                rows_times(ds, n, count, n, &rows[k_at..], 3 * d, dh, &mut out);
                for (r, dq) in out.chunks_exact(dh).take(count).enumerate() {
                    write(&mut d_rows[(i0 + r) * 3 * d + q_at..][..dh], dq);
                }
                // pt[j·s + i0 + r] = p[r·n + j], and dS likewise
                transpose_block(p, n, 0, count, n, &mut pt, s, i0);
                transpose_block(ds, n, 0, count, n, &mut dst, s, i0);
            }
            // keys, R at a time: dK_j = Σ_i dS_ij · q_i, dV_j = Σ_i p_ij · dO_i over the queries
            // from the first that needs one of them
            for j0 in (0..s).step_by(R) {
                let count = R.min(s - j0);
                let i0 = first[j0..j0 + count].iter().copied().min().unwrap_or(s);
                let m = s - i0;
                let (qs, dos) = (rows.get(i0 * 3 * d + q_at..).unwrap_or(&[]), d_out.get(i0 * d + q_at..).unwrap_or(&[]));
                for (at, w, x, stride) in [(k_at, &dst, qs, 3 * d), (v_at, &pt, dos, d)] {
                    rows_times(&w[j0 * s + i0..], s, count, m, x, stride, dh, &mut out);
                    for (r, o) in out.chunks_exact(dh).take(count).enumerate() {
                        write(&mut d_rows[(j0 + r) * 3 * d + at..][..dh], o);
                    }
                }
            }
        }
    }
}

/// Σ a_k · b_k in eight lanes.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (mut a8, mut b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (a, b) in (&mut a8).zip(&mut b8) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    for (l, (&a, &b)) in a8.remainder().iter().zip(b8.remainder()).enumerate() {
        acc[l] += a * b;
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttentionMode;
    use crate::model::attention::fits;
    use crate::model::checks::{close, values};
    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    fn flex(t: Tensor<3>) -> FlexTensor {
        FlexTensor::from_data(t.into_data())
    }

    /// The composed attention of `attention.rs` (burn's products and composed softmax),
    /// forward and backward, as [`values`].
    fn composed(qkv: &Tensor<3>, bias: &Tensor<4>, dy: &Tensor<3>, h: usize) -> (Vec<f32>, Vec<f32>) {
        let [y, d_qkv] = super::super::attention::composed_reference(qkv.clone(), bias.clone(), dy.clone(), h);
        (values(y), values(d_qkv))
    }

    /// The loops against the composed attention, over whole tiles and ragged ones (keys past
    /// the last tile of 16, head columns past it), every mask, a bias with a fully masked row,
    /// and a soft bias (no key skipped).
    #[test]
    fn values_and_gradients_match_the_composed_attention() {
        let plain = Device::flex();
        for (b, s, d, h) in [(3, 37, 60, 3), (2, 64, 64, 2), (2, 5, 8, 2)] {
            let visible: Vec<bool> = (0..b * s).map(|i| i % 3 != 1).collect();
            let mut biases: Vec<Tensor<4>> = [
                AttentionMode::Causal,
                AttentionMode::Bidirectional,
                AttentionMode::Prefix((0..b).map(|r| (r * 7 + 2) % s).collect()),
                AttentionMode::KeyMask { causal: true, seq: s, visible: visible.clone() },
                AttentionMode::KeyMask { causal: false, seq: s, visible },
            ]
            .iter()
            .map(|mode| mode.bias(b, s, &plain))
            .collect();
            // one fully masked query row, and a soft bias (small values, nothing skipped)
            let mut hidden = AttentionMode::Causal.bias(1, s, &plain).into_data().try_to_vec::<f32>().unwrap();
            hidden[s * (s / 2)..s * (s / 2 + 1)].fill(-1e9);
            biases.push(Tensor::from_data(TensorData::new(hidden, [1, 1, s, s]), &plain));
            biases.push(Tensor::<4>::random([b, 1, s, s], Distribution::Normal(0.0, 2.0), &plain));
            for bias in biases {
                let qkv = Tensor::<3>::random([b, s, 3 * d], Distribution::Normal(0.0, 1.5), &plain);
                let dy = Tensor::<3>::random([b, s, d], Distribution::Normal(0.0, 1.0), &plain);
                let (y, d_qkv) = composed(&qkv, &bias, &dy, h);
                let fb = FlexTensor::from_data(bias.into_data());
                assert!(fits(&flex(qkv.clone()), &fb, h, &[&flex(dy.clone())]));
                let ours = forward(flex(qkv.clone()), fb.clone(), h);
                close(&ours.into_data().try_to_vec::<f32>().unwrap(), &y, 1e-5);
                let ours = backward(flex(qkv), fb, flex(dy), h);
                close(&ours.into_data().try_to_vec::<f32>().unwrap(), &d_qkv, 1e-4);
            }
        }
    }

    /// Shapes the loops do not take go to the composed path: a bias for another batch, a head
    /// count that does not divide the width, a gradient of the wrong shape.
    #[test]
    fn other_shapes_are_not_taken() {
        let plain = Device::flex();
        let qkv = flex(Tensor::<3>::zeros([3, 4, 24], &plain));
        let bias = |rows| FlexTensor::from_data(Tensor::<4>::zeros([rows, 1, 4, 4], &plain).into_data());
        assert!(fits(&qkv, &bias(3), 2, &[]) && fits(&qkv, &bias(1), 4, &[]));
        assert!(!fits(&qkv, &bias(2), 2, &[]));
        assert!(!fits(&qkv, &bias(1), 3, &[]));
        assert!(!fits(&qkv, &bias(1), 2, &[&flex(Tensor::<3>::zeros([3, 4, 6], &plain))]));
    }
}
