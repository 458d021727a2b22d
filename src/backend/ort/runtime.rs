//! ONNX Runtime's library, loaded once per process, and the settings every session gets.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::ENV_VAR;

/// The loaded library: its environment (one per process), version and file.
pub(super) struct Runtime {
    pub env: Environment,
    /// As the library reports it (`1.32.0`).
    pub version: String,
    pub path: PathBuf,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The suite's thread count, applied to each session's intra-op pool.
static THREADS: AtomicUsize = AtomicUsize::new(1);

pub(super) fn set_threads(threads: usize) {
    THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// The library, loaded on first use from `ORT_DYLIB_PATH`; `Err` says why it cannot be, and how
/// to get it.
pub(super) fn get() -> Result<&'static Runtime, &'static String> {
    RUNTIME.get_or_init(load).as_ref()
}

fn load() -> Result<Runtime, String> {
    let fix = "run `. scripts/ort-env.sh` (it fetches the pinned onnxruntime wheel from PyPI and sets ORT_DYLIB_PATH)";
    let path = match std::env::var_os(ENV_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => return Err(format!("ONNX Runtime's library is not configured: {ENV_VAR} is not set; {fix}")),
    };
    // The crate would look beside the executable for a relative name, and dlopen would search
    // the library path for a bare one; only an existing file is taken, named as given.
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("{ENV_VAR}={} is not a file; {fix}", path.display())),
        Err(e) => return Err(format!("{ENV_VAR}={}: {e}; {fix}", path.display())),
    }
    let path = std::path::absolute(&path).unwrap_or(path);
    // A library that is not ONNX Runtime (or an older one) is refused by the crate with a reason.
    let builder = std::panic::catch_unwind(|| ort::init_from(&path))
        .map_err(|_| format!("loading {} panicked: is it ONNX Runtime's library?", path.display()))?
        .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}; {fix}", path.display()))?;
    let env = builder
        .with_name("qbench")
        .build()
        .map_err(|e| format!("ONNX Runtime from {} cannot start: {e}", path.display()))?;
    let version = library_version(&path)
        .ok_or_else(|| format!("{} loaded, but does not say its version (OrtGetApiBase)", path.display()))?;
    Ok(Runtime { env, version, path })
}

/// The version the library reports itself (`OrtGetApiBase()->GetVersionString()`).
fn library_version(path: &std::path::Path) -> Option<String> {
    // SAFETY: the library is ONNX Runtime's, already loaded and checked by the ort crate (so
    // opening it again only counts a reference); OrtGetApiBase is its documented entry point,
    // returning a pointer to a static table whose GetVersionString returns a static C string.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").ok()?;
        let base = get_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).GetVersionString)();
        if version.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

/// The graph optimization level every ort-cpu session uses: all of ONNX Runtime's (its default,
/// what a deployment gets), named as records show it.
pub(super) const OPTIMIZATION: (GraphOptimizationLevel, &str) = (GraphOptimizationLevel::All, "all (ORT_ENABLE_ALL)");

/// The settings of the sessions qbench makes, as records state them.
pub(super) fn settings(runtime: &Runtime) -> String {
    format!(
        "ONNX Runtime {} ({}), CPUExecutionProvider; graph optimization level {}; intra-op threads {}, inter-op threads 1 (sequential execution)",
        runtime.version,
        runtime.path.display(),
        OPTIMIZATION.1,
        THREADS.load(Ordering::Relaxed)
    )
}

/// A session builder with those settings.
pub(super) fn builder(runtime: &Runtime) -> ort::Result<SessionBuilder> {
    let b = ort::session::Session::builder(&runtime.env)?;
    let b = b.with_optimization_level(OPTIMIZATION.0)?;
    let b = b.with_intra_threads(THREADS.load(Ordering::Relaxed))?;
    let b = b.with_inter_threads(1)?;
    let b = b.with_parallel_execution(false)?;
    // Warnings (e.g. that a saved optimized model holds machine-specific layouts) stay quiet.
    Ok(b.with_log_level(ort::logging::LogLevel::Error)?)
}
