//! Sensitivity of the paired comparison: how much sampling time the alternating rounds need to
//! detect a 5% and a 1% slowdown in 9 runs of 10, on this machine.
//!
//! Two settings: (1) two busy-waits on the monotonic clock, the base for `BASE_US`, the other
//! 5% (or 1%) longer (the best case: no noise but the machine's); (2) a real engine: tract-cpu
//! running the zoo CNN at batch 1 (about 125 µs), against the same session followed by a
//! busy-wait of 5% (or 1%) of its median, so the true ratio is known and the noise is real. For each sampling budget, ten independent paired runs;
//! a run *detects* the slowdown when the per-round ratio's 95% interval lies wholly above 1, and
//! *calls it slower* when it lies above 1 + the 2% practical threshold (`measure::verdict`).
//! The anchor: tango-bench reports detecting a 1% change within 1 s in 9 of 10 runs.
//!
//! `cargo bench --bench paired` (prints a table; takes about two minutes).

use std::time::{Duration, Instant};

use qbench::measure::latency::{sample_paired, MonotonicClock, SamplerSettings};
use qbench::measure::stats::paired_ratio_ci;
use qbench::measure::verdict::{judge, Change};

const BASE_US: f64 = 50.0;

/// The zoo CNN on tract-cpu at batch 1, prepared, with its input set.
fn real_session() -> (Box<dyn qbench::backend::Session>, tempfile::TempDir) {
    use qbench::model::{onnx, Reference};
    use qbench::zoo::ZooModelId;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let data = qbench::data::load_idx(
        "fm",
        &root.join("data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
        &root.join("data/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let cnn = Reference::load("cnn", ZooModelId::Cnn, &root.join("models/cnn.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let onnx_path = dir.path().join("cnn.onnx");
    std::fs::write(&onnx_path, onnx::export("cnn", ZooModelId::Cnn, &cnn.tensors).unwrap()).unwrap();
    let variant = qbench::quant::Variant::f32_reference(&cnn, onnx_path);
    let mut p = qbench::backend::BackendId::TRACT_CPU.create(0).prepare(&variant, 1).unwrap();
    p.session.set_input(&data.batch_f32(0, 1, 1)).unwrap();
    (p.session, dir)
}

fn busy(us: f64) -> Result<(), ()> {
    let until = Instant::now() + Duration::from_nanos((us * 1e3) as u64);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    Ok(())
}

fn main() {
    let (mut session, _dir) = real_session();
    let median_us = {
        let mut t: Vec<u64> = (0..200)
            .map(|_| {
                let s = Instant::now();
                session.run().unwrap();
                s.elapsed().as_nanos() as u64
            })
            .collect();
        t.sort_unstable();
        t[100] as f64 / 1e3
    };
    println!("real: tract-cpu CNN batch 1, median {median_us:.1} µs\n");
    println!("| workload | slowdown | budget per run (ms) | rounds (median) | detected (of 10) | called slower at 2% (of 10) |");
    println!("| --- | --: | --: | --: | --: | --: |");
    for real in [false, true] {
        for slowdown in [0.05, 0.01] {
            for budget_ms in [25u64, 100, 250, 500, 1000, 2000] {
                let settings = SamplerSettings {
                    warmup_iters: 5,
                    warmup_time: Duration::ZERO,
                    target_rel_ci: 0.0,
                    min_samples: 10,
                    max_samples: 10_000_000,
                    max_time: Duration::from_millis(budget_ms),
                };
                let (mut detected, mut slower, mut rounds) = (0, 0, Vec::new());
                for _ in 0..10 {
                    let p = if real {
                        let s = std::cell::RefCell::new(&mut session);
                        sample_paired(
                            &settings,
                            &mut MonotonicClock::default(),
                            || {
                                s.borrow_mut().run().map_err(|_| ())?;
                                busy(median_us * slowdown)
                            },
                            || s.borrow_mut().run().map_err(|_| ()),
                        )
                    } else {
                        sample_paired(
                            &settings,
                            &mut MonotonicClock::default(),
                            || busy(BASE_US * (1.0 + slowdown)),
                            || busy(BASE_US),
                        )
                    }
                    .unwrap();
                    let (r, _) = paired_ratio_ci(&p.a_ns, &p.b_ns).unwrap();
                    detected += (r.low > 1.0) as usize;
                    slower += (judge(r, 0.02, None).change == Change::Slower) as usize;
                    rounds.push(p.a_ns.len());
                }
                rounds.sort_unstable();
                println!(
                    "| {} | {:.0}% | {budget_ms} | {} | {detected} | {slower} |",
                    if real { "tract CNN b1" } else { "busy-wait" },
                    100.0 * slowdown,
                    rounds[rounds.len() / 2]
                );
            }
        }
    }
}
