//! `qbench compare` on real runs: a run against itself is the same within noise, a run while
//! every core spins is significantly slower, and candle at 2 threads against 1 never gets a
//! verdict its raw medians contradict. Its own test binary, so no other test competes for the
//! cores while it measures.

mod common;

use std::path::PathBuf;
use std::process::Command;

use qbench::gate::{evaluate, gate_verdict, Gate};
use qbench::report::compare::{compare_pair, load_run, Change, Run};

fn run(dir: &std::path::Path, threads: usize) -> PathBuf {
    let suite = common::write_suite(dir, r#"["candle-cpu"]"#, "[32]", &["cnn"], "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("max_time_ms = 50", &format!("max_time_ms = 2500\nthreads = {threads}\ntarget_ci_pct = 1.0"))
        .replace("max_samples = 50", "max_samples = 1000");
    std::fs::write(&suite, text).unwrap();
    let out = dir.join(format!("out{threads}"));
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_dir(out.join("t")).unwrap().next().unwrap().unwrap().path()
}

#[test]
fn a_run_under_load_is_significantly_slower_and_a_run_equals_itself() {
    let dir = tempfile::tempdir().unwrap();
    let one = load_run(&run(dir.path(), 1)).unwrap();
    // The same suite while every core spins: the one-thread run gets a share of a core, so its
    // latency is well above the idle run's whatever the machine (more spinners than cores).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()) + 1)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let loaded_dir = dir.path().join("loaded");
    std::fs::create_dir_all(&loaded_dir).unwrap();
    let loaded = load_run(&run(&loaded_dir, 1)).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinners.into_iter().for_each(|h| h.join().unwrap());
    let two = load_run(&run(dir.path(), 2)).unwrap();

    let same = compare_pair(&one, &one, 0.02, false).unwrap();
    assert_eq!(same.len(), 1);
    let r = same[0].verdict.ratio;
    assert_eq!(r.ratio, 1.0);
    assert!(r.low <= 1.0 && r.high >= 1.0, "{r:?}");

    // Under load: slower, by the raw medians (an observation apart from compare's statistics),
    // and compare says so whenever its interval is clear of the band; never faster or same.
    let median = |run: &Run| run.records[0].latency_median_ns.unwrap();
    let observed = median(&loaded) / median(&one);
    let c = &compare_pair(&one, &loaded, 0.02, false).unwrap()[0];
    let r = c.verdict.ratio;
    assert!(observed > 1.2, "the loaded run's median is {observed:.2}× the idle one's");
    assert!((r.ratio / observed - 1.0).abs() < 0.25, "compare's ratio {r:?} against the medians' {observed:.2}");
    match c.change() {
        Change::Slower => assert!(r.low > 1.02, "{r:?}"),
        Change::Inconclusive { .. } => assert!(r.low <= 1.02 || !r.high.is_finite(), "{r:?}"),
        other => panic!("a run {observed:.2}× slower was called {other:?}: {r:?}"),
    }

    // Two threads against one: candle's convolutions and matmuls share the work, but on a
    // shared 2-vCPU machine the gain comes and goes (seen: 0.55× to 1.05×). The verdict must
    // agree with the raw medians' direction whenever it claims one.
    let c = &compare_pair(&one, &two, 0.02, false).unwrap()[0];
    let observed = median(&two) / median(&one);
    eprintln!("2 threads vs 1: {:?}, medians {observed:.2}×", c.verdict.ratio);
    match c.change() {
        Change::Faster => assert!(observed < 1.0, "called faster at {observed:.2}×"),
        Change::Slower => assert!(observed > 1.0, "called slower at {observed:.2}×"),
        _ => {}
    }
    assert_eq!(c.delta_top1_pts, Some(0.0), "threads do not change predictions");

    // The rendered comparison lists the thread count among the environment differences.
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["compare", one.dir.to_str().unwrap(), two.dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(text.contains("| threads | 1 | 2 |"), "{text}");
    assert!(text.contains("| cnn / f32 / candle-cpu / batch 32 |"), "{text}");
}

/// A copy of `run` as if measured on a machine `factor` times as fast: every sample (and the
/// machine check) divided by it.
fn scaled(run: &Run, factor: u64) -> Run {
    let mut copy = run.clone();
    for r in &mut copy.records {
        let samples: Vec<u64> = r.samples_ns.iter().map(|s| s / factor).collect();
        r.set_latency(samples, r.batch);
        r.noise_probe_ns = r.noise_probe_ns.map(|p| p / factor as f64);
    }
    copy
}

#[test]
fn a_halved_copy_is_faster_a_run_is_the_same_as_itself_and_the_gate_agrees() {
    // The shipped example run (8 cases, quickstart on this machine).
    let example = load_run(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reports/example")).unwrap();
    let halved = scaled(&example, 2);
    let faster = compare_pair(&example, &halved, 0.02, false).unwrap();
    assert_eq!(faster.len(), example.records.len());
    for c in &faster {
        assert_eq!(c.change(), Change::Faster, "{}: {:?}", c.case, c.verdict);
        assert!((c.verdict.ratio.ratio - 0.5).abs() < 0.002, "{}: {:?}", c.case, c.verdict.ratio);
        assert!(c.verdict.headline().starts_with("2.00× faster"), "{}", c.verdict.headline());
        // Another machine: its check differs by design, and that is context only.
        assert!((c.verdict.machine_ratio.unwrap() - 0.5).abs() < 0.01);
    }
    // Against itself every case is the same: one measurement read twice, ratio exactly 1.
    for c in compare_pair(&example, &example, 0.02, false).unwrap() {
        assert_eq!(c.change(), Change::Same, "{}: {:?}", c.case, c.verdict);
        assert_eq!((c.verdict.ratio.low, c.verdict.ratio.high), (1.0, 1.0));
    }
    // Against a re-measurement with the same distribution (each sample nudged by 1 ns, so the
    // series differ): never faster or slower; the same exactly when the ratio's interval lies
    // within ±2%, inconclusive when the case is too noisy to tell a 2% change.
    let nudged = {
        let mut copy = example.clone();
        for r in &mut copy.records {
            let samples: Vec<u64> = r.samples_ns.iter().map(|s| s + 1).collect();
            r.set_latency(samples, r.batch);
        }
        copy
    };
    let mut same = 0;
    for c in compare_pair(&example, &nudged, 0.02, false).unwrap() {
        let r = c.verdict.ratio;
        let within = r.low >= 1.0 / 1.02 && r.high <= 1.02;
        let want = if within { Change::Same } else { Change::Inconclusive { may_be_slower: true } };
        assert_eq!(c.change(), want, "{}: {r:?}", c.case);
        same += within as usize;
    }
    assert!(same > 0, "some case of the example is known within 2%");
    // The latency gate at the same threshold gives the verdict compare gives, case by case,
    // on the same two runs: faster, slower (the reverse) and the same.
    let gate = Gate { name: "latency".into(), max_latency_regression_pct: Some(2.0), ..Default::default() };
    for (base, new, want) in [
        (&example, &halved, qbench::gate::Verdict::Pass),
        (&halved, &example, qbench::gate::Verdict::Fail),
        (&example, &example, qbench::gate::Verdict::Pass),
    ] {
        let rows = compare_pair(base, new, 0.02, false).unwrap();
        let checks = evaluate(std::slice::from_ref(&gate), &new.records, Some(&base.records));
        assert_eq!(checks.len(), rows.len());
        for (check, row) in checks.iter().zip(&rows) {
            assert_eq!(check.case, row.case);
            assert_eq!(check.verdict, gate_verdict(row.change()), "{}: {}", check.case, check.message);
            assert_eq!(check.verdict, want, "{}: {}", check.case, check.message);
        }
    }
}
