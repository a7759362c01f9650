//! How much device memory a run needs, estimated before anything is allocated, so that a
//! workspace with too many (or too large) runs is refused with the figure instead of failing
//! half-way on the device.

use crate::model::Architecture;
use crate::spec::ExperimentSpec;

/// Memory the lab lets its runs take on one device. Browsers do not tell a page how much GPU
/// memory there is, and a wasm32 worker addresses at most 4 GiB, so the budget is a fixed,
/// conservative share that fits laptops.
pub const DEVICE_BUDGET: u64 = 2 << 30;

/// Estimated bytes a training run of `spec` holds at its peak: weights, gradients and AdamW's
/// two moments (4 floats per parameter), and the activations autodiff keeps for the backward
/// pass (per layer: about 20 floats per token and width for the LayerNorms, projections and MLP,
/// plus 3 per attention score), plus the logits.
pub fn run_bytes(spec: &ExperimentSpec, vocab: usize) -> u64 {
    let m = &spec.model;
    let (b, s, d, h) = (spec.train.batch_size as u64, m.block_size as u64, m.d_model as u64, m.n_head as u64);
    let params = m.n_params(vocab) as u64;
    let stacks = if m.arch == Architecture::EncoderDecoder { 2 } else { 1 };
    let per_layer = b * s * d * 20 + b * h * s * s * 3;
    let activations = stacks * m.n_layer as u64 * per_layer + b * s * vocab as u64 * 3;
    4 * (4 * params + activations)
}

/// Human-readable bytes (MB / GB).
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MB", (bytes as f64 / (1u64 << 20) as f64).max(1.0))
    }
}

/// Refuses a workspace of `specs` whose estimated total exceeds `budget`.
pub fn check_workspace(specs: &[&ExperimentSpec], vocab: usize, budget: u64) -> Result<u64, String> {
    let total: u64 = specs.iter().map(|s| run_bytes(s, vocab)).sum();
    if total > budget {
        return Err(format!(
            "{} run{} would need about {} of device memory, more than the {} this lab allows; remove a run or make it smaller",
            specs.len(),
            if specs.len() == 1 { "" } else { "s" },
            format_bytes(total),
            format_bytes(budget)
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_baby_gpts_fit_and_a_huge_run_is_refused() {
        let baby = ExperimentSpec::default_experiment();
        let one = run_bytes(&baby, 100);
        assert!(one > 10 << 20 && one < 200 << 20, "baby GPT ≈ tens of MB: {}", format_bytes(one));
        assert!(check_workspace(&[&baby; 6], 100, DEVICE_BUDGET).is_ok());
        let mut huge = baby.clone();
        huge.model.d_model = 2048;
        huge.model.n_layer = 48;
        huge.model.block_size = 1024;
        let err = check_workspace(&[&baby, &huge], 100, DEVICE_BUDGET).unwrap_err();
        assert!(err.contains("2 runs") && err.contains("GB"), "{err}");
    }
}
