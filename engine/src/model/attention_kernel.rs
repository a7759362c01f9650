//! Fused self-attention for short contexts on the GPU: one launch forward, one backward.
//!
//! Why: composed of burn operations, one layer's attention is ~8 launches forward (the key
//! transpose's copy, two matmuls, the softmax's two reductions and division, the heads'
//! merge) and ~12 backward, each moving a few kilobytes — small models are bound by launches
//! (docs/performance.md). Here one workgroup takes one (sequence, head) pair and one
//! invocation one position, so a context of up to [`MAX_SEQ`] positions fits one workgroup;
//! everything a position needs is recomputed from `qkv` in registers (as FlashAttention does,
//! Dao et al. 2022, without its tiling: at these sizes the rows fit whole).
//!
//! Keys a mask hides are skipped (their weight is exactly 0: `mask_floor`), so a causal row
//! reads only the keys up to it. The forward reads the keys once (an online softmax over blocks
//! of eight keys); the backward's statistics take one pass and D_i comes from the forward's
//! output. Rows are read four floats at a time where the head's width allows
//! (`crate::vectors`: 2.1× on lavapipe). docs/performance.md has the measurements ("In the
//! tab", twenty-sixth session; "GPU", twenty-eighth session).
//!
//! The arithmetic is `attention.rs`'s, which is also the reference the tests compare with:
//!   forward   S = q·kᵀ/√d_head + bias,  P = softmax(S),  O = P·v
//!   backward  D_i = Σ_j P_ij·(dO_i·v_j) = dO_i·O_i,  dS_ij = P_ij·(dO_i·v_j − D_i)/√d_head,
//!             dq_i = Σ_j dS_ij·k_j,  dk_j = Σ_i dS_ij·q_i,  dv_j = Σ_i P_ij·dO_i

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, ElemType};

/// The longest context one workgroup covers (WebGPU's default invocations per workgroup).
pub const MAX_SEQ: usize = 256;
/// The widest head the kernels keep in registers.
pub const MAX_HEAD: usize = 128;

/// Whether the kernels' registers and shared rows hold these sizes: a context of at most
/// [`MAX_SEQ`] positions and heads of at most [`MAX_HEAD`]. The caller asks this beside
/// `attention::fits` (the shapes the CPU loops take too): the kernels are launched unchecked,
/// so those shapes and these limits are what keeps their indices in bounds.
pub fn within_limits(qkv: &CubeTensor, n_head: usize) -> bool {
    let shape = qkv.meta.shape();
    shape[1] <= MAX_SEQ && shape[2] / 3 / n_head <= MAX_HEAD
}

/// One launch's sizes: qkv [b, s, 3·d] in heads of d_head, a bias of [rows, 1, s, s], and the
/// floats the kernels read at a time (`crate::vectors`: a divisor of d_head, so a head's vectors
/// end where its columns do).
struct Sizes {
    batch: usize,
    seq: usize,
    d_model: usize,
    n_head: usize,
    d_head: usize,
    bias_rows: usize,
    lanes: usize,
}

impl Sizes {
    fn new(qkv: &CubeTensor, bias: &CubeTensor, n_head: usize) -> Self {
        let shape = qkv.meta.shape();
        let d_model = shape[2] / 3;
        let d_head = d_model / n_head;
        let lanes = crate::vectors::lanes(qkv, d_head);
        Sizes { batch: shape[0], seq: shape[1], d_model, n_head, d_head, bias_rows: bias.meta.shape()[0], lanes }
    }

    /// A workgroup per (sequence, head), an invocation per position.
    fn grid(&self) -> (CubeCount, CubeDim) {
        (CubeCount::Static((self.batch * self.n_head) as u32, 1, 1), CubeDim::new_1d(self.seq as u32))
    }

    /// The scores' 1/√d_head.
    fn scale(&self) -> f32 {
        1.0 / (self.d_head as f32).sqrt()
    }

    /// d_model and d_head in vectors of `lanes` floats, as the kernels count them.
    fn vectors(&self) -> (u32, u32) {
        ((self.d_model / self.lanes) as u32, (self.d_head / self.lanes) as u32)
    }
}

// qkv: [b, s, 3·d], bias: [rows, 1, s, s] -> [b, s, d]
pub fn forward(qkv: CubeTensor, bias: CubeTensor, n_head: usize) -> CubeTensor {
    let (qkv, bias) = (into_contiguous(qkv), into_contiguous(bias));
    let n = Sizes::new(&qkv, &bias, n_head);
    let client = qkv.client.clone();
    let out = empty_device_dtype(client.clone(), qkv.device.clone(), Shape::new([n.batch, n.seq, n.d_model]), qkv.dtype);
    let ((count, dim), (model_vectors, head_vectors)) = (n.grid(), n.vectors());
    // SAFETY (unchecked: no clamp on each index): `fits` and `within_limits`, which the caller asked, gave
    // qkv [b, s, 3·d] and a bias of [1 or b, 1, s, s]; a workgroup per (sequence, head) and an
    // invocation per position keep every row and key below s and every column below 3·d, and
    // `lanes` divides d_head (`Sizes`).
    unsafe {
        kernel::attention_forward::launch_unchecked(
            &client,
            count,
            dim,
            n.lanes,
            qkv.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            n.seq as u32,
            n.bias_rows as u32,
            n.scale(),
            model_vectors,
            head_vectors,
            ElemType::Float(FloatKind::F32),
        );
    }
    out
}

// qkv: [b, s, 3·d], bias: [rows, 1, s, s], out, d_out: [b, s, d] -> d_qkv: [b, s, 3·d]
pub fn backward(qkv: CubeTensor, bias: CubeTensor, out: CubeTensor, d_out: CubeTensor, n_head: usize) -> CubeTensor {
    let (qkv, bias, out, d_out) = (into_contiguous(qkv), into_contiguous(bias), into_contiguous(out), into_contiguous(d_out));
    let n = Sizes::new(&qkv, &bias, n_head);
    let client = qkv.client.clone();
    let d_qkv = empty_device_dtype(client.clone(), qkv.device.clone(), qkv.meta.shape().clone(), qkv.dtype);
    let ((count, dim), (model_vectors, head_vectors)) = (n.grid(), n.vectors());
    // SAFETY (unchecked): as the forward's, with out and d_out of [b, s, d] (`fits`), and
    // the shared rows' MAX_SEQ ≥ s.
    unsafe {
        kernel::attention_backward::launch_unchecked(
            &client,
            count,
            dim,
            n.lanes,
            qkv.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.into_tensor_arg(),
            d_out.into_tensor_arg(),
            d_qkv.clone().into_tensor_arg(),
            n.seq as u32,
            n.bias_rows as u32,
            n.scale(),
            model_vectors,
            head_vectors,
            MAX_SEQ as u32,
            ElemType::Float(FloatKind::F32),
        );
    }
    d_qkv
}

mod kernel {
    use super::super::attention_cpu::MASK_MARGIN;
    use crate::vectors::lane_sum;
    use cubecl::prelude::*;

    /// Keys the forward scores at a time before it updates its running sums (one rescale per
    /// block at most).
    const BLOCK: u32 = 8;

    // Rows of qkv, out, d_out and d_qkv are read and written N floats at a time (`lanes`):
    // `d_model` and `d_head` below count vectors, not floats. The bias stays one float a key.

    /// Workgroup (sequence b, head h), invocation i: output row i of that head.
    // qkv: [b, s, 3·d], bias: [rows, 1, s, s], out: [b, s, d]
    #[cube(launch_unchecked)]
    pub(super) fn attention_forward<F: Float, N: Size>(
        qkv: &Tensor<Vector<F, N>>,
        bias: &Tensor<F>,
        out: &mut Tensor<Vector<F, N>>,
        seq: u32,
        bias_rows: u32,
        scale: f32,
        #[comptime] d_model: u32,
        #[comptime] d_head: u32,
        #[define(F)] _dtype: ElemType,
    ) {
        let n_head = d_model / d_head;
        let b = CUBE_POS_X / n_head;
        let h = CUBE_POS_X % n_head;
        let i = UNIT_POS_X;
        let scale = F::cast_from(scale);
        let q = load(qkv, row(b, i, seq, d_model * 3) + h * d_head, d_head);
        let bias_row = bias_offset(b, i, seq, bias_rows);
        let floor = mask_floor(bias, bias_row, seq);
        // One pass over the keys, BLOCK at a time: the block's scores, then the running
        // Σ_j e^(s_j − max)·v_j and Σ_j e^(s_j − max) rescaled once if the block raised the
        // largest score (FlashAttention's online softmax), then the block's terms.
        let mut acc = Array::<Vector<F, N>>::new(d_head as usize);
        for k in 0..d_head {
            acc[k as usize] = Vector::<F, N>::new(F::new(0.0));
        }
        let mut max_score = F::new(-3.0e38);
        let mut total = F::new(0.0);
        let mut scores = Array::<F>::new(BLOCK as usize);
        let blocks = seq.div_ceil(BLOCK);
        for block in 0..blocks {
            let first = block * BLOCK;
            let mut block_max = F::new(-3.0e38);
            for t in 0..BLOCK {
                let j = first + t;
                // a key past the end or hidden by the mask keeps the sentinel: no term
                scores[t as usize] = F::new(-3.0e38);
                if j < seq {
                    let c = bias[(bias_row + j) as usize];
                    if c > floor {
                        let s = score(&q, qkv, row(b, j, seq, d_model * 3) + d_model + h * d_head, d_head, scale) + c;
                        scores[t as usize] = s;
                        block_max = max(block_max, s);
                    }
                }
            }
            if block_max > max_score {
                let r = (max_score - block_max).exp();
                total *= r;
                let r = Vector::<F, N>::new(r);
                for k in 0..d_head {
                    acc[k as usize] *= r;
                }
                max_score = block_max;
            }
            for t in 0..BLOCK {
                let s = scores[t as usize];
                if s > F::new(-1.0e38) {
                    let value = row(b, first + t, seq, d_model * 3) + 2 * d_model + h * d_head;
                    let p = (s - max_score).exp();
                    total += p;
                    let p = Vector::<F, N>::new(p);
                    for k in 0..d_head {
                        acc[k as usize] += p * qkv[(value + k) as usize];
                    }
                }
            }
        }
        let o = row(b, i, seq, d_model) + h * d_head;
        let total = Vector::<F, N>::new(total);
        for k in 0..d_head {
            out[(o + k) as usize] = acc[k as usize] / total;
        }
    }

    /// Workgroup (sequence b, head h), invocation i: first the softmax statistics and D of
    /// query row i, shared with the workgroup; then dq of row i, and dk and dv of key row i.
    // qkv: [b, s, 3·d], bias: [rows, 1, s, s], out, d_out: [b, s, d], d_qkv: [b, s, 3·d]
    #[cube(launch_unchecked)]
    pub(super) fn attention_backward<F: Float, N: Size>(
        qkv: &Tensor<Vector<F, N>>,
        bias: &Tensor<F>,
        out: &Tensor<Vector<F, N>>,
        d_out: &Tensor<Vector<F, N>>,
        d_qkv: &mut Tensor<Vector<F, N>>,
        seq: u32,
        bias_rows: u32,
        scale: f32,
        #[comptime] d_model: u32,
        #[comptime] d_head: u32,
        #[comptime] max_seq: u32,
        #[define(F)] _dtype: ElemType,
    ) {
        let n_head = d_model / d_head;
        let b = CUBE_POS_X / n_head;
        let h = CUBE_POS_X % n_head;
        let i = UNIT_POS_X;
        let scale = F::cast_from(scale);
        let width = d_model * 3;
        // each row's largest score and log Σ_j e^(s_ij − max) apart, and D_i, for the key-side
        // loop. Apart, not as one log-sum-exp: a row whose every key is masked has scores near
        // −1e9, where an f32 has no room for the log Σ (64 floats apart) and each of its n
        // weights would come out 1 instead of 1/n
        let mut row_max = Shared::<[F]>::new_slice(max_seq as usize);
        let mut log_total = Shared::<[F]>::new_slice(max_seq as usize);
        let mut dot = Shared::<[F]>::new_slice(max_seq as usize);
        // each row's mask floor (see `mask_floor`), for the key-side loop
        let mut floors = Shared::<[F]>::new_slice(max_seq as usize);

        // phase 1, query row i
        let q = load(qkv, row(b, i, seq, width) + h * d_head, d_head);
        let g = load(d_out, row(b, i, seq, d_model) + h * d_head, d_head);
        let bias_row = bias_offset(b, i, seq, bias_rows);
        let floor = mask_floor(bias, bias_row, seq);
        // log Σ_j e^(s_ij) in one pass (the running sum rescaled when the largest score grows),
        // and D_i = Σ_j P_ij·(dO_i·v_j) = dO_i·O_i from the forward's output
        let mut max_score = F::new(-3.0e38);
        let mut total = F::new(0.0);
        for j in 0..seq {
            let c = bias[(bias_row + j) as usize];
            if c > floor {
                let s = score(&q, qkv, row(b, j, seq, width) + d_model + h * d_head, d_head, scale) + c;
                if s > max_score {
                    total *= (max_score - s).exp();
                    max_score = s;
                }
                total += (s - max_score).exp();
            }
        }
        let d_i = score(&g, out, row(b, i, seq, d_model) + h * d_head, d_head, F::new(1.0));
        let log_sum = total.ln();
        row_max[i as usize] = max_score;
        log_total[i as usize] = log_sum;
        dot[i as usize] = d_i;
        floors[i as usize] = floor;

        // phase 2a: dq_i = Σ_j dS_ij·k_j
        let mut dq = Array::<Vector<F, N>>::new(d_head as usize);
        for k in 0..d_head {
            dq[k as usize] = Vector::<F, N>::new(F::new(0.0));
        }
        for j in 0..seq {
            let c = bias[(bias_row + j) as usize];
            if c > floor {
                let key = row(b, j, seq, width) + h * d_head;
                let p = (score(&q, qkv, key + d_model, d_head, scale) + c - max_score - log_sum).exp();
                let ds = p * (score(&g, qkv, key + 2 * d_model, d_head, F::new(1.0)) - d_i) * scale;
                let ds = Vector::<F, N>::new(ds);
                for k in 0..d_head {
                    dq[k as usize] += ds * qkv[(key + d_model + k) as usize];
                }
            }
        }
        let mine = row(b, i, seq, width) + h * d_head;
        for k in 0..d_head {
            d_qkv[(mine + k) as usize] = dq[k as usize];
        }
        sync_cube();

        // phase 2b: key row j = i: dk_j = Σ_r dS_rj·q_r, dv_j = Σ_r P_rj·dO_r
        let j = i;
        let kj = load(qkv, mine + d_model, d_head);
        let vj = load(qkv, mine + 2 * d_model, d_head);
        let mut dk = Array::<Vector<F, N>>::new(d_head as usize);
        let mut dv = Array::<Vector<F, N>>::new(d_head as usize);
        for k in 0..d_head {
            dk[k as usize] = Vector::<F, N>::new(F::new(0.0));
            dv[k as usize] = Vector::<F, N>::new(F::new(0.0));
        }
        for r in 0..seq {
            let c = bias[(bias_offset(b, r, seq, bias_rows) + j) as usize];
            if c > floors[r as usize] {
                let query = row(b, r, seq, width) + h * d_head;
                let grad = row(b, r, seq, d_model) + h * d_head;
                let p = (score(&kj, qkv, query, d_head, scale) + c - row_max[r as usize] - log_total[r as usize]).exp();
                let ds = p * (score(&vj, d_out, grad, d_head, F::new(1.0)) - dot[r as usize]) * scale;
                let (p, ds) = (Vector::<F, N>::new(p), Vector::<F, N>::new(ds));
                for k in 0..d_head {
                    dk[k as usize] += ds * qkv[(query + k) as usize];
                    dv[k as usize] += p * d_out[(grad + k) as usize];
                }
            }
        }
        for k in 0..d_head {
            d_qkv[(mine + d_model + k) as usize] = dk[k as usize];
            d_qkv[(mine + 2 * d_model + k) as usize] = dv[k as usize];
        }
    }

    /// Offset of position i of sequence b in a [b, s, width] tensor.
    #[cube]
    fn row(b: u32, i: u32, seq: u32, width: u32) -> u32 {
        (b * seq + i) * width
    }

    /// Offset of bias row i for sequence b ([rows, 1, s, s]; one row set for all when rows = 1).
    #[cube]
    fn bias_offset(b: u32, i: u32, seq: u32, bias_rows: u32) -> u32 {
        let set = select(bias_rows == 1, 0, b);
        (set * seq + i) * seq
    }

    /// A key whose bias is below this gets a weight of exactly 0 and is skipped: the row's
    /// largest bias less the CPU loops' `MASK_MARGIN` (attention_cpu.rs; the masks are 0 and
    /// −1e9, so e^(s − max) underflows to 0 for any score below ~10⁶). Relative to the row's
    /// largest, so that a row with every key masked still sees them all, as the composed path
    /// does. A causal row skips the keys after it: half the pairs, though a SIMD group of
    /// invocations runs to its last row's keys.
    #[cube]
    fn mask_floor<F: Float>(bias: &Tensor<F>, start: u32, seq: u32) -> F {
        let mut top = F::new(-3.0e38);
        for j in 0..seq {
            top = max(top, bias[(start + j) as usize]);
        }
        top - F::new(MASK_MARGIN)
    }

    /// t[start..start + n] (vectors) into registers.
    #[cube]
    fn load<F: Float, N: Size>(t: &Tensor<Vector<F, N>>, start: u32, #[comptime] n: u32) -> Array<Vector<F, N>> {
        let mut a = Array::<Vector<F, N>>::new(n as usize);
        for k in 0..n {
            a[k as usize] = t[(start + k) as usize];
        }
        a
    }

    /// scale · Σ_k a[k]·t[start + k], over every lane of the n vectors
    #[cube]
    fn score<F: Float, N: Size>(a: &Array<Vector<F, N>>, t: &Tensor<Vector<F, N>>, start: u32, #[comptime] n: u32, scale: F) -> F {
        let mut s = Vector::<F, N>::new(F::new(0.0));
        for k in 0..n {
            s += a[k as usize] * t[(start + k) as usize];
        }
        lane_sum::<F, N>(s) * scale
    }
}
