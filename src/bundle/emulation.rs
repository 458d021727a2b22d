//! Whether this process runs under a CPU emulator (qemu's user mode), whose timings are the
//! emulator's, not the target's: a record measured so says so, and gates never use its latency.
//!
//! Observed, not assumed: the binary's architecture is compared with what the kernel says of
//! the CPU (`/proc/cpuinfo`, which qemu-user passes through from the host), and with the
//! kernel's registered binary-format handlers (an emulator registered for this architecture
//! means the host is another one).

use std::path::Path;

/// The architecture this binary was built for (`aarch64`, `x86_64`).
pub const BINARY_ARCH: &str = std::env::consts::ARCH;

/// Why this process's timing is emulated, or `None` when nothing says it is. `QBENCH_EMULATED`
/// set to a reason says so outright (an emulator this check does not know).
pub fn detect() -> Option<String> {
    if let Some(reason) = std::env::var("QBENCH_EMULATED").ok().filter(|r| !r.trim().is_empty()) {
        return Some(format!("QBENCH_EMULATED: {reason}"));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    from_observations(BINARY_ARCH, &cpuinfo, Path::new("/proc/sys/fs/binfmt_misc"))
}

/// The ISA flags this process's CPU offers, as the kernel's (or an emulator's) auxiliary vector
/// tells the engines' own feature detection, named as `/proc/cpuinfo` names them; `None` on an
/// architecture where `/proc/cpuinfo` is the record's source. Under qemu-user this is the
/// emulated CPU's, where `/proc/cpuinfo` is the host's.
pub fn detected_cpu_flags() -> Option<Vec<String>> {
    #[cfg(target_arch = "aarch64")]
    {
        let detected = [
            ("asimd", std::arch::is_aarch64_feature_detected!("neon")),
            ("asimddp", std::arch::is_aarch64_feature_detected!("dotprod")),
            ("asimdhp", std::arch::is_aarch64_feature_detected!("fp16")),
            ("sve", std::arch::is_aarch64_feature_detected!("sve")),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ("bf16", std::arch::is_aarch64_feature_detected!("bf16")),
        ];
        Some(detected.iter().filter(|(_, on)| *on).map(|(name, _)| name.to_string()).collect())
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        None
    }
}

/// The CPU family `/proc/cpuinfo` describes: `x86_64` (its `vendor_id` and `flags` lines),
/// `aarch64` (`CPU implementer`/`Features`), or `None` when it says neither.
pub fn cpuinfo_arch(cpuinfo: &str) -> Option<&'static str> {
    let has = |key: &str| cpuinfo.lines().any(|l| l.split(':').next().is_some_and(|k| k.trim() == key));
    if has("vendor_id") && has("flags") {
        Some("x86_64")
    } else if has("CPU implementer") || (has("Features") && has("CPU architecture")) {
        Some("aarch64")
    } else {
        None
    }
}

/// The decision from what was read: the binary's architecture, `/proc/cpuinfo`'s text and the
/// binfmt_misc folder.
pub fn from_observations(binary_arch: &str, cpuinfo: &str, binfmt_misc: &Path) -> Option<String> {
    if let Some(cpu) = cpuinfo_arch(cpuinfo) {
        if cpu != binary_arch {
            let model = cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or(String::new(), |(_, v)| format!(" ({})", v.trim()));
            return Some(format!(
                "an {binary_arch} binary on an {cpu} CPU{model}: /proc/cpuinfo is the host's, so an emulator runs this process"
            ));
        }
    }
    let handler = binfmt_misc.join(format!("qemu-{binary_arch}"));
    let enabled = std::fs::read_to_string(&handler).ok().is_some_and(|t| t.lines().next() == Some("enabled"));
    enabled.then(|| {
        format!(
            "the kernel runs {binary_arch} binaries through qemu ({} is registered and enabled), so this host is not {binary_arch}",
            handler.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: &str =
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx2\n";
    const ARM: &str =
        "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU architecture: 8\n";

    #[test]
    fn an_arm_binary_reading_an_intel_cpuinfo_is_emulated() {
        let none = Path::new("/nonexistent-binfmt");
        assert_eq!(cpuinfo_arch(X86), Some("x86_64"));
        assert_eq!(cpuinfo_arch(ARM), Some("aarch64"));
        let why = from_observations("aarch64", X86, none).unwrap();
        assert!(why.contains("x86_64 CPU (Intel(R) Xeon(R))"), "{why}");
        assert_eq!(from_observations("aarch64", ARM, none), None);
        assert_eq!(from_observations("x86_64", X86, none), None);
    }

    #[test]
    fn a_registered_emulator_for_the_binary_s_own_arch_means_emulation() {
        let dir = tempfile::tempdir().unwrap();
        // An emulator that presents its own cpuinfo: the binfmt registration still tells.
        std::fs::write(dir.path().join("qemu-aarch64"), "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64\n")
            .unwrap();
        let why = from_observations("aarch64", ARM, dir.path()).unwrap();
        assert!(why.contains("qemu-aarch64"), "{why}");
        std::fs::write(dir.path().join("qemu-aarch64"), "disabled\n").unwrap();
        assert_eq!(from_observations("aarch64", ARM, dir.path()), None);
    }
}
