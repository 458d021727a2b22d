//! `qbench compare` on real runs: a run against itself is the same within noise, and candle at
//! 2 threads against 1 thread on the CNN is a significant difference (about 2× on this 2-core
//! machine). Its own test binary, so no other test competes for the cores while it measures.

mod common;

use std::path::PathBuf;
use std::process::Command;

use qbench::report::compare::{compare_pair, load_run, Change};

fn run(dir: &std::path::Path, threads: usize) -> PathBuf {
    let suite = common::write_suite(dir, r#"["candle-cpu"]"#, "[32]", &["cnn"], "");
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace("max_time_ms = 50", &format!("max_time_ms = 1000\nthreads = {threads}\ntarget_ci_pct = 1.0"))
        .replace("max_samples = 50", "max_samples = 300");
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
fn two_threads_are_significantly_faster_and_a_run_equals_itself() {
    let dir = tempfile::tempdir().unwrap();
    let one = load_run(&run(dir.path(), 1)).unwrap();
    let two = load_run(&run(dir.path(), 2)).unwrap();

    let same = compare_pair(&one, &one, 0.02, false).unwrap();
    assert_eq!(same.len(), 1);
    assert_eq!((same[0].ratio, same[0].change), (1.0, Change::Same));
    assert!(same[0].ratio_ci.0 <= 1.0 && same[0].ratio_ci.1 >= 1.0);

    let c = &compare_pair(&one, &two, 0.02, false).unwrap()[0];
    // candle's convolutions and matmuls on two threads: the whole interval well below 1.
    assert!(c.ratio_ci.1 < 0.9, "2 threads vs 1: ratio {} [{}, {}]", c.ratio, c.ratio_ci.0, c.ratio_ci.1);
    assert!(matches!(c.change, Change::Faster | Change::Noisy), "{:?}", c.change);
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
