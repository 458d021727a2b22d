//! Build-time provenance: git commit and dirtiness, rustc version, and the exact crate
//! versions from Cargo.lock (the engines' among them), baked into the binary so that every
//! record says what code produced it.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn locked_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle).and_then(|i| lock[i + needle.len()..].split('"').next()).unwrap_or("unknown").to_string()
}

fn main() {
    for p in [".git/HEAD", ".git/index", ".git/refs/heads", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let commit = run("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = run("git", &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    println!("cargo:rustc-env=QBENCH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=QBENCH_GIT_DIRTY={}", dirty.map_or("unknown", |d| if d { "true" } else { "false" }));
    println!("cargo:rustc-env=QBENCH_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=QBENCH_CANDLE_VERSION={}", locked_version(&lock, "candle-core"));
    println!("cargo:rustc-env=QBENCH_TRACT_VERSION={}", locked_version(&lock, "tract-onnx"));
    // Every locked crate's version (`name=version;…`): a backend names its engine's crate and
    // its records carry that version, whatever the engine.
    let locked: Vec<String> = lock
        .split("[[package]]")
        .filter_map(|p| {
            let field =
                |key: &str| p.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(" = \"")?.strip_suffix('"'));
            Some(format!("{}={}", field("name")?, field("version")?))
        })
        .collect();
    println!("cargo:rustc-env=QBENCH_LOCKED_VERSIONS={}", locked.join(";"));
    let features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    println!("cargo:rustc-env=QBENCH_FEATURES={}", features.join(","));
}
