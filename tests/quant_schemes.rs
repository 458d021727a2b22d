//! Weight-only int8 schemes on both backends: the same quantized weights give the same
//! predictions on candle and tract, accuracy stays within the budget, the
//! artifacts really are ~8 bits per weight, and the engines' own evidence matches the
//! realization we claim.

mod common;

use qbench::backend::BackendId;
use qbench::data::load_idx;
use qbench::measure::eval;
use qbench::model::Reference;
use qbench::quant::{Plan, Realization, SchemeId, Variant};
use qbench::zoo::ZooModelId;

/// Every layer under `scheme`, no calibration.
fn apply(scheme: SchemeId, reference: &Reference, dir: &std::path::Path) -> qbench::Result<Variant> {
    qbench::quant::apply(&Plan::uniform(reference.zoo, scheme), reference, dir, None)
}

#[test]
fn int8_weight_only_schemes_agree_across_backends_and_keep_accuracy() {
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let batch = 250;
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let logits = |scheme: SchemeId, backend: BackendId| {
            let variant = apply(scheme, &reference, dir.path()).unwrap();
            let mut p = backend.create().prepare(&variant, batch).unwrap();
            let l = eval::run_dataset(p.session.as_mut(), backend, &data, batch, 10).unwrap();
            (variant, p.artifact_bytes, p.evidence, l)
        };
        let (_, f32_bytes, _, f32_logits) = logits(SchemeId::F32, BackendId::CandleCpu);
        let f32_acc = eval::accuracy(&eval::top1(&f32_logits, 10), data.labels());
        for scheme in
            SchemeId::ALL.iter().copied().filter(|s| matches!(s, SchemeId::Int8Weights { .. } | SchemeId::Int8Dynamic))
        {
            let what = format!("{} {}", zoo.name(), scheme.name());
            let (variant, candle_bytes, candle_evidence, candle) = logits(scheme, BackendId::CandleCpu);
            let (_, tract_bytes, tract_evidence, tract) = logits(scheme, BackendId::TractCpu);
            // Same quantized weights → same top-1 on ≥ 99.5% of the test images.
            let cross = eval::agreement(&candle, &tract, 10);
            assert!(cross.top1 >= 0.995, "{what}: candle/tract top-1 agreement {}", cross.top1);
            // Accuracy: every int8 scheme within 1.0 point of f32.
            let acc = eval::accuracy(&eval::top1(&candle, 10), data.labels());
            assert!((acc - f32_acc).abs() <= 0.01, "{what}: top-1 {acc} vs f32 {f32_acc}");
            // Quantization really happened: not bit-identical to f32.
            assert!(eval::agreement(&candle, &f32_logits, 10).max_abs_diff > 1e-3, "{what}: logits identical to f32");
            // ~8 bits per weight: weights i8, biases f32, scales (and zero points) per block.
            assert!((8.0..8.2).contains(&variant.bits_per_weight), "{what}: {} bits/w", variant.bits_per_weight);
            for bytes in [candle_bytes, tract_bytes] {
                assert!(bytes * 10 < f32_bytes * 3, "{what}: artifact {bytes} bytes vs f32 {f32_bytes}");
            }
            // The realization we claim is the one the engines show: weight-only int8 is folded
            // into f32 constants by tract (f32 kernels only); dynamic int8 runs tract's int8
            // kernel (i32 accumulation) on every layer, convolutions included.
            let weighted_layers = zoo.weighted_layers().len();
            let int8_kernels = common::int8_kernels(&tract_evidence);
            if scheme == SchemeId::Int8Dynamic {
                assert_eq!(scheme.realization(BackendId::TractCpu), Realization::Native);
                assert_eq!(int8_kernels, weighted_layers, "{what}: {tract_evidence}");
            } else {
                assert_eq!(scheme.realization(BackendId::TractCpu), Realization::Emulated);
                assert_eq!(int8_kernels, 0, "{what}: {tract_evidence}");
                assert!(!tract_evidence.contains("Dequantize"), "{what}: {tract_evidence}");
            }
            assert!(candle_evidence.contains("dequantized at load"), "{what}: {candle_evidence}");
            assert!(
                variant.weight_storage.contains("fc1.weight=i8") && variant.weight_storage.contains("fc1.bias=f32")
            );
        }
    }
}

#[test]
fn ggml_schemes_run_natively_on_candle_and_agree_with_tract() {
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let batch = 500;
    let mut report = Vec::new();
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let f32_acc = {
            let v = apply(SchemeId::F32, &reference, dir.path()).unwrap();
            let mut p = BackendId::CandleCpu.create().prepare(&v, batch).unwrap();
            eval::accuracy(
                &eval::top1(
                    &eval::run_dataset(p.session.as_mut(), BackendId::CandleCpu, &data, batch, 10).unwrap(),
                    10,
                ),
                data.labels(),
            )
        };
        for scheme in SchemeId::ALL.iter().copied().filter(|s| matches!(s, SchemeId::Ggml(_))) {
            let variant = apply(scheme, &reference, dir.path()).unwrap();
            let run = |backend: BackendId| {
                let mut p = backend.create().prepare(&variant, batch).unwrap();
                (eval::run_dataset(p.session.as_mut(), backend, &data, batch, 10).unwrap(), p.evidence)
            };
            let (candle, candle_evidence) = run(BackendId::CandleCpu);
            let (tract, _) = run(BackendId::TractCpu);
            let name = format!("{} {}", zoo.name(), scheme.name());
            // candle runs the GGML blocks itself: its modules say so, per linear layer.
            let kernel = format!(
                "QMatMul {:?}",
                match scheme {
                    SchemeId::Ggml(t) => t.dtype(),
                    _ => unreachable!(),
                }
            );
            assert!(
                candle_evidence.contains(&format!("fc1: {kernel}"))
                    && candle_evidence.contains(&format!("fc2: {kernel}")),
                "{name}: {candle_evidence}"
            );
            assert_eq!(scheme.realization(BackendId::CandleCpu), Realization::Native);
            // Convolutions fall back to f32, and the variant says so.
            if zoo == ZooModelId::Cnn {
                assert!(variant.weight_storage.contains("conv1.weight=f32 (fallback"), "{}", variant.weight_storage);
            }
            let acc = eval::accuracy(&eval::top1(&candle, 10), data.labels());
            let cross = eval::agreement(&candle, &tract, 10);
            report.push(format!(
                "{name}: top-1 {:.2}% (Δ {:+.2}), candle/tract agreement {:.2}%",
                100.0 * acc,
                100.0 * (acc - f32_acc),
                100.0 * cross.top1
            ));
            // The same quantized weights on both engines: ≥ 99.5% identical predictions
            // (candle also quantizes activations to 8 bits inside QMatMul; tract runs them in f32).
            assert!(cross.top1 >= 0.995, "{name}: candle/tract agreement {}\n{}", cross.top1, report.join("\n"));
            // Accuracy budgets of the issue: q4k within 2 points; 5 bits and up within 1 point.
            let budget = match scheme.name().as_str() {
                "q2k" | "q3k" | "q4_0" | "q4_1" | "q4k" => 0.02,
                _ => 0.01,
            };
            assert!(f32_acc - acc <= budget, "{name}: top-1 {acc} vs f32 {f32_acc}");
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn half_precision_schemes_halve_the_artifact_and_keep_predictions() {
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let batch = 500;
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let f32_variant = apply(SchemeId::F32, &reference, dir.path()).unwrap();
        let run = |variant: &qbench::quant::Variant, backend: BackendId| {
            let mut p = backend.create().prepare(variant, batch).unwrap();
            let l = eval::run_dataset(p.session.as_mut(), backend, &data, batch, 10).unwrap();
            (l, p.artifact_bytes, p.evidence)
        };
        let (f32_logits, f32_bytes, _) = run(&f32_variant, BackendId::CandleCpu);
        for scheme in [SchemeId::F16, SchemeId::Bf16] {
            let what = format!("{} {}", zoo.name(), scheme.name());
            let v = apply(scheme, &reference, dir.path()).unwrap();
            assert_eq!(v.bits_per_weight, 16.0);
            let (candle, bytes, evidence) = run(&v, BackendId::CandleCpu);
            // Half the bytes of f32, give or take the safetensors header.
            assert!(bytes * 2 < f32_bytes + 2048 && bytes * 2 > f32_bytes - 2048, "{what}: {bytes} vs {f32_bytes}");
            let ag = eval::agreement(&candle, &f32_logits, 10);
            assert!(ag.top1 >= 0.999, "{what}: top-1 agreement with f32 {}", ag.top1);
            assert!(ag.max_abs_diff > 0.0, "{what}: identical to f32, so nothing was rounded");
            if scheme == SchemeId::F16 {
                // candle computes in f16 itself; tract stores f16 and casts to f32.
                let first = zoo.weighted_layers()[0].0;
                assert!(
                    evidence.starts_with(&format!("{first}: Conv2d F16"))
                        || evidence.starts_with(&format!("{first}: Linear F16")),
                    "{what}: {evidence}"
                );
                assert_eq!(scheme.realization(BackendId::CandleCpu), Realization::Native);
                let (tract, _, _) = run(&v, BackendId::TractCpu);
                assert!(eval::agreement(&candle, &tract, 10).top1 >= 0.995, "{what}: candle/tract");
            } else {
                assert!(evidence.contains("widened at load from the stored bf16"), "{what}: {evidence}");
                assert!(matches!(scheme.realization(BackendId::TractCpu), Realization::Unsupported(_)));
            }
        }
    }
}
