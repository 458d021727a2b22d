//! Round-trip error budgets, checked on seeded Gaussian weights and on the real zoo weights.

mod common;

use qbench::measure::fidelity::sqnr_db;
use qbench::quant::budget::budget;
use qbench::quant::int::{quantize_weight, Granularity, IntType, QuantError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SCHEMES: &[(IntType, bool, Granularity)] = &[
    (IntType::I8, true, Granularity::PerTensor),
    (IntType::I8, false, Granularity::PerTensor),
    (IntType::I8, true, Granularity::PerChannel),
    (IntType::I8, false, Granularity::PerChannel),
    (IntType::I4, true, Granularity::Group(32)),
    (IntType::I4, false, Granularity::Group(32)),
    (IntType::I4, true, Granularity::Group(64)),
    (IntType::I4, false, Granularity::Group(128)),
];

/// Checks one tensor against its budget; returns false when the scheme does not apply (group size).
fn check(what: &str, w: &[f32], shape: &[usize], ty: IntType, sym: bool, g: Granularity) -> bool {
    let q = match quantize_weight(w, shape, ty, sym, g) {
        Ok(q) => q,
        Err(QuantError::GroupSize { .. }) => return false,
        Err(e) => panic!("{what}: {e}"),
    };
    let d = q.dequantize();
    let block = q.block_len();
    for (i, (x, y)) in w.iter().zip(&d).enumerate() {
        let step = q.params[i / block].scale;
        assert!(
            (x - y).abs() <= step * 0.5 * (1.0 + 1e-5) + 1e-12,
            "{what} {ty:?} sym={sym} {g:?}: element {i} off by {} > step/2 = {}",
            (x - y).abs(),
            step / 2.0
        );
        let (lo, hi) = ty.quant_range(sym);
        assert!((lo..=hi).contains(&ty.decode(q.values[i])));
    }
    let b = budget(ty, g);
    let s = sqnr_db(w, &d).unwrap();
    assert!(
        s >= b.min_sqnr_db,
        "{what} {ty:?} sym={sym} {g:?}: SQNR {s:.1} dB under the {} budget {} dB",
        b.name,
        b.min_sqnr_db
    );
    true
}

#[test]
fn gaussian_weights_stay_within_budget() {
    let mut rng = StdRng::seed_from_u64(7);
    // Box–Muller: N(0, 0.05²), 256 × 512, typical of a trained linear layer.
    let w: Vec<f32> = (0..256 * 512)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            (0.05 * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect();
    for &(ty, sym, g) in SCHEMES {
        assert!(check("gaussian", &w, &[256, 512], ty, sym, g));
    }
}

#[test]
fn zoo_weights_stay_within_budget() {
    let mut applied = 0;
    for m in ["mlp", "cnn"] {
        let tensors = candle_core::safetensors::load(common::weights(m), &candle_core::Device::Cpu).unwrap();
        for (name, t) in tensors.iter().filter(|(n, _)| n.ends_with(".weight")) {
            let w = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for &(ty, sym, g) in SCHEMES {
                applied += check(&format!("{m} {name}"), &w, t.dims(), ty, sym, g) as usize;
            }
        }
    }
    // 7 weight tensors × 4 int8 schemes always apply; int4 groups apply where the width divides.
    assert!(applied >= 28 + 8, "only {applied} (tensor, scheme) pairs applied");
}
