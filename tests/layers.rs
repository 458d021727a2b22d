//! Per-layer error localization against an independent computation: a model with one layer
//! quantized and the rest exact.

mod common;

use qbench::backend::BackendId;
use qbench::data::load_idx;
use qbench::measure::fidelity::sqnr_db;
use qbench::measure::layers::{localize, Basis};
use qbench::model::Reference;
use qbench::quant::int::{quantize_weight, Granularity, IntType};
use qbench::quant::{Plan, SchemeId};
use qbench::zoo::ZooModelId;

/// `x W^T + b` in f64, row-major `x [n, k]`, `w [m, k]`.
fn linear(x: &[f64], w: &[f32], b: &[f32], k: usize) -> Vec<f64> {
    let m = b.len();
    x.chunks(k)
        .flat_map(|row| {
            (0..m).map(move |o| {
                b[o] as f64 + row.iter().zip(&w[o * k..(o + 1) * k]).map(|(a, b)| a * *b as f64).sum::<f64>()
            })
        })
        .collect()
}

#[test]
fn one_quantized_layer_shows_exactly_where_the_error_starts() {
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let zoo = ZooModelId::Mlp;
    let reference = Reference::load("mlp", zoo, &common::weights("mlp")).unwrap();
    let int8 = SchemeId::Int8Weights { per_channel: false, symmetric: true };
    let mut plan = Plan::uniform(zoo, SchemeId::F32);
    plan.scheme = int8;
    plan.layers[1].1 = int8; // fc2 only
    let n = 500;

    // Independent: fc1 + ReLU in f64, then fc2 with exact and with quantized weights.
    let t = |k: &str| reference.tensors[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let x: Vec<f64> = data.batch_f32(0, n, n).iter().map(|&v| v as f64).collect();
    let h: Vec<f64> = linear(&x, &t("fc1.weight"), &t("fc1.bias"), 784).into_iter().map(|v| v.max(0.0)).collect();
    let w2 = t("fc2.weight");
    let w2q = quantize_weight(&w2, &[128, 256], IntType::I8, true, Granularity::PerTensor).unwrap().dequantize();
    let exact = linear(&h, &w2, &t("fc2.bias"), 256);
    let quant = linear(&h, &w2q, &t("fc2.bias"), 256);
    let as32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let want = sqnr_db(&as32(&exact), &as32(&quant)).unwrap();
    assert!(want > 20.0 && want < 60.0, "{want}");

    // Localization reads intermediate values on the CPU engines (tract-cuda refuses; candle-cuda
    // would need a GPU, which the tests do not assume).
    for backend in BackendId::all().filter(|b| !b.is_cuda() && b.built().is_ok()) {
        let dir = tempfile::tempdir().unwrap();
        let apply = |p: &Plan, d: &std::path::Path| qbench::quant::apply(p, &reference, d, None);
        let l = localize(&apply, &plan, backend, 0, &data, n, dir.path()).unwrap();
        let what = backend.name();
        assert_eq!(l.items, n);
        // fc1 is exact: identical to fp32 (no SQNR: infinite).
        assert_eq!(l.layers[0].cumulative_sqnr_db, None, "{what}");
        assert_eq!(l.layers[0].kept_float_top1_accuracy, None, "{what}: fc1 is f32 already");
        // fc2: the error starts here; only one layer is quantized, so cumulative = alone.
        let fc2 = &l.layers[1];
        let got = fc2.cumulative_sqnr_db.unwrap();
        assert!((got - want).abs() < 0.05, "{what}: fc2 SQNR {got} dB, independent {want} dB");
        assert_eq!(fc2.cumulative_sqnr_db, fc2.isolated_sqnr_db, "{what}");
        // Keeping fc2 in float gives back fp32 exactly.
        assert_eq!(fc2.kept_float_top1_accuracy, Some(l.fp32_top1_accuracy), "{what}");
        assert_eq!(fc2.kept_float_logits_sqnr_db, None, "{what}: identical to fp32");
        // fc3 inherits the error: finite, and the plan's logits SQNR is fc3's.
        let fc3 = l.layers[2].cumulative_sqnr_db.unwrap();
        assert_eq!(l.plan_logits_sqnr_db, Some(fc3));
        // fc2 is the one layer that changed anything; kept in f32 it is fp32 again (SQNR ∞), so
        // it is suggested: by top-1 when 500 items can tell, by the SQNR otherwise.
        let (ranked, basis) = l.ranked();
        assert_eq!(ranked.iter().map(|e| e.layer.as_str()).collect::<Vec<_>>(), vec!["fc2"]);
        let (gain, lo, hi) = fc2.kept_float_top1_gain.unwrap();
        assert!((gain - (l.fp32_top1_accuracy - l.plan_top1_accuracy)).abs() < 1e-12);
        assert_eq!(basis, if lo > 0.0 { Basis::Top1 } else { Basis::Sqnr }, "[{lo}, {hi}]");
        assert_eq!(fc2.stored, int8);
    }
}
