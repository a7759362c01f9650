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

/// What a probe read on the held-out rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// Share of held-out rows read right.
    pub accuracy: f32,
    /// confusion: [classes (the row's label), classes (what the probe read)], counts of
    /// held-out rows; its diagonal holds the rows read right.
    pub confusion: Vec<u32>,
}

/// Trains on the rows with an even index and returns the accuracy on the odd ones.
/// `labels[r]` < `classes`.
pub fn probe_accuracy(x: &Matrix, labels: &[usize], classes: usize) -> f32 {
    probe(x, labels, classes).accuracy
}

/// [`probe_accuracy`], with what the probe read for each held-out row.
pub fn probe(x: &Matrix, labels: &[usize], classes: usize) -> ProbeResult {
    assert_eq!(labels.len(), x.rows, "one label per row");
    let (n, d) = (x.rows, x.cols);
    let train: Vec<usize> = (0..n).step_by(2).collect();
    let test: Vec<usize> = (1..n).step_by(2).collect();
    if train.is_empty() || test.is_empty() || classes < 2 {
        return ProbeResult { accuracy: 0.0, confusion: vec![0; classes * classes] };
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
    let mut confusion = vec![0u32; classes * classes];
    for &r in &test {
        let l = logits(&w, &z[r]);
        let read = (0..classes).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap_or(0);
        confusion[labels[r] * classes + read] += 1;
    }
    let correct: u32 = (0..classes).map(|k| confusion[k * classes + k]).sum();
    ProbeResult { accuracy: correct as f32 / test.len() as f32, confusion }
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
        // what it read: every held-out row counted once, the right ones on the diagonal
        let read = probe(&x, &labels, 4);
        assert_eq!(read.confusion.len(), 16);
        assert_eq!(read.confusion.iter().sum::<u32>() as usize, x.rows / 2);
        let diagonal: u32 = (0..4).map(|k| read.confusion[k * 4 + k]).sum();
        assert_eq!(diagonal as f32 / (x.rows / 2) as f32, read.accuracy);
        for k in 0..4 {
            let row: u32 = read.confusion[k * 4..k * 4 + 4].iter().sum();
            assert_eq!(row as usize, labels.iter().skip(1).step_by(2).filter(|&&l| l == k).count(), "row {k}: the held-out rows of label {k}");
        }
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
