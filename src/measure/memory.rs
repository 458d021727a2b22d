//! Resident memory of this process, from the OS (Linux `/proc/self`).
//!
//! Peak RSS (`VmHWM`) only ever grows, so to attribute a peak to one step the high-water mark
//! is reset first by writing `5` to `/proc/self/clear_refs` (Linux ≥ 4.0). The memory a step
//! adds is then its peak minus the resident size before it. Where the reset is not allowed
//! (or not on Linux) the figures are `None`, not guesses.

/// Current resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident set size since the last reset, in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// The highest peak seen before a reset: resets lower `VmHWM`, and the process's own peak
/// must survive them (`process_peak_rss_bytes`).
static PEAK_BEFORE_RESETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Resets the peak to the current resident size; false when the OS does not allow it. The peak
/// it erases is kept for [`process_peak_rss_bytes`].
pub fn reset_peak() -> bool {
    if let Some(p) = peak_rss_bytes() {
        PEAK_BEFORE_RESETS.fetch_max(p, std::sync::atomic::Ordering::Relaxed);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set of this whole process so far, across the resets steps make.
pub fn process_peak_rss_bytes() -> Option<u64> {
    let now = peak_rss_bytes()?;
    Some(now.max(PEAK_BEFORE_RESETS.load(std::sync::atomic::Ordering::Relaxed)))
}

fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// Measures the peak resident memory `f` adds above what was resident when it started.
pub fn peak_added<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    let ok = reset_peak();
    let before = rss_bytes();
    let out = f();
    let added = match (ok, before, peak_rss_bytes()) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_64_mib_allocation_shows_in_the_peak() {
        // Touch every page so it is resident; the peak must account for the 64 MiB (less the
        // few pages the allocator may reuse from memory already resident).
        let size = 64 << 20;
        let (sum, added) = peak_added(|| {
            let v = vec![1u8; size];
            v.iter().step_by(4096).map(|&b| b as u64).sum::<u64>()
        });
        assert_eq!(sum, (size / 4096) as u64);
        let added = added.expect("Linux exposes VmHWM and clear_refs");
        assert!(added >= size as u64 * 95 / 100, "peak added {added} < 95% of {size}");
        assert!(added < 4 * size as u64, "peak added {added}, far above the allocation");
        // Nothing allocated: next to nothing added.
        let ((), small) = peak_added(|| ());
        assert!(small.unwrap() < 32 << 20, "{small:?}");
    }
}
