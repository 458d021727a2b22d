//! Benchmarks of qbench's own hot paths, of one engine run as a cross-check of the
//! harness's sampler (criterion's estimate should sit inside qbench's CI), and of the
//! harness's overhead: qbench's sampler against a bare loop over the same prepared session,
//! and of report generation (charts, HTML, tables).
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
    let fid_ref: Vec<f32> = (0..100_000).map(|i| ((i * 31) % 97) as f32 * 0.01).collect();
    let fid_x: Vec<f32> = fid_ref.iter().enumerate().map(|(i, v)| v + ((i % 7) as f32 - 3.0) * 1e-3).collect();
    c.bench_function("fidelity 10k×10", |b| {
        b.iter(|| qbench::measure::fidelity::fidelity(black_box(&fid_ref), black_box(&fid_x), 10))
    });
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
    // Every backend this build and machine can run (the CUDA ones only with a GPU), as each
    // backend answers for the CNN's f32 plan.
    let kind = qbench::model::ModelKind::Zoo { zoo: ZooModelId::Cnn, weights: root.join("models/cnn.safetensors") };
    let runs = |b: &BackendId| {
        let plan = qbench::quant::Plan::uniform(ZooModelId::Cnn, qbench::quant::SchemeId::F32);
        let query = qbench::backend::ModelQuery::declared(&kind);
        !matches!(b.create(0).capability(query, &plan, 1), qbench::backend::Realization::Unsupported(_))
    };
    for backend in BackendId::all().filter(runs) {
        let mut p = backend.create(0).prepare(&variant, 1).unwrap();
        p.session.set_input(&data.batch_f32(0, 1, 1)).unwrap();
        c.bench_function(&format!("engine/{} cnn batch 1", backend.name()), |b| b.iter(|| p.session.run().unwrap()));
    }
    overhead(c, &data);

    // Reports: everything `qbench report` writes (Markdown, the records tables, 12 charts as SVG and
    // PNG, the HTML page) from the shipped example run's 8 records.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/example");
    let records = qbench::report::jsonl::read_records(&example.join("records.jsonl")).unwrap();
    let out = tempfile::tempdir().unwrap();
    for f in ["environment.json", "suite.toml"] {
        std::fs::copy(example.join(f), out.path().join(f)).unwrap();
    }
    let charts = qbench::report::chart::from_records(&records);
    c.bench_function("report/chart svg (tradeoff)", |b| b.iter(|| charts[0].svg().unwrap()));
    c.bench_function("report/chart png (tradeoff)", |b| b.iter(|| charts[0].png().unwrap()));
    c.bench_function("report/write_outputs (8 records)", |b| {
        b.iter(|| qbench::report::write_outputs(out.path(), black_box(&records)).unwrap())
    });
}

/// qbench's sampler against a bare loop on one prepared session (tract-cpu, MLP, batch 1: a
/// ~15 µs run, where per-run timing costs show most). Both report nanoseconds per run:
/// criterion's bare loop times batches of runs; the sampler times each run on its own, as
/// qbench does, and reports the sum of its samples. The difference is the harness overhead.
fn overhead(c: &mut Criterion, data: &qbench::data::Dataset) {
    use qbench::measure::latency::{sample, SamplerSettings};
    use std::time::Duration;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let mlp = Reference::load("mlp", ZooModelId::Mlp, &root.join("models/mlp.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let onnx_path = dir.path().join("mlp.onnx");
    std::fs::write(&onnx_path, onnx::export("mlp", ZooModelId::Mlp, &mlp.tensors).unwrap()).unwrap();
    let variant = Variant::f32_reference(&mlp, onnx_path);
    let mut p = BackendId::TRACT_CPU.create(0).prepare(&variant, 1).unwrap();
    p.session.set_input(&data.batch_f32(0, 1, 1)).unwrap();
    let mut group = c.benchmark_group("harness overhead tract-cpu mlp batch 1");
    group.bench_function("bare loop", |b| b.iter(|| p.session.run().unwrap()));
    group.bench_function("qbench sampler", |b| {
        b.iter_custom(|iters| {
            let settings = SamplerSettings {
                warmup_iters: 0,
                warmup_time: Duration::ZERO,
                target_rel_ci: 0.0,
                min_samples: iters as usize,
                max_samples: iters as usize,
                max_time: Duration::ZERO,
            };
            let s = sample(&settings, || p.session.run()).unwrap();
            Duration::from_nanos(s.samples_ns.iter().sum())
        })
    });
    group.finish();
    // And the figure qbench itself would print: the median of its samples against the bare
    // loop's mean per run, over the same 20 000 runs each, alternated to share drift.
    let (mut bare, mut sampled) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = std::time::Instant::now();
        for _ in 0..2000 {
            p.session.run().unwrap();
        }
        bare.push(t.elapsed().as_nanos() as f64 / 2000.0);
        let settings = SamplerSettings {
            warmup_iters: 0,
            warmup_time: Duration::ZERO,
            target_rel_ci: 0.0,
            min_samples: 2000,
            max_samples: 2000,
            max_time: Duration::ZERO,
        };
        let s = sample(&settings, || p.session.run()).unwrap();
        sampled.push(LatencyStats::from_samples(&s.samples_ns).unwrap().median_ns);
    }
    bare.sort_by(f64::total_cmp);
    sampled.sort_by(f64::total_cmp);
    let (b, q) = (bare[5], sampled[5]);
    eprintln!("harness overhead: qbench median {q:.0} ns/run vs bare loop {b:.0} ns/run: {:+.2}%", 100.0 * (q - b) / b);
}

/// The counting allocator's cost: one allocation and free of 64 bytes through the system
/// allocator directly, and through qbench's counting allocator (which forwards to it). The
/// difference times a record's `run_heap_allocations_per_run` bounds what counting adds to a run.
fn allocator(c: &mut Criterion) {
    use std::alloc::{GlobalAlloc, Layout, System};
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut group = c.benchmark_group("allocator 64 B alloc+free");
    group.bench_function("system", |b| {
        b.iter(|| unsafe {
            let p = System.alloc(black_box(layout));
            System.dealloc(black_box(p), layout);
        })
    });
    group.bench_function("counting", |b| {
        let counting = qbench::measure::alloc::CountingAllocator;
        b.iter(|| unsafe {
            let p = counting.alloc(black_box(layout));
            counting.dealloc(black_box(p), layout);
        })
    });
    group.finish();
}

criterion_group!(harness, benches, allocator);
criterion_main!(harness);
