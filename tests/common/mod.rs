//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fashion_images() -> PathBuf {
    repo().join("suites/data/fashion-mnist/t10k-images-idx3-ubyte.gz")
}

pub fn fashion_labels() -> PathBuf {
    repo().join("suites/data/fashion-mnist/t10k-labels-idx1-ubyte.gz")
}

pub fn weights(model: &str) -> PathBuf {
    repo().join(format!("suites/models/{model}.safetensors"))
}

/// A suite using the shipped dataset and models by absolute path, written into `dir`.
/// `extra_models` is appended verbatim (more [[models]] entries).
pub fn write_suite(dir: &Path, backends: &str, batches: &str, models: &[&str], extra_models: &str) -> PathBuf {
    let mut s = format!(
        "name = \"t\"\nschemes = [\"f32\"]\nbackends = {backends}\nbatch_sizes = {batches}\n\n[measure]\nwarmup_iters = 2\nmin_samples = 5\nmax_samples = 50\nmax_time_ms = 50\n\n[[datasets]]\nname = \"fm\"\nformat = \"idx\"\nimages = {:?}\nlabels = {:?}\n",
        fashion_images(),
        fashion_labels()
    );
    for m in models {
        s.push_str(&format!("\n[[models]]\nname = \"{m}\"\nzoo = \"{m}\"\nweights = {:?}\n", weights(m)));
    }
    s.push_str(extra_models);
    let path = dir.join("suite.toml");
    std::fs::write(&path, s).unwrap();
    path
}

/// tract int8 matmul kernels in a backend's evidence (`op×count` entries naming `mmm_i32`),
/// whatever tile tract picked on this machine.
pub fn int8_kernels(evidence: &str) -> usize {
    evidence
        .split(", ")
        .filter(|op| op.contains("mmm_i32"))
        .map(|op| op.rsplit('×').next().unwrap().parse::<usize>().unwrap())
        .sum()
}

/// Runs a quick suite of one zoo `model` over the shipped 1,000 Fashion-MNIST items (`.npz`,
/// CSV labels) with the given `schemes`, `backends` and `batches` (TOML arrays), in `dir`;
/// returns the run folder and its records. Fails the test when the run fails.
pub fn run_fm1k(
    dir: &Path,
    schemes: &str,
    backends: &str,
    batches: &str,
    model: &str,
) -> (PathBuf, Vec<qbench::record::Record>) {
    let suite = format!(
        "name = \"t\"\nschemes = {schemes}\nbackends = {backends}\nbatch_sizes = {batches}\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 30\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = {:?}\narray = \"x\"\nlabels = {:?}\n[[models]]\nname = \"{model}\"\nzoo = \"{model}\"\nweights = {:?}\n",
        repo().join("suites/data/fashion-mnist-1k.npz"),
        repo().join("suites/data/fashion-mnist-1k-labels.csv"),
        weights(model),
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, &suite).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", path.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(dir.join("out/t")).unwrap().next().unwrap().unwrap().path();
    let records = qbench::record::read_records(&run.join("records.jsonl")).unwrap();
    (run, records)
}
