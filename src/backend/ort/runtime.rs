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
        Some(p) if p.is_empty() => return Err(format!("{ENV_VAR} is set but empty; {fix}")),
        Some(p) => PathBuf::from(p),
        None => return Err(format!("ONNX Runtime's library is not configured: {ENV_VAR} is not set; {fix}")),
    };
    // The crate would look beside the executable for a relative name, and dlopen would search
    // the library path for a bare one; only an existing file is taken, named as given.
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("{ENV_VAR}={} is not a file; {fix}", path.display())),
        Err(e) => return Err(format!("{ENV_VAR}={}: {e}; {fix}", path.display())),
    }
    let path = std::path::absolute(&path).unwrap_or(path);
    // dlopen maps the file and the process dies of SIGBUS on a truncated one: its ELF headers
    // are checked against its length first.
    check_elf(&path)
        .map_err(|why| format!("{ENV_VAR}={} is not a usable shared library: {why}; {fix}", path.display()))?;
    // A library that is not ONNX Runtime (or an older one) is refused by the crate with a reason;
    // one whose API table is broken makes the crate panic: an error too, said once.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::panic::catch_unwind(|| -> Result<(Environment, String), String> {
        let builder = ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}; {fix}", path.display()))?;
        let env = builder
            .with_name("qbench")
            .build()
            .map_err(|e| format!("ONNX Runtime from {} cannot start: {e}", path.display()))?;
        let version = library_version(&path)
            .ok_or_else(|| format!("{} loaded, but does not say its version (OrtGetApiBase)", path.display()))?;
        Ok((env, version))
    });
    std::panic::set_hook(quiet);
    let (env, version) = started.map_err(|_| {
        format!("{} is not a working ONNX Runtime library (the ort crate panicked loading it); {fix}", path.display())
    })??;
    Ok(Runtime { env, version, path })
}

/// Checks that `path` is a 64-bit ELF file whose program and section headers, and the segments
/// they load, lie within the file.
fn check_elf(path: &std::path::Path) -> Result<(), String> {
    let bytes = crate::files::read_bounded(path, 1 << 30, "a shared library").map_err(|e| e.to_string())?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("it is not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("it is not a 64-bit little-endian ELF file".into());
    }
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u64);
    let u64_at = |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let len = bytes.len() as u64;
    let short = || "it is cut short (its headers point past its end)".to_string();
    let (phoff, shoff) = (u64_at(32).ok_or_else(short)?, u64_at(40).ok_or_else(short)?);
    let (phentsize, phnum) = (u16_at(54).ok_or_else(short)?, u16_at(56).ok_or_else(short)?);
    let (shentsize, shnum) = (u16_at(58).ok_or_else(short)?, u16_at(60).ok_or_else(short)?);
    let table_end = |off: u64, size: u64, n: u64| off.checked_add(size.checked_mul(n)?);
    if table_end(phoff, phentsize, phnum).is_none_or(|e| e > len)
        || table_end(shoff, shentsize, shnum).is_none_or(|e| e > len)
    {
        return Err(short());
    }
    for i in 0..phnum {
        let at = (phoff + i * phentsize) as usize;
        let (offset, filesz) = (u64_at(at + 8).ok_or_else(short)?, u64_at(at + 32).ok_or_else(short)?);
        if offset.checked_add(filesz).is_none_or(|e| e > len) {
            return Err(short());
        }
    }
    Ok(())
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
