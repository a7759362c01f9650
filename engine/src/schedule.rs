//! Learning-rate schedule: linear warmup, then cosine decay to a floor (nanoGPT's `get_lr`).

/// Learning rate at `step` (0-based).
pub fn learning_rate(step: usize, max_lr: f64, min_lr: f64, warmup: usize, decay_steps: usize) -> f64 {
    if step < warmup {
        return max_lr * (step + 1) as f64 / (warmup + 1) as f64;
    }
    if step >= decay_steps {
        return min_lr;
    }
    let ratio = (step - warmup) as f64 / (decay_steps - warmup).max(1) as f64;
    let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
    min_lr + coeff * (max_lr - min_lr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let lr = |s| learning_rate(s, 1e-3, 1e-4, 10, 100);
        assert!(lr(0) < lr(5) && lr(5) < lr(9));
        assert!((lr(10) - 1e-3).abs() < 1e-12);
        assert!(lr(50) < lr(10) && lr(50) > lr(90));
        assert!((lr(100) - 1e-4).abs() < 1e-12);
        assert!((lr(5000) - 1e-4).abs() < 1e-12);
    }
}
