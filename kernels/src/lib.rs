//! Objective Lab's hand-written compute kernels for the representation views.
//!
//! Each kernel is a `.wgsl` file under `wgsl/`, launched from [`gpu`], beside a CPU reference in
//! [`cpu`] that the tests hold it to:
//!
//! | kernel | what | used for |
//! | --- | --- | --- |
//! | `center.wgsl` | subtract column means | every statistic below |
//! | `matmul.wgsl` | strided A·B | covariance Xᵀ X, Gram X Xᵀ, projection X V |
//! | `jacobi.wgsl` | symmetric eigen-decomposition (parallel Jacobi) | PCA, effective rank |
//! | `pair_dots.wgsl` | all pairwise Frobenius products | linear CKA between runs |
//!
//! [`Analyser`] picks the GPU when there is one and the CPU reference otherwise, so the page
//! shows the same views on every device. The linear probe ([`probe`]) is small logistic
//! regression on the CPU (it is trained in the worker, beside the runs).

pub mod cpu;
pub mod gpu;
pub mod probe;

/// A row-major matrix of features: `rows` samples × `cols` dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data must be rows × cols");
        Self { rows, cols, data }
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// A 2-D principal-component projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    /// points: [rows, 2] — each sample on the first two principal axes
    pub points: Vec<[f32; 2]>,
    /// Covariance eigenvalues, largest first (variance along each axis).
    pub eigenvalues: Vec<f32>,
}

impl Pca {
    /// Effective rank of the features (Roy & Vetterli, 2007): exp of the entropy of the
    /// normalised singular values. Singular values of the centred features are √(n·λ) for
    /// the covariance eigenvalues λ; the scale cancels in the normalisation.
    pub fn effective_rank(&self) -> f32 {
        effective_rank_from_eigenvalues(&self.eigenvalues)
    }
}

/// exp(−Σ pᵢ ln pᵢ) with pᵢ = σᵢ / Σσ and σᵢ = √λᵢ. Eigenvalues below 10⁻⁶ of the largest are
/// rounding noise of f32 (a rank-deficient matrix's zero eigenvalues come out as ±10⁻⁷ on the
/// GPU) and count as zero, so the GPU and the f64 reference agree.
pub fn effective_rank_from_eigenvalues(eigenvalues: &[f32]) -> f32 {
    let largest = eigenvalues.iter().cloned().fold(0.0f32, f32::max) as f64;
    let sigma: Vec<f64> =
        eigenvalues.iter().map(|&l| l as f64).map(|l| if l > 1e-6 * largest { l.sqrt() } else { 0.0 }).collect();
    let total: f64 = sigma.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = sigma.iter().map(|s| s / total).filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum();
    entropy.exp() as f32
}

/// Linear CKA from the pairwise Frobenius products of centred Gram matrices:
/// CKA(i, j) = ⟨Kᵢ, Kⱼ⟩ / (‖Kᵢ‖ ‖Kⱼ‖) (Kornblith et al., 2019). `dots`: [m, m].
pub fn cka_from_dots(dots: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            let norm = (dots[i * m + i] as f64 * dots[j * m + j] as f64).sqrt();
            out[i * m + j] = if norm > 0.0 { (dots[i * m + j] as f64 / norm) as f32 } else { 0.0 };
        }
    }
    out
}

/// Where the representation statistics run: the GPU kernels, or their CPU references.
pub enum Analyser {
    Gpu(gpu::Gpu),
    Cpu,
}

impl Analyser {
    /// The GPU analyser when an adapter is there, else the CPU one (with the reason).
    pub async fn new() -> (Self, Option<String>) {
        match gpu::Gpu::new().await {
            Ok(gpu) => (Self::Gpu(gpu), None),
            Err(why) => (Self::Cpu, Some(why)),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Gpu(_) => "GPU (WGSL kernels)",
            Self::Cpu => "CPU",
        }
    }

    /// PCA of `x` to two dimensions (falls back to the CPU for matrices wider than the
    /// Jacobi kernel's 256 columns).
    pub async fn pca(&self, x: &Matrix) -> Result<Pca, String> {
        match self {
            Self::Gpu(gpu) if x.cols <= gpu::MAX_EIGEN_DIM => gpu.pca(x).await,
            _ => Ok(cpu::pca(x)),
        }
    }

    /// The m × m linear-CKA matrix of feature matrices with the same rows (row-major).
    pub async fn cka_matrix(&self, xs: &[&Matrix]) -> Result<Vec<f32>, String> {
        match self {
            Self::Gpu(gpu) => gpu.cka_matrix(xs).await,
            Self::Cpu => Ok(cpu::cka_matrix(xs)),
        }
    }
}

/// Deterministic test data (no RNG crate needed): a linear congruential generator.
#[cfg(test)]
pub(crate) fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data = (0..rows * cols)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    Matrix::new(rows, cols, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_rank_counts_equal_directions() {
        assert!((effective_rank_from_eigenvalues(&[4.0, 4.0, 4.0, 0.0]) - 3.0).abs() < 1e-5);
        assert!((effective_rank_from_eigenvalues(&[1.0, 0.0, 0.0]) - 1.0).abs() < 1e-5);
        assert_eq!(effective_rank_from_eigenvalues(&[0.0, 0.0]), 0.0);
    }
}
