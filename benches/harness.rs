//! Benchmarks of qbench's own hot paths, and of one engine run as a cross-check of
//! the harness's sampler (criterion's estimate should sit inside qbench's CI).
//!
//! `cargo bench --bench harness`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use qbench::backend::BackendId;
use qbench::data::load_idx;
use qbench::measure::{eval, stats::LatencyStats};
use qbench::model::{onnx, Reference};
use qbench::quant::Variant;
use qbench::zoo::ZooModelId;

fn benches(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let data = load_idx(
        "fm",
        &root.join("data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
        &root.join("data/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let samples: Vec<u64> = (0..2000u64).map(|i| 100_000 + (i * 7919) % 5000).collect();
    c.bench_function("stats/2000 samples", |b| b.iter(|| LatencyStats::from_samples(black_box(&samples))));

    let logits: Vec<f32> = (0..100_000).map(|i| ((i * 31) % 97) as f32 * 0.01).collect();
    let other: Vec<f32> = logits.iter().map(|v| v + 1e-6).collect();
    c.bench_function("eval/agreement 10k×10", |b| {
        b.iter(|| eval::agreement(black_box(&logits), black_box(&other), 10))
    });
    c.bench_function("data/batch_f32 32", |b| b.iter(|| data.batch_f32(black_box(100), 32, 32)));

    let cnn = Reference::load("cnn", ZooModelId::Cnn, &root.join("models/cnn.safetensors")).unwrap();
    c.bench_function("onnx/export cnn", |b| {
        b.iter(|| onnx::export("cnn", ZooModelId::Cnn, black_box(&cnn.tensors)).unwrap())
    });

    let dir = tempfile::tempdir().unwrap();
    let onnx_path = dir.path().join("cnn.onnx");
    std::fs::write(&onnx_path, onnx::export("cnn", ZooModelId::Cnn, &cnn.tensors).unwrap()).unwrap();
    let variant = Variant::f32_reference(&cnn, onnx_path);
    qbench::backend::configure_threads(1);
    for backend in BackendId::ALL {
        let mut p = backend.create().prepare(&variant, 1).unwrap();
        p.session.set_input(&data.batch_f32(0, 1, 1)).unwrap();
        c.bench_function(&format!("engine/{} cnn batch 1", backend.name()), |b| b.iter(|| p.session.run().unwrap()));
    }
}

criterion_group!(harness, benches);
criterion_main!(harness);
