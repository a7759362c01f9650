//! CPU references of the kernels, in f64: what the WGSL must agree with.

use crate::{Matrix, Pca, cka_from_dots};

/// Columns minus their means: x: [rows, cols] -> [rows, cols] (f64)
pub fn center(x: &Matrix) -> Vec<f64> {
    let (n, d) = (x.rows, x.cols);
    let mut means = vec![0.0f64; d];
    for row in x.data.chunks_exact(d.max(1)).take(n) {
        for (m, &v) in means.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    means.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    (0..n * d).map(|i| x.data[i] as f64 - means[i % d]).collect()
}

/// Covariance of the columns: [cols, cols] = Xcᵀ Xc / rows
pub fn covariance(x: &Matrix) -> Vec<f64> {
    let (n, d) = (x.rows, x.cols);
    let xc = center(x);
    let mut cov = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let s: f64 = (0..n).map(|r| xc[r * d + i] * xc[r * d + j]).sum::<f64>() / n.max(1) as f64;
            cov[i * d + j] = s;
            cov[j * d + i] = s;
        }
    }
    cov
}

/// Eigen-decomposition of a symmetric [d, d] matrix by cyclic Jacobi rotations.
/// Returns eigenvalues (largest first) and eigenvectors as columns of a [d, d] matrix in the same
/// order, each signed so that its largest-magnitude component is positive.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v: Vec<f64> = (0..d * d).map(|i| if i / d == i % d { 1.0 } else { 0.0 }).collect();
    for _sweep in 0..100 {
        let off: f64 = (0..d).flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * d + j].powi(2)).sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i].powi(2)).sum::<f64>().max(1e-300);
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&i, &j| a[j * d + j].total_cmp(&a[i * d + i]));
    let values = order.iter().map(|&i| a[i * d + i]).collect();
    let mut vectors = vec![0.0; d * d];
    for (col, &src) in order.iter().enumerate() {
        let big = (0..d).map(|r| v[r * d + src]).fold(0.0f64, |b, x| if x.abs() > b.abs() { x } else { b });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        for r in 0..d {
            vectors[r * d + col] = sign * v[r * d + src];
        }
    }
    (values, vectors)
}

/// PCA to two dimensions: the centred rows on the top two eigenvectors of the covariance.
pub fn pca(x: &Matrix) -> Pca {
    let (n, d) = (x.rows, x.cols);
    let (values, vectors) = symmetric_eigen(&covariance(x), d);
    let xc = center(x);
    let axis = |r: usize, k: usize| if k < d { (0..d).map(|c| xc[r * d + c] * vectors[c * d + k]).sum::<f64>() as f32 } else { 0.0 };
    Pca { points: (0..n).map(|r| [axis(r, 0), axis(r, 1)]).collect(), eigenvalues: values.iter().map(|&v| v as f32).collect() }
}

/// Centred Gram matrix: [rows, rows] = Xc Xcᵀ
pub fn gram(x: &Matrix) -> Vec<f64> {
    let (n, d) = (x.rows, x.cols);
    let xc = center(x);
    let mut g = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            g[i * n + j] = (0..d).map(|c| xc[i * d + c] * xc[j * d + c]).sum();
        }
    }
    g
}

/// Linear CKA of two feature matrices over the same rows.
pub fn linear_cka(x: &Matrix, y: &Matrix) -> f32 {
    cka_matrix(&[x, y])[1]
}

/// The m × m linear-CKA matrix.
pub fn cka_matrix(xs: &[&Matrix]) -> Vec<f32> {
    let grams: Vec<Vec<f64>> = xs.iter().map(|x| gram(x)).collect();
    let m = xs.len();
    let mut dots = vec![0.0f32; m * m];
    for i in 0..m {
        for j in 0..m {
            dots[i * m + j] = grams[i].iter().zip(&grams[j]).map(|(a, b)| a * b).sum::<f64>() as f32;
        }
    }
    cka_from_dots(&dots, m)
}

/// Effective rank of a feature matrix (CPU reference of [`crate::Pca::effective_rank`]).
pub fn effective_rank(x: &Matrix) -> f32 {
    let (values, _) = symmetric_eigen(&covariance(x), x.cols);
    crate::effective_rank_from_eigenvalues(&values.iter().map(|&v| v as f32).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_matrix;

    /// y = x · R for a random orthogonal R (Gram–Schmidt of random columns).
    fn rotate(x: &Matrix, seed: u64) -> Matrix {
        let d = x.cols;
        let r = random_matrix(d, d, seed);
        let mut q: Vec<Vec<f64>> = Vec::new();
        for c in 0..d {
            let mut v: Vec<f64> = (0..d).map(|i| r.data[i * d + c] as f64).collect();
            for u in &q {
                let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            q.push(v.into_iter().map(|a| a / norm).collect());
        }
        let data = (0..x.rows * d)
            .map(|i| {
                let (row, col) = (i / d, i % d);
                (0..d).map(|k| x.data[row * d + k] as f64 * q[col][k]).sum::<f64>() as f32
            })
            .collect();
        Matrix::new(x.rows, d, data)
    }

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let x = random_matrix(40, 7, 3);
        let cov = covariance(&x);
        let (values, vectors) = symmetric_eigen(&cov, 7);
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "largest first");
        for i in 0..7 {
            for j in 0..7 {
                let r: f64 = (0..7).map(|k| vectors[i * 7 + k] * values[k] * vectors[j * 7 + k]).sum();
                assert!((r - cov[i * 7 + j]).abs() < 1e-9, "V Λ Vᵀ = C at ({i}, {j})");
            }
        }
    }

    #[test]
    fn cka_is_one_on_itself_and_invariant_to_rotation_and_scale() {
        let x = random_matrix(50, 8, 1);
        assert!((linear_cka(&x, &x) - 1.0).abs() < 1e-5);
        let rotated = rotate(&x, 9);
        assert!((linear_cka(&x, &rotated) - 1.0).abs() < 1e-4, "orthogonal rotation");
        let scaled = Matrix::new(x.rows, x.cols, x.data.iter().map(|v| v * 3.5).collect());
        assert!((linear_cka(&x, &scaled) - 1.0).abs() < 1e-5, "isotropic scaling");
        let other = random_matrix(50, 8, 2);
        let c = linear_cka(&x, &other);
        assert!(c < 0.5 && c > 0.0, "unrelated features are far from 1: {c}");
        assert!((linear_cka(&x, &other) - linear_cka(&other, &x)).abs() < 1e-6, "symmetric");
    }

    #[test]
    fn pca_finds_the_long_axis() {
        // points along (1, 1, 0) with a little noise: the first axis carries almost everything
        let noise = random_matrix(60, 3, 5);
        let data: Vec<f32> = (0..60)
            .flat_map(|r| {
                let t = r as f32 - 30.0;
                [t + 0.1 * noise.data[r * 3], t + 0.1 * noise.data[r * 3 + 1], 0.1 * noise.data[r * 3 + 2]]
            })
            .collect();
        let p = pca(&Matrix::new(60, 3, data));
        assert!(p.eigenvalues[0] > 100.0 * p.eigenvalues[1]);
        assert!((p.points[59][0] - p.points[0][0]).abs() > 80.0);
        assert!(p.effective_rank() < 1.2);
    }
}
