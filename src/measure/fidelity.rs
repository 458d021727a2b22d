//! Fidelity of an approximation against a reference signal.

/// Signal-to-quantization-noise ratio in dB: `10·log10(Σ ref² / Σ (ref − approx)²)`.
/// Infinite when the two are identical; `None` when the reference is all zeros.
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> Option<f64> {
    let signal: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
    let noise: f64 = reference.iter().zip(approx).map(|(&r, &a)| (r as f64 - a as f64).powi(2)).sum();
    if signal == 0.0 {
        return None;
    }
    Some(if noise == 0.0 { f64::INFINITY } else { 10.0 * (signal / noise).log10() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_by_hand() {
        // signal 3² + 4² = 25, noise 0.5² = 0.25 → 10·log10(100) = 20 dB
        assert!((sqnr_db(&[3.0, 4.0], &[3.5, 4.0]).unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(sqnr_db(&[1.0], &[1.0]), Some(f64::INFINITY));
        assert_eq!(sqnr_db(&[0.0], &[1.0]), None);
    }
}
