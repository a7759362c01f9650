//! The linear probe: multinomial logistic regression on frozen features.
//!
//! A representation "exposes" a label when a linear classifier reads it off (Alain & Bengio,
//! 2016, "Understanding intermediate layers using linear classifier probes"). Features are
//! standardised with the training half's statistics; full-batch gradient descent with a small
//! L2 penalty, a fixed number of iterations, no randomness: the same features give the same
//! accuracy. Small enough (a few hundred rows) to train in the worker between steps.

use crate::Matrix;

/// Iterations of full-batch gradient descent.
const ITERATIONS: usize = 200;
const LEARNING_RATE: f64 = 0.5;
const L2: f64 = 1e-3;

/// Trains on the rows with an even index and returns the accuracy on the odd ones.
/// `labels[r]` < `classes`.
pub fn probe_accuracy(x: &Matrix, labels: &[usize], classes: usize) -> f32 {
    assert_eq!(labels.len(), x.rows, "one label per row");
    let (n, d) = (x.rows, x.cols);
    let train: Vec<usize> = (0..n).step_by(2).collect();
    let test: Vec<usize> = (1..n).step_by(2).collect();
    if train.is_empty() || test.is_empty() || classes < 2 {
        return 0.0;
    }
    // standardise with the training rows' mean and spread
    let mut mean = vec![0.0f64; d];
    let mut var = vec![0.0f64; d];
    for &r in &train {
        for (m, &v) in mean.iter_mut().zip(&x.data[r * d..(r + 1) * d]) {
            *m += v as f64 / train.len() as f64;
        }
    }
    for &r in &train {
        for c in 0..d {
            var[c] += (x.data[r * d + c] as f64 - mean[c]).powi(2) / train.len() as f64;
        }
    }
    let feature = |r: usize, c: usize| (x.data[r * d + c] as f64 - mean[c]) / (var[c].sqrt() + 1e-6);
    let z: Vec<Vec<f64>> = (0..n).map(|r| (0..d).map(|c| feature(r, c)).collect()).collect();
    // w: [classes, d + 1] (last column: bias)
    let mut w = vec![vec![0.0f64; d + 1]; classes];
    let logits = |w: &[Vec<f64>], row: &[f64]| -> Vec<f64> {
        w.iter().map(|wk| wk[d] + wk[..d].iter().zip(row).map(|(a, b)| a * b).sum::<f64>()).collect()
    };
    for _ in 0..ITERATIONS {
        let mut grad = vec![vec![0.0f64; d + 1]; classes];
        for &r in &train {
            let l = logits(&w, &z[r]);
            let max = l.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = l.iter().map(|v| (v - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for k in 0..classes {
                // ∂loss/∂logit_k = softmax_k − [k = label]
                let g = e[k] / sum - if labels[r] == k { 1.0 } else { 0.0 };
                for c in 0..d {
                    grad[k][c] += g * z[r][c];
                }
                grad[k][d] += g;
            }
        }
        for k in 0..classes {
            for c in 0..=d {
                let decay = if c < d { L2 * w[k][c] } else { 0.0 };
                w[k][c] -= LEARNING_RATE * (grad[k][c] / train.len() as f64 + decay);
            }
        }
    }
    let correct = test
        .iter()
        .filter(|&&r| {
            let l = logits(&w, &z[r]);
            let best = (0..classes).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap_or(0);
            best == labels[r]
        })
        .count();
    correct as f32 / test.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random_matrix;

    /// Four classes, each a cluster around its own corner, interleaved rows.
    fn clusters(n: usize) -> (Matrix, Vec<usize>) {
        let noise = random_matrix(n, 6, 11);
        // both halves (even rows train, odd rows test) hold every class
        let labels: Vec<usize> = (0..n).map(|r| (r / 2) % 4).collect();
        let data = (0..n * 6).map(|i| noise.data[i] * 0.5 + if i % 6 == labels[i / 6] { 2.0 } else { 0.0 }).collect();
        (Matrix::new(n, 6, data), labels)
    }

    #[test]
    fn separable_labels_are_read_off() {
        let (x, labels) = clusters(200);
        let acc = probe_accuracy(&x, &labels, 4);
        assert!(acc > 0.95, "accuracy {acc}");
    }

    #[test]
    fn shuffled_labels_give_chance() {
        let (x, labels) = clusters(400);
        // a fixed pseudo-random permutation breaks the link between rows and labels
        let keys = random_matrix(400, 1, 99);
        let mut order: Vec<usize> = (0..400).collect();
        order.sort_by(|&a, &b| keys.data[a].total_cmp(&keys.data[b]));
        let shuffled: Vec<usize> = order.iter().map(|&r| labels[r]).collect();
        let acc = probe_accuracy(&x, &shuffled, 4);
        assert!((acc - 0.25).abs() < 0.12, "chance is 0.25, got {acc}");
    }
}
