//! LayerNorm's forward and backward on flex as loops over rows: each row's statistics, the
//! normalisation and the affine map in one pass, on the thread pool and compiled for the
//! processor's widest vectors (`cpu_loops.rs`).
//!
//! Why: the composed form is ten primitive operations per direction on flex, each allocating
//! and writing a whole [rows, d] tensor; baby GPT has nine LayerNorms. As on the GPU
//! (`layer_norm_kernel.rs`), the backward recomputes the row statistics from x, which costs one
//! more pass over a row already in cache and saves storing x̂.

use std::sync::Mutex;

use burn::backend::DType;
use burn::tensor::Bytes;
use burn_flex::{FlexTensor, Layout};

use crate::cpu_loops::{ChunkLoop, Out, PairLoop, contiguous, new_tensor, new_tensor_pair, sum_of};

/// Rows of at most this many elements per chunk of the loop (64 KiB of f32).
const CHUNK: usize = 16 * 1024;

/// y = (x − mean) · rstd · γ + β over the last dimension.
// x: [..., d], affine = [γ; β]: [2, d] -> y: [..., d]
pub(super) fn forward(x: FlexTensor, affine: FlexTensor, epsilon: f64) -> FlexTensor {
    let (x, affine) = (contiguous(x), contiguous(affine));
    let (gamma, beta) = scale_and_shift(&affine);
    let d = gamma.len();
    let rows = Forward { xs: x.as_slice().expect("contiguous f32"), gamma, beta, d, epsilon: epsilon as f32 };
    new_tensor(x.layout().shape().clone(), (CHUNK / d).max(1) * d, &rows)
}

/// (s, y): s = x + branch and y = (s − mean) · rstd · γ + β, row by row in one pass; the
/// branch's rows repeat when it has 1 in the first dimension.
// x: [n, ..., d], branch: [n or 1, ..., d], affine = [γ; β]: [2, d] -> s, y: [n, ..., d]
pub(super) fn forward_add(x: FlexTensor, branch: FlexTensor, affine: FlexTensor, epsilon: f64) -> (FlexTensor, FlexTensor) {
    let (x, branch, affine) = (contiguous(x), contiguous(branch), contiguous(affine));
    let (gamma, beta) = scale_and_shift(&affine);
    let d = gamma.len();
    let rows = AddForward {
        xs: x.as_slice().expect("contiguous f32"),
        branches: branch.as_slice().expect("contiguous f32"),
        gamma,
        beta,
        d,
        epsilon: epsilon as f32,
    };
    new_tensor_pair(x.layout().shape().clone(), (CHUNK / d).max(1) * d, &rows)
}

/// (dx, [dγ; dβ]): with x̂ = (x − mean)·rstd and g = dy·γ per row of d elements,
///   dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) (+ d_other),   dγ = Σ_rows dy · x̂,   dβ = Σ_rows dy,
/// where `d_other` is the gradient x has from its other readers (`residual.rs`).
// x, dy, d_other: [..., d], affine = [γ; β]: [2, d] -> dx: [..., d], [dγ; dβ]: [2, d]
pub(super) fn backward_plus(x: FlexTensor, affine: FlexTensor, dy: FlexTensor, d_other: Option<FlexTensor>, epsilon: f64) -> (FlexTensor, FlexTensor) {
    let (x, affine, dy, d_other) = (contiguous(x), contiguous(affine), contiguous(dy), d_other.map(contiguous));
    let (gs, _) = scale_and_shift(&affine);
    let d = gs.len();
    let (xs, dys) = (x.as_slice::<f32>().expect("contiguous f32"), dy.as_slice::<f32>().expect("contiguous f32"));
    let others = d_other.as_ref().map(|t| t.as_slice::<f32>().expect("contiguous f32"));
    let chunk = (CHUNK / d).max(1) * d;
    // [dγ; dβ] of each chunk's rows: [chunks][2·d]
    let columns = (0..xs.len().div_ceil(chunk)).map(|_| Mutex::new(vec![0.0f32; 2 * d])).collect();
    let rows = InputGradient { xs, dys, others, gamma: gs, d, epsilon: epsilon as f32, chunk, columns };
    let dx = new_tensor(x.layout().shape().clone(), chunk, &rows);
    // the chunks' sums added in order (the same sums whichever thread took which chunk)
    let mut d_affine = vec![0.0f32; 2 * d];
    for part in rows.columns {
        for (total, &p) in d_affine.iter_mut().zip(part.into_inner().expect("no loop panicked").iter()) {
            *total += p;
        }
    }
    (dx, FlexTensor::new(Bytes::from_elems(d_affine), Layout::contiguous(affine.layout().shape().clone()), DType::F32))
}

/// (γ, β): the two rows of a contiguous affine = [γ; β].
fn scale_and_shift(affine: &FlexTensor) -> (&[f32], &[f32]) {
    let both = affine.as_slice::<f32>().expect("contiguous f32");
    both.split_at(both.len() / 2)
}

/// (mean, rstd = 1/√(var + ε)) of one row, the sums in eight lanes.
#[inline(always)]
fn row_stats(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum_of(x, |v| v) / n;
    let var = sum_of(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + epsilon).sqrt())
}

/// y = (x − mean) · rstd · γ + β over one row.
#[inline(always)]
fn normalize_row(y: &mut [Out], x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    let (mean, rstd) = row_stats(x, epsilon);
    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
        y.write((x - mean) * rstd * g + b);
    }
}

/// y for a chunk of rows.
struct Forward<'a> {
    xs: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    d: usize,
    epsilon: f32,
}

impl ChunkLoop for Forward<'_> {
    #[inline(always)]
    fn run(&self, start: usize, ys: &mut [Out]) {
        let (d, len) = (self.d, ys.len());
        for (y, x) in ys.chunks_exact_mut(d).zip(self.xs[start..start + len].chunks_exact(d)) {
            normalize_row(y, x, self.gamma, self.beta, self.epsilon);
        }
    }
}

/// s and y for a chunk of rows.
struct AddForward<'a> {
    xs: &'a [f32],
    /// the branch's rows, repeating when it was broadcast over x's first dimension
    branches: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    d: usize,
    epsilon: f32,
}

impl PairLoop for AddForward<'_> {
    #[inline(always)]
    fn run(&self, start: usize, sums: &mut [Out], ys: &mut [Out]) {
        let (d, len) = (self.d, sums.len());
        // the chunk's rows of the branch, from the one it starts at, round and round
        let first = start % self.branches.len();
        let repeated = self.branches[first..].chunks_exact(d).chain(self.branches.chunks_exact(d).cycle());
        let rows = self.xs[start..start + len].chunks_exact(d).zip(repeated);
        for ((sum, y), (x, branch)) in sums.chunks_exact_mut(d).zip(ys.chunks_exact_mut(d)).zip(rows) {
            for ((s, &x), &b) in sum.iter_mut().zip(x).zip(branch) {
                s.write(x + b);
            }
            // SAFETY: the loop above wrote every element of `sum`, and MaybeUninit<f32> has
            // f32's layout.
            let sum: &[f32] = unsafe { std::slice::from_raw_parts(sum.as_ptr().cast::<f32>(), d) };
            normalize_row(y, sum, self.gamma, self.beta, self.epsilon);
        }
    }
}

/// dx for a chunk of rows (plus the other gradient of x, if any), and the chunk's share of dγ
/// and dβ from the same pass: x̂ and dy are at hand there, where a pass of their own over every
/// row, on one thread, recomputed each row's statistics (docs/performance.md, "CPU", forty-first
/// session: +3 % natively).
struct InputGradient<'a> {
    xs: &'a [f32],
    dys: &'a [f32],
    others: Option<&'a [f32]>,
    gamma: &'a [f32],
    d: usize,
    epsilon: f32,
    /// elements per chunk of the loop
    chunk: usize,
    /// Σ dy · x̂ then Σ dy over each chunk's rows: [chunks][2·d] (a lock per chunk, taken
    /// once by the one thread that runs it)
    columns: Vec<Mutex<Vec<f32>>>,
}

impl ChunkLoop for InputGradient<'_> {
    #[inline(always)]
    fn run(&self, start: usize, dxs: &mut [Out]) {
        let (d, len) = (self.d, dxs.len());
        let mut columns = self.columns[start / self.chunk].lock().expect("one chunk, one thread");
        let (d_gamma, d_beta) = columns.split_at_mut(d);
        let rows = self.xs[start..start + len].chunks_exact(d).zip(self.dys[start..start + len].chunks_exact(d));
        for (r, (dx, (x, dy))) in dxs.chunks_exact_mut(d).zip(rows).enumerate() {
            let row_start = start + r * d;
            let (mean, rstd) = row_stats(x, self.epsilon);
            // Σ g and Σ g · x̂, g = dy · γ, in eight lanes
            let (mut sum_g, mut sum_gx) = ([0.0f32; 8], [0.0f32; 8]);
            let lanes = x.chunks_exact(8).zip(dy.chunks_exact(8)).zip(self.gamma.chunks_exact(8));
            for ((x8, dy8), g8) in lanes {
                for i in 0..8 {
                    let g = dy8[i] * g8[i];
                    sum_g[i] += g;
                    sum_gx[i] += g * ((x8[i] - mean) * rstd);
                }
            }
            let tail = d - d % 8;
            for i in tail..d {
                let g = dy[i] * self.gamma[i];
                sum_g[i - tail] += g;
                sum_gx[i - tail] += g * ((x[i] - mean) * rstd);
            }
            let n = d as f32;
            let (mean_g, mean_gx) = (sum_g.iter().sum::<f32>() / n, sum_gx.iter().sum::<f32>() / n);
            // dx, and dγ += dy · x̂, dβ += dy
            let column_sums = d_gamma.iter_mut().zip(d_beta.iter_mut());
            let grad = |x: f32, dy: f32, g: f32, (dg, db): (&mut f32, &mut f32)| {
                let x_hat = (x - mean) * rstd;
                *dg += dy * x_hat;
                *db += dy;
                rstd * (dy * g - mean_g - x_hat * mean_gx)
            };
            match self.others {
                Some(others) => {
                    let row = row_start;
                    for (((((dx, &x), &dy), &g), &o), sums) in dx.iter_mut().zip(x).zip(dy).zip(self.gamma).zip(&others[row..row + d]).zip(column_sums) {
                        dx.write(grad(x, dy, g, sums) + o);
                    }
                }
                None => {
                    for ((((dx, &x), &dy), &g), sums) in dx.iter_mut().zip(x).zip(dy).zip(self.gamma).zip(column_sums) {
                        dx.write(grad(x, dy, g, sums));
                    }
                }
            }
        }
    }
}
