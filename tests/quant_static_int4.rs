//! Static int8 W8A8 (every calibrator) and group-wise int4, on both backends, with per-layer
//! overrides: the calibration split is kept apart from evaluation, tract runs static layers on
//! its int8 kernels, candle and tract agree on the same quantized weights, accuracy stays
//! within the budgets, and int4 artifacts really hold 4 bits a weight.

mod common;

use qbench::backend::BackendId;
use qbench::backend::{Compute, LayerRealization};
use qbench::data::{load_idx, Dataset};
use qbench::measure::eval;
use qbench::model::qformat::QParams;
use qbench::model::stored::{load_model, InputQuant};
use qbench::model::Reference;
use qbench::quant::calibrate::{activation_params, Calibrator};
use qbench::quant::{apply, Plan, SchemeId, Variant};
use qbench::zoo::{Layer, ZooModelId};

const CALIBRATION_ITEMS: usize = 500;
const BATCH: usize = 500;

fn split() -> (Dataset, Dataset) {
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    (data.slice(0..CALIBRATION_ITEMS), data.slice(CALIBRATION_ITEMS..data.len()))
}

fn run(variant: &Variant, backend: BackendId, data: &Dataset) -> (Vec<f32>, String, u64) {
    let (logits, p) = run_prepared(variant, backend, data);
    (logits, p.evidence, p.artifact_bytes)
}

fn run_prepared(variant: &Variant, backend: BackendId, data: &Dataset) -> (Vec<f32>, qbench::backend::Prepared) {
    let mut p = backend.create(0).prepare(variant, BATCH).unwrap();
    p.observe();
    let logits = eval::run_dataset(p.session.as_mut(), backend, data, BATCH, 10).unwrap();
    (logits, p)
}

/// The calibration the run would collect: the model's reference engine (candle for a zoo
/// model) captures each layer's input over the split.
fn calibration_inputs(zoo: ZooModelId, data: &Dataset, dir: &std::path::Path) -> qbench::quant::Calibration {
    let kind = qbench::model::ModelKind::Zoo { zoo, weights: common::weights(zoo.name()) };
    let model = qbench::model::LoadedModel::load(zoo.name(), &kind, dir).unwrap();
    qbench::run::calibrate(&model, data, 99.99, 0, 100).unwrap()
}

#[test]
fn static_int8_runs_int8_kernels_on_tract_for_every_calibrator() {
    let (calibration_data, eval_data) = split();
    let dir = tempfile::tempdir().unwrap();
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let f32_variant = apply(&Plan::uniform(zoo, SchemeId::F32), &reference, dir.path(), None).unwrap();
        let (f32_logits, _, _) = run(&f32_variant, BackendId::CANDLE_CPU, &eval_data);
        let f32_acc = eval::accuracy(&eval::top1(&f32_logits, 10), eval_data.labels());
        let calibration = calibration_inputs(zoo, &calibration_data, dir.path());
        assert_eq!(calibration.items, CALIBRATION_ITEMS);
        // The first layer's inputs are the calibration images themselves: 500 × 784 pixels;
        // its outputs, its fp32 outputs on them (candle's own capture, checked elsewhere).
        let (first, _) = zoo.weighted_layers()[0];
        let (last_layer, _) = *zoo.weighted_layers().last().unwrap();
        assert_eq!(calibration.outputs[last_layer].len(), CALIBRATION_ITEMS * zoo.num_classes());
        assert_eq!(calibration.inputs[first].len(), CALIBRATION_ITEMS * 784);
        assert_eq!(calibration.inputs[first][..784], calibration_data.batch_f32(0, 1, 1)[..]);
        let (last, _) = *zoo.weighted_layers().last().unwrap();

        let mut tops = Vec::new();
        for c in Calibrator::ALL {
            let scheme = SchemeId::Int8Static(c);
            let what = format!("{} {}", zoo.name(), scheme.name());
            let variant = apply(&Plan::uniform(zoo, scheme), &reference, dir.path(), Some(&calibration)).unwrap();
            // The artifact carries the calibrated parameters: the calibrator's range, through
            // onnxruntime's u8 rules, for every layer.
            // onnxruntime's quantize_static rules, restated: the first layer's input from its own
            // range; each output from the layer's fp32 outputs, after the Relu that follows it
            // (zero point 0); each later input reuses the output before it (only Relu, MaxPool
            // and Flatten lie between in the zoo).
            let (_, inputs) = load_model(&variant.candle_artifact, zoo).unwrap();
            let layers = zoo.layers();
            let mut previous: Option<(QParams, (f32, f32))> = None;
            for (layer, _) in zoo.weighted_layers() {
                let at = layers
                    .iter()
                    .position(
                        |l| matches!(l, Layer::Conv2d { name, .. } | Layer::Linear { name, .. } if *name == layer),
                    )
                    .unwrap();
                let relu = matches!(layers.get(at + 1), Some(Layer::Relu));
                let outputs: Vec<f32> =
                    calibration.outputs[layer].iter().map(|&v| if relu { v.max(0.0) } else { v }).collect();
                let out_range = c.range(&outputs, calibration.percentile);
                let output = activation_params(out_range);
                let (input, in_range) = previous.unwrap_or_else(|| {
                    let range = c.range(&calibration.inputs[layer], calibration.percentile);
                    (activation_params(range), range)
                });
                assert_eq!(inputs[layer], InputQuant::Static { input, output }, "{what} {layer}");
                if relu {
                    assert_eq!(output.zero_point, 0, "{what} {layer}: a Relu's output starts at 0");
                }
                if layer == last {
                    tops.push((c, in_range.1));
                }
                previous = Some((output, out_range));
            }
            let (candle, candle_evidence, _) = run(&variant, BackendId::CANDLE_CPU, &eval_data);
            let (tract, tract_prepared) = run_prepared(&variant, BackendId::TRACT_CPU, &eval_data);
            let tract_evidence = tract_prepared.evidence.clone();
            // tract: every layer (convolutions and linear) on the int8 kernel, none in f32: its
            // plan's kernel names say so, and so does what it reports per layer.
            assert_eq!(common::int8_kernels(&tract_evidence), zoo.weighted_layers().len(), "{what}: {tract_evidence}");
            for l in &tract_prepared.layers {
                assert_eq!(
                    (l.compute.clone(), l.realization),
                    (Compute::Int8, LayerRealization::Native),
                    "{what}: {l:?}"
                );
            }
            assert!(!tract_evidence.contains("mmm_f32"), "{what}: {tract_evidence}");
            assert_eq!(
                candle_evidence.matches("(static)").count(),
                zoo.weighted_layers().len(),
                "{what}: {candle_evidence}"
            );
            let cross = eval::agreement(&candle, &tract, 10);
            assert!(cross.top1 >= 0.995, "{what}: candle/tract top-1 agreement {}", cross.top1);
            let acc = eval::accuracy(&eval::top1(&candle, 10), eval_data.labels());
            assert!((acc - f32_acc).abs() <= 0.01, "{what}: top-1 {acc} vs f32 {f32_acc}");
            assert!(eval::agreement(&candle, &f32_logits, 10).max_abs_diff > 1e-3, "{what}: identical to f32");
        }
        // The clipping calibrators never widen minmax's range (the last layer's input: ReLU outputs).
        let minmax = tops[0].1;
        for (c, top) in &tops[1..] {
            assert!(*top <= minmax, "{}: {top} above minmax {minmax}", c.name());
        }
        assert!(tops.iter().any(|(_, t)| *t < minmax), "no calibrator clipped: {tops:?}");
    }
}

#[test]
fn int4_groups_hold_four_bits_and_agree_across_engines() {
    let (_, eval_data) = split();
    let dir = tempfile::tempdir().unwrap();
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let f32_variant = apply(&Plan::uniform(zoo, SchemeId::F32), &reference, dir.path(), None).unwrap();
        let (f32_logits, _, f32_bytes) = run(&f32_variant, BackendId::CANDLE_CPU, &eval_data);
        let f32_acc = eval::accuracy(&eval::top1(&f32_logits, 10), eval_data.labels());
        for (group, symmetric) in [(32, true), (32, false), (16, true)] {
            let scheme = SchemeId::Int4Group { group, symmetric };
            let mut plan = Plan::uniform(zoo, scheme);
            // Widths a group does not divide get an override, as a suite would write it.
            let widths = zoo.weighted_layers();
            for ((_, s), (_, width)) in plan.layers.iter_mut().zip(&widths) {
                if width % group as usize != 0 {
                    *s = if width % 16 == 0 {
                        SchemeId::Int4Group { group: 16, symmetric }
                    } else {
                        SchemeId::Int8Weights { per_channel: true, symmetric: true }
                    };
                }
            }
            let what = format!("{} {}", zoo.name(), scheme.name());
            let variant = apply(&plan, &reference, dir.path(), None).unwrap();
            // Bits per weight, from the layer sizes: 4 + 32/g per int4 weight (+ 8/g for the
            // u4 zero point's byte), 8 + 32/row per int8 weight, 32 per bias.
            let mut bits = 0.0;
            let mut count = 0usize;
            for (((name, s), (_, width)), (_, shape)) in
                plan.layers.iter().zip(&widths).zip(zoo.parameters().iter().step_by(2))
            {
                let n: usize = shape.iter().product();
                let out = shape[0];
                bits += match s {
                    SchemeId::Int4Group { group: g, symmetric: sym } => {
                        n as f64 * (4.0 + (32.0 + if *sym { 0.0 } else { 8.0 }) / *g as f64)
                    }
                    SchemeId::Int8Weights { .. } => n as f64 * (8.0 + 32.0 / *width as f64),
                    other => panic!("{name}: {other:?}"),
                };
                bits += 32.0 * out as f64;
                count += n + out;
            }
            let want_bits = bits / count as f64;
            assert!(
                (variant.bits_per_weight - want_bits).abs() < 1e-9,
                "{what}: {} vs {want_bits}",
                variant.bits_per_weight
            );
            assert!(variant.bits_per_weight < 6.5, "{what}: {}", variant.bits_per_weight);

            let (candle, candle_evidence, candle_bytes) = run(&variant, BackendId::CANDLE_CPU, &eval_data);
            let (tract, tract_prepared) = run_prepared(&variant, BackendId::TRACT_CPU, &eval_data);
            let (tract_evidence, tract_bytes) = (tract_prepared.evidence.clone(), tract_prepared.artifact_bytes);
            // Both artifacts hold what bits per weight says, plus a header of a few KB.
            let payload = (want_bits * count as f64 / 8.0) as u64;
            for bytes in [candle_bytes, tract_bytes] {
                assert!(bytes >= payload && bytes < payload + 8192, "{what}: {bytes} bytes for {payload} of weights");
                assert!(bytes * 4 < f32_bytes, "{what}: {bytes} bytes vs f32 {f32_bytes}");
            }
            // Both engines compute in f32 on the same dequantized weights: tract's unpacking
            // graph gives exactly candle's values, so the logits differ by rounding only.
            let cross = eval::agreement(&candle, &tract, 10);
            assert!(cross.max_abs_diff < 1e-3, "{what}: candle/tract max |Δlogit| {}", cross.max_abs_diff);
            assert!(cross.top1 >= 0.995, "{what}: {}", cross.top1);
            // The unpacking is folded away when tract optimizes: only f32 matmuls remain.
            assert_eq!(common::int8_kernels(&tract_evidence), 0, "{what}: {tract_evidence}");
            for op in ["Floor", "Concat", "Cast"] {
                assert!(!tract_evidence.contains(op), "{what}: {op} left in {tract_evidence}");
            }
            assert!(candle_evidence.contains("Linear F32"), "{what}: {candle_evidence}");
            // Per layer, tract reports f32 kernels on weights stored as packed 4-bit nibbles (u8;
            // an int8 layer where an override keeps one, as the CNN's conv1): emulated.
            for l in &tract_prepared.layers {
                assert_eq!(
                    (l.compute.clone(), l.realization),
                    (Compute::F32, LayerRealization::Emulated),
                    "{what}: {l:?}"
                );
                let stored = if l.scheme.starts_with("int8") { "i8" } else { "u8" };
                assert!(l.stored.to_string().starts_with(stored), "{what}: {l:?}");
            }
            // Accuracy: int4 g32 within 3 points of f32 (the budget for the CNN).
            let acc = eval::accuracy(&eval::top1(&candle, 10), eval_data.labels());
            assert!(f32_acc - acc <= 0.03, "{what}: top-1 {acc} vs f32 {f32_acc}");
            assert!(eval::agreement(&candle, &f32_logits, 10).max_abs_diff > 1e-2, "{what}: identical to f32");
        }
    }
}
