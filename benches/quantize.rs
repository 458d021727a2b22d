//! Quantization throughput per scheme, in bytes of f32 weights per second (criterion
//! prints GiB/s), on the CNN's largest layer (fc1, 128 × 1568 = 200,704 weights, 0.8 MB).
//!
//! `cargo bench --bench quantize`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qbench::quant::ggml::{quantize_linear_weight, GgmlType};
use qbench::quant::int::{quantize_weight, Granularity, IntType};

fn benches(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/models/cnn.safetensors");
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let w = tensors["fc1.weight"].clone();
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
    for t in GgmlType::ALL {
        group.bench_function(t.name(), |b| b.iter(|| quantize_linear_weight(&w, t).unwrap()));
    }
    group.finish();
}

criterion_group!(quantize, benches);
criterion_main!(quantize);
