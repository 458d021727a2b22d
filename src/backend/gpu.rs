//! The CUDA device the CUDA backends run on: whether it can be used, what it is, and how much of
//! its memory is in use. Engine-neutral: each CUDA backend's capability asks [`probe`] first.
//!
//! qbench asks before any engine touches CUDA: cudarc loads CUDA's libraries on first use and
//! panics when one is missing, and candle and tract would each report a missing driver in their
//! own words. Asking first turns "no GPU here" into one skip reason for every CUDA case.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// What the environment records of the GPU (all from the driver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// `cuda:N`.
    pub device: String,
    pub name: String,
    pub memory_bytes: u64,
    /// The driver's CUDA version (what it supports), e.g. `13.0`.
    pub driver_cuda_version: String,
    /// The CUDA version qbench's kernels were built for (candle's PTX, tract's NVRTC headers).
    pub build_cuda_version: String,
    /// e.g. `9.0` (Hopper).
    pub compute_capability: String,
    /// The kernel driver's version (`/proc/driver/nvidia/version`), e.g. `580.159.04`.
    pub driver_version: Option<String>,
}

/// The CUDA device a suite names: `cuda:N` (plain `cuda` is `cuda:0`).
pub fn parse_device(s: &str) -> Option<usize> {
    match s {
        "cuda" => Some(0),
        _ => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()),
    }
}

/// The probe's answer for the one CUDA device this process uses, asked once.
static PROBE: OnceLock<(usize, Result<GpuInfo, String>)> = OnceLock::new();

/// The GPU at `ordinal`, or why the CUDA backends cannot use it (the reason the CUDA cases are
/// skipped). One process benchmarks one device: a second ordinal is refused.
pub fn probe(ordinal: usize) -> Result<&'static GpuInfo, &'static str> {
    let (probed, result) = PROBE.get_or_init(|| (ordinal, imp::probe(ordinal)));
    if *probed != ordinal {
        return Err("one qbench process benchmarks one CUDA device; run the suite again for the other");
    }
    result.as_ref().map_err(String::as_str)
}

/// Bytes of the device's memory in use (by every process), when a GPU has been probed.
pub fn memory_used_bytes() -> Option<u64> {
    match PROBE.get() {
        Some((ordinal, Ok(_))) => imp::memory_used_bytes(*ordinal),
        _ => None,
    }
}

/// How to get a qbench that runs CUDA backends.
pub const BUILD_HINT: &str = "this qbench was built without CUDA: build it with `. scripts/cuda-env.sh && cargo build --release --features cuda` (the script installs CUDA 13.0's nvcc from PyPI if none is installed; see README, CUDA)";

#[cfg(not(feature = "cuda"))]
mod imp {
    use super::GpuInfo;

    pub fn probe(_ordinal: usize) -> Result<GpuInfo, String> {
        Err(super::BUILD_HINT.to_string())
    }

    pub fn memory_used_bytes(_ordinal: usize) -> Option<u64> {
        None
    }
}

#[cfg(feature = "cuda")]
mod imp {
    use std::sync::OnceLock;

    use cudarc::driver::result;

    use super::GpuInfo;

    pub fn probe(ordinal: usize) -> Result<GpuInfo, String> {
        // SAFETY: only tries to dlopen the driver library under its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver here (libcuda.so could not be loaded): the CUDA cases need a machine with an NVIDIA GPU and its driver".into());
        }
        let driver = |what: &str, e: result::DriverError| format!("the CUDA driver failed to {what}: {e}");
        result::init().map_err(|e| driver("initialize (is a GPU visible to this machine?)", e))?;
        let count = result::device::get_count().map_err(|e| driver("count the GPUs", e))?;
        if count <= 0 {
            return Err("the CUDA driver sees no GPU".into());
        }
        if ordinal >= count as usize {
            return Err(format!(
                "the suite asks for cuda:{ordinal}, but the driver sees {count} GPU(s): cuda:0 to cuda:{}",
                count - 1
            ));
        }
        let dev = result::device::get(ordinal as i32).map_err(|e| driver("open the GPU", e))?;
        let name = result::device::get_name(dev).map_err(|e| driver("name the GPU", e))?;
        // SAFETY: `dev` is a device handle the driver just returned.
        let memory_bytes =
            unsafe { result::device::total_mem(dev) }.map_err(|e| driver("size the GPU's memory", e))? as u64;
        let attribute = |a| unsafe { result::device::get_attribute(dev, a) };
        use cudarc::driver::sys::CUdevice_attribute::*;
        let major = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(|e| driver("read the compute capability", e))?;
        let minor = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            .map_err(|e| driver("read the compute capability", e))?;
        let mut version = 0;
        // SAFETY: writes one int.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
            .result()
            .map_err(|e| driver("report its version", e))?;
        Ok(GpuInfo {
            device: format!("cuda:{ordinal}"),
            name,
            memory_bytes,
            driver_cuda_version: format!("{}.{}", version / 1000, (version % 1000) / 10),
            build_cuda_version: build_cuda_version(),
            compute_capability: format!("{major}.{minor}"),
            driver_version: std::fs::read_to_string("/proc/driver/nvidia/version")
                .ok()
                .and_then(|s| s.split_whitespace().skip_while(|w| *w != "Module").nth(1).map(str::to_string)),
        })
    }

    pub(crate) fn build_cuda_version() -> String {
        // tract-cuda's default feature pins cudarc's bindings to CUDA 13.0.
        "13.0".into()
    }

    pub fn memory_used_bytes(ordinal: usize) -> Option<u64> {
        // mem_get_info needs a current context: the device's primary context, the one both
        // engines use, retained once (it then lives as long as the process).
        static CONTEXT: OnceLock<Option<usize>> = OnceLock::new();
        let ctx = (*CONTEXT.get_or_init(|| {
            let dev = result::device::get(ordinal as i32).ok()?;
            // SAFETY: retains (creating it if needed) the device's primary context.
            unsafe { result::primary_ctx::retain(dev) }.ok().map(|c| c as usize)
        }))?;
        // SAFETY: `ctx` is the retained primary context, never released.
        unsafe { result::ctx::set_current(ctx as cudarc::driver::sys::CUcontext) }.ok()?;
        let (free, total) = result::mem_get_info().ok()?;
        Some(total.saturating_sub(free) as u64)
    }
}

/// A CUDA library an engine loads at run time, as cudarc finds it.
#[cfg(feature = "cuda")]
pub(super) struct CudaLibrary {
    /// `cublas`: the file is `lib<name>.so`.
    pub name: &'static str,
    /// cudarc's `is_culib_present` for it: tries to dlopen it, nothing more.
    pub present: unsafe fn() -> bool,
    /// The PyPI wheel that ships it.
    pub wheel: &'static str,
}

/// Why an engine that loads `libraries` cannot run here: the first one missing, as a skip
/// reason. Each engine names its own (cudarc panics on first use of a missing one).
#[cfg(feature = "cuda")]
pub(super) fn missing_library(libraries: &[CudaLibrary]) -> Option<String> {
    // SAFETY: each `present` only tries to dlopen its library.
    libraries.iter().find(|l| !unsafe { (l.present)() }).map(|l| {
        format!(
            "lib{}.so (CUDA {}) could not be loaded: put CUDA's libraries on LD_LIBRARY_PATH (PyPI wheel {}, or a CUDA toolkit's lib64)",
            l.name,
            imp::build_cuda_version(),
            l.wheel
        )
    })
}

/// The process's CUDA device, probed: what the CUDA backends build on.
#[cfg(feature = "cuda")]
pub(super) fn current() -> Result<(usize, &'static GpuInfo), &'static str> {
    match PROBE.get() {
        Some((ordinal, Ok(info))) => Ok((*ordinal, info)),
        Some((_, Err(why))) => Err(why),
        None => Err("no CUDA device was probed (the suite's `device` picks one)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_cuda_ordinals() {
        assert_eq!(parse_device("cuda"), Some(0));
        assert_eq!(parse_device("cuda:0"), Some(0));
        assert_eq!(parse_device("cuda:3"), Some(3));
        for bad in ["cpu", "gpu0", "cuda:", "cuda:-1", "cuda:one", "CUDA:0"] {
            assert_eq!(parse_device(bad), None, "{bad}");
        }
    }

    /// Without the feature the probe answers with the way to build a CUDA qbench.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_the_probe_says_how_to_build() {
        let why = probe(0).unwrap_err();
        assert!(why.contains("--features cuda") && why.contains("scripts/cuda-env.sh"), "{why}");
        assert_eq!(memory_used_bytes(), None);
    }
}
