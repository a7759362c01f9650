//! Test helpers shared by the custom operations' value and gradient checks.

use burn::tensor::Tensor;

/// A tensor's values, read synchronously (native tests only).
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Element by element within `tol` relative to 1 + |expected|.
pub fn close(actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len());
    for (i, (x, y)) in actual.iter().zip(expected).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "[{i}] {x} vs {y}");
    }
}
