//! LayerNorm on the GPU: one launch forward (also when it first adds a residual branch), two
//! backward (the first also adding x's other gradient when the stream has one, `residual.rs`).
//!
//! Why: composed of burn operations the forward is two row reductions (mean, variance) and a
//! fused elementwise pass, and the backward two row reductions, two column reductions and
//! fused passes, ~8 launches per LayerNorm and 9 LayerNorms in baby GPT. Here one invocation
//! takes one row (a token's d_model features) in the forward and in the backward's first
//! kernel, which also writes each row's mean and 1/σ for the second, where one workgroup takes
//! one feature and sums dγ and dβ down the rows. The row kernels read four floats at a time
//! where d allows (`crate::vectors`). The arithmetic is `layer_norm.rs`'s:
//!   forward   x̂ = (x − mean)·rstd, rstd = 1/√(var + ε),  y = x̂·γ + β
//!   backward  g = dy·γ,  dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),  dγ = Σ_rows dy·x̂,  dβ = Σ_rows dy

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

const UNITS: usize = 256;
/// Invocations per column in the column sums (each takes every 64th row): fewer than [`UNITS`],
/// since a column has only `rows` values (256 for `tiny`, 768 for baby GPT).
const COLUMN_UNITS: usize = 64;
const _: () = assert!(crate::workgroup_sum::fits(COLUMN_UNITS as u32));

/// The input seen as [rows, d] over its last dimension, and the floats the row kernels read at
/// a time (`crate::vectors`: a divisor of d, so a row's vectors end with it).
struct Rows {
    rows: usize,
    d: usize,
    lanes: usize,
}

impl Rows {
    fn of(x: &CubeTensor) -> Self {
        let shape = x.meta.shape();
        let d = shape[shape.num_dims() - 1];
        Rows { rows: shape.num_elements() / d.max(1), d, lanes: crate::vectors::lanes(x, d) }
    }

    /// An invocation per row, UNITS a workgroup.
    fn grid(&self) -> (CubeCount, CubeDim) {
        (CubeCount::Static(self.rows.div_ceil(UNITS).max(1) as u32, 1, 1), CubeDim::new_1d(UNITS as u32))
    }

    /// d in vectors of `lanes` floats, as the row kernels count it.
    fn vectors(&self) -> u32 {
        (self.d / self.lanes) as u32
    }
}

// x: [..., d], affine = [γ; β]: [2, d] -> [..., d]
pub fn forward(x: CubeTensor, affine: CubeTensor, epsilon: f64) -> CubeTensor {
    let (x, affine) = (into_contiguous(x), into_contiguous(affine));
    let n = Rows::of(&x);
    let client = x.client.clone();
    let y = empty_device_dtype(client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype);
    let (count, dim) = n.grid();
    // SAFETY (unchecked): x and y of [rows, d], affine of 2·d (the caller's `fits`);
    // invocations past `rows` stop; `lanes` divides d (`Rows`).
    unsafe {
        kernel::layer_norm_forward::launch_unchecked(
            &client,
            count,
            dim,
            n.lanes,
            x.into_tensor_arg(),
            affine.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            n.rows as u32,
            n.vectors(),
            epsilon as f32,
            ElemType::Float(FloatKind::F32),
        );
    }
    y
}

// x: [n, ..., d], branch: [n or 1, ..., d] (repeating), affine = [γ; β]: [2, d]
//   -> sum = x + branch, y: [n, ..., d]
pub fn forward_add(x: CubeTensor, branch: CubeTensor, affine: CubeTensor, epsilon: f64) -> (CubeTensor, CubeTensor) {
    let (x, branch, affine) = (into_contiguous(x), into_contiguous(branch), into_contiguous(affine));
    let branch_len = branch.meta.num_elements() as u32;
    let n = Rows::of(&x);
    let client = x.client.clone();
    let new = || empty_device_dtype(client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype);
    let (sum, y) = (new(), new());
    let (count, dim) = n.grid();
    // SAFETY (unchecked): as `forward`'s, and branch_len is the branch's element count, which
    // divides x's (`fits_with_branch`), so i mod branch_len is below it (in vectors: d, and so
    // branch_len, are multiples of `lanes`).
    unsafe {
        kernel::add_layer_norm_forward::launch_unchecked(
            &client,
            count,
            dim,
            n.lanes,
            x.into_tensor_arg(),
            branch.into_tensor_arg(),
            affine.into_tensor_arg(),
            sum.clone().into_tensor_arg(),
            y.clone().into_tensor_arg(),
            n.rows as u32,
            n.vectors(),
            branch_len / n.lanes as u32,
            epsilon as f32,
            ElemType::Float(FloatKind::F32),
        );
    }
    (sum, y)
}

/// With `d_other` (x's gradient from its other readers), dx comes out with it added.
// x, dy, d_other: [..., d], affine = [γ; β]: [2, d] -> dx: [..., d], [dγ; dβ]: [2, d]
pub fn backward(x: CubeTensor, affine: CubeTensor, dy: CubeTensor, d_other: Option<CubeTensor>, epsilon: f64) -> (CubeTensor, CubeTensor) {
    let (x, affine, dy) = (into_contiguous(x), into_contiguous(affine), into_contiguous(dy));
    let accumulate = d_other.is_some();
    // Without one, the kernel binds dy in its place and never reads it.
    let d_other = d_other.map(into_contiguous).unwrap_or_else(|| dy.clone());
    let n = Rows::of(&x);
    let client = x.client.clone();
    let device = x.device.clone();
    let dx = empty_device_dtype(client.clone(), device.clone(), x.meta.shape().clone(), x.dtype);
    // per row: mean, rstd
    let stats = empty_device_dtype(client.clone(), device.clone(), Shape::new([n.rows, 2]), x.dtype);
    let (count, dim) = n.grid();
    // SAFETY (unchecked): x, dy, d_other and dx of [rows, d], affine of 2·d (`fits`), stats of
    // [rows, 2]; invocations past `rows` stop; `lanes` divides d (`Rows`).
    unsafe {
        kernel::layer_norm_backward_rows::launch_unchecked(
            &client,
            count,
            dim,
            n.lanes,
            x.clone().into_tensor_arg(),
            affine.into_tensor_arg(),
            dy.clone().into_tensor_arg(),
            d_other.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            stats.clone().into_tensor_arg(),
            n.rows as u32,
            n.vectors(),
            epsilon as f32,
            accumulate,
            ElemType::Float(FloatKind::F32),
        );
    }
    let d_affine = empty_device_dtype(client.clone(), device, Shape::new([2, n.d]), x.dtype);
    // SAFETY (unchecked): a workgroup per column k < d, each invocation's rows below `rows`,
    // d_affine of [2, d]; the workgroup size is COLUMN_UNITS, the sum's `units`.
    unsafe {
        kernel::layer_norm_backward_columns::launch_unchecked(
            &client,
            CubeCount::Static(n.d as u32, 1, 1),
            CubeDim::new_1d(COLUMN_UNITS as u32),
            x.into_tensor_arg(),
            dy.into_tensor_arg(),
            stats.into_tensor_arg(),
            d_affine.clone().into_tensor_arg(),
            n.rows as u32,
            n.d as u32,
            COLUMN_UNITS as u32,
            ElemType::Float(FloatKind::F32),
        );
    }
    (dx, d_affine)
}

mod kernel {
    use crate::vectors::lane_sum;
    use crate::workgroup_sum::workgroup_sum_pair;
    use cubecl::prelude::*;

    // The row kernels read and write x, the branch, γ and β, y, dy and dx N floats at a time
    // (`crate::vectors`): `d` and `branch_len` below count vectors, not floats.

    /// Invocation r normalises row r.
    // x, y: [rows, d], affine = [γ; β]: [2, d]
    #[cube(launch_unchecked)]
    pub(super) fn layer_norm_forward<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        affine: &Tensor<Vector<F, N>>,
        y: &mut Tensor<Vector<F, N>>,
        rows: u32,
        d: u32,
        epsilon: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let r = ABSOLUTE_POS_X;
        if r >= rows {
            terminate!();
        }
        normalize_row::<F, N>(x, x, 1, affine, y, r * d, d, F::cast_from(epsilon), false);
    }

    /// Invocation r: s = x + branch over row r, then the row normalised as above. The branch
    /// repeats every `branch_len` elements (broadcast over x's first dimension).
    // x, sum, y: [rows, d], branch: [branch_len / d, d], affine = [γ; β]: [2, d]
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_layer_norm_forward<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        branch: &Tensor<Vector<F, N>>,
        affine: &Tensor<Vector<F, N>>,
        sum: &mut Tensor<Vector<F, N>>,
        y: &mut Tensor<Vector<F, N>>,
        rows: u32,
        d: u32,
        branch_len: u32,
        epsilon: f32,
        #[define(F)] _dtype: ElemType,
    ) {
        let r = ABSOLUTE_POS_X;
        if r >= rows {
            terminate!();
        }
        let start = r * d;
        for k in 0..d {
            let i = (start + k) as usize;
            sum[i] = row_value::<F, N>(x, branch, branch_len, i, true);
        }
        // from x + branch again, rather than reading `sum` back (a kernel's output)
        normalize_row::<F, N>(x, branch, branch_len, affine, y, start, d, F::cast_from(epsilon), true);
    }

    /// Invocation r: dx of row r (plus d_other's row when `accumulate`), and the row's mean and
    /// rstd for the column sums.
    // x, dy, d_other, dx: [rows, d], affine = [γ; β]: [2, d] (γ read), stats: [rows, 2]
    #[cube(launch_unchecked)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_norm_backward_rows<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        affine: &Tensor<Vector<F, N>>,
        dy: &Tensor<Vector<F, N>>,
        d_other: &Tensor<Vector<F, N>>,
        dx: &mut Tensor<Vector<F, N>>,
        stats: &mut Tensor<F>,
        rows: u32,
        d: u32,
        epsilon: f32,
        #[comptime] accumulate: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let r = ABSOLUTE_POS_X;
        if r >= rows {
            terminate!();
        }
        let start = r * d;
        let n = F::cast_from(d * x.vector_size() as u32);
        let (mean, rstd) = moments::<F, N>(x, x, 1, start, d, F::cast_from(epsilon), false);
        let (mean_v, rstd_v) = (Vector::<F, N>::new(mean), Vector::<F, N>::new(rstd));
        // mean(g) and mean(g·x̂), g = dy·γ
        let mut sum_g = Vector::<F, N>::new(F::new(0.0));
        let mut sum_gx = Vector::<F, N>::new(F::new(0.0));
        for k in 0..d {
            let i = (start + k) as usize;
            let g = dy[i] * affine[k as usize];
            sum_g += g;
            sum_gx += g * (x[i] - mean_v) * rstd_v;
        }
        let mean_g = Vector::<F, N>::new(lane_sum::<F, N>(sum_g) / n);
        let mean_gx = Vector::<F, N>::new(lane_sum::<F, N>(sum_gx) / n);
        for k in 0..d {
            let i = (start + k) as usize;
            let g = dy[i] * affine[k as usize];
            let grad = rstd_v * (g - mean_g - (x[i] - mean_v) * rstd_v * mean_gx);
            if accumulate {
                dx[i] = grad + d_other[i];
            } else {
                dx[i] = grad;
            }
        }
        stats[(2 * r) as usize] = mean;
        stats[(2 * r + 1) as usize] = rstd;
    }

    /// Workgroup k: dγ_k = Σ_r dy·x̂ and dβ_k = Σ_r dy down column k, its invocations taking
    /// every `units`-th row and then adding their sums up in shared memory (one invocation per
    /// column walking all rows would leave a GPU nearly idle for the longest loop here).
    // x, dy: [rows, d], stats: [rows, 2], d_affine = [dγ; dβ]: [2, d]
    #[cube(launch_unchecked)]
    pub(super) fn layer_norm_backward_columns<F: Float>(
        x: &Tensor<F>,
        dy: &Tensor<F>,
        stats: &Tensor<F>,
        d_affine: &mut Tensor<F>,
        rows: u32,
        d: u32,
        #[comptime] units: u32,
        #[define(F)] _dtype: ElemType,
    ) {
        let k = CUBE_POS_X;
        let mut sum_gamma = F::new(0.0);
        let mut sum_beta = F::new(0.0);
        let mut r = UNIT_POS_X;
        while r < rows {
            let i = (r * d + k) as usize;
            let normalized = (x[i] - stats[(2 * r) as usize]) * stats[(2 * r + 1) as usize];
            sum_gamma += dy[i] * normalized;
            sum_beta += dy[i];
            r += CUBE_DIM_X;
        }
        let (total_gamma, total_beta) = workgroup_sum_pair::<F>(sum_gamma, sum_beta, units);
        if UNIT_POS_X == 0 {
            d_affine[k as usize] = total_gamma;
            d_affine[(d + k) as usize] = total_beta;
        }
    }

    /// y = (v − mean) · rstd · γ + β over the row v = x[start..start + d] (+ branch's row when
    /// `with_branch`), with affine = [γ; β] (d vectors each).
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn normalize_row<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        branch: &Tensor<Vector<F, N>>,
        branch_len: u32,
        affine: &Tensor<Vector<F, N>>,
        y: &mut Tensor<Vector<F, N>>,
        start: u32,
        d: u32,
        epsilon: F,
        #[comptime] with_branch: bool,
    ) {
        let (mean, rstd) = moments::<F, N>(x, branch, branch_len, start, d, epsilon, with_branch);
        let (mean, rstd) = (Vector::<F, N>::new(mean), Vector::<F, N>::new(rstd));
        for k in 0..d {
            let i = (start + k) as usize;
            y[i] = (row_value::<F, N>(x, branch, branch_len, i, with_branch) - mean) * rstd * affine[k as usize] + affine[(d + k) as usize];
        }
    }

    /// The mean of the row and 1/√(var + ε) (two passes, as the composed form), the row as in
    /// [`normalize_row`].
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn moments<F: Float, N: Size>(
        x: &Tensor<Vector<F, N>>,
        branch: &Tensor<Vector<F, N>>,
        branch_len: u32,
        start: u32,
        d: u32,
        epsilon: F,
        #[comptime] with_branch: bool,
    ) -> (F, F) {
        // the row's floats: d vectors of N
        let features = F::cast_from(d * x.vector_size() as u32);
        let mut sum = Vector::<F, N>::new(F::new(0.0));
        for k in 0..d {
            sum += row_value::<F, N>(x, branch, branch_len, (start + k) as usize, with_branch);
        }
        let mean = lane_sum::<F, N>(sum) / features;
        let mean_v = Vector::<F, N>::new(mean);
        let mut var = Vector::<F, N>::new(F::new(0.0));
        for k in 0..d {
            let c = row_value::<F, N>(x, branch, branch_len, (start + k) as usize, with_branch) - mean_v;
            var += c * c;
        }
        (mean, F::new(1.0) / (lane_sum::<F, N>(var) / features + epsilon).sqrt())
    }

    /// x[i], or x[i] + branch[i mod branch_len] when `with_branch`.
    #[cube]
    fn row_value<F: Float, N: Size>(x: &Tensor<Vector<F, N>>, branch: &Tensor<Vector<F, N>>, branch_len: u32, i: usize, #[comptime] with_branch: bool) -> Vector<F, N> {
        let mut v = x[i];
        if with_branch {
            v += branch[i % branch_len as usize];
        }
        v
    }
}
