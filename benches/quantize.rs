//! Quantization throughput per scheme, in bytes of f32 input per second (criterion prints
//! GiB/s), on real tensors:
//! - weights: the CNN's largest layer (fc1, 128 × 1568 = 200,704 weights, 0.8 MB); int4 groups
//!   see the same values as 196 × 1024 rows, so that 32, 64 and 128 all divide the width;
//! - a 4096 × 4096 weight (64 MiB; seeded values in ±0.1), a large language model's projection,
//!   per tensor and per channel: where memory traffic, not arithmetic, bounds the quantizer;
//! - activations: the input of the CNN's conv2 on 500 calibration images (1.57 M values, 6.3 MB),
//!   for the static schemes' calibrators.
//!
//! `cargo bench --bench quantize`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qbench::data::load_idx;
use qbench::model::Reference;
use qbench::quant::calibrate::Calibrator;
use qbench::quant::ggml::{quantize_linear_weight, GgmlType};
use qbench::quant::int::{quantize_weight, Granularity, IntType};
use qbench::zoo::ZooModelId;

fn benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let cnn = Reference::load("cnn", ZooModelId::Cnn, &root.join("models/cnn.safetensors")).unwrap();
    let w = cnn.tensors["fc1.weight"].clone();
    let values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let shape = w.dims().to_vec();
    let mut group = c.benchmark_group("quantize cnn fc1");
    group.throughput(Throughput::Bytes((values.len() * 4) as u64));
    for (name, sym, g) in [
        ("int8-pt-sym", true, Granularity::PerTensor),
        ("int8-pt-asym", false, Granularity::PerTensor),
        ("int8-pc-sym", true, Granularity::PerChannel),
        ("int8-pc-asym", false, Granularity::PerChannel),
    ] {
        group.bench_function(name, |b| b.iter(|| quantize_weight(&values, &shape, IntType::I8, sym, g).unwrap()));
    }
    let rows = [values.len() / 1024, 1024];
    for g in [32, 64, 128] {
        for (sym, ty) in [(true, IntType::I4), (false, IntType::U4)] {
            let name = format!("int4-g{g}-{}", if sym { "sym" } else { "asym" });
            group.bench_function(&name, |b| {
                b.iter(|| quantize_weight(&values, &rows, ty, sym, Granularity::Group(g)).unwrap())
            });
        }
    }
    for t in GgmlType::ALL {
        group.bench_function(t.name(), |b| b.iter(|| quantize_linear_weight(&w, t).unwrap()));
    }
    group.finish();

    let mut state = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<f32> = (0..4096 * 4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / 16_777_216.0 - 0.5) * 0.2
        })
        .collect();
    let mut group = c.benchmark_group("quantize 4096x4096");
    group.throughput(Throughput::Bytes((big.len() * 4) as u64)).sample_size(10);
    for (name, sym, g) in [
        ("int8-pt-sym", true, Granularity::PerTensor),
        ("int8-pc-sym", true, Granularity::PerChannel),
        ("int8-pc-asym", false, Granularity::PerChannel),
    ] {
        group.bench_function(name, |b| b.iter(|| quantize_weight(&big, &[4096, 4096], IntType::I8, sym, g).unwrap()));
    }
    group.bench_function("int4-g32-sym", |b| {
        b.iter(|| quantize_weight(&big, &[4096, 4096], IntType::I4, true, Granularity::Group(32)).unwrap())
    });
    group.finish();

    let data = load_idx(
        "fm",
        &root.join("data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
        &root.join("data/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kind = qbench::model::ModelKind::Zoo { zoo: ZooModelId::Cnn, weights: root.join("models/cnn.safetensors") };
    let model = qbench::model::LoadedModel::load("cnn", &kind, dir.path()).unwrap();
    let calibration = qbench::run::calibrate(&model, &data.slice(0..500), 99.99, 0, 250).unwrap();
    let acts = &calibration.inputs["conv2"];
    let mut group = c.benchmark_group("calibrate cnn conv2 input");
    group.throughput(Throughput::Bytes((acts.len() * 4) as u64));
    group.sample_size(10);
    for cal in Calibrator::ALL {
        group.bench_function(cal.name(), |b| b.iter(|| cal.range(acts, 99.99)));
    }
    group.finish();
}

criterion_group!(quantize, benches);
criterion_main!(quantize);
