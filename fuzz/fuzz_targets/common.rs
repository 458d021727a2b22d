//! Shared by the fuzz targets: a scratch folder per process, where a target writes the input
//! as the file a loader reads (the loaders take paths, as a run does).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch folder (removed at exit by the OS's tmp cleaning; one per process).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch folder")).path()
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("the scratch folder is writable");
    path
}
