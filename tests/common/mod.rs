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
