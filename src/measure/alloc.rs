//! Heap memory counted exactly, by a global allocator that wraps the system's.
//!
//! The OS's resident-set figures (`measure::memory`) miss what a long-lived process reuses:
//! a case that allocates pages an earlier case freed adds nothing to the resident set, so a CNN
//! holding 828 KB of weights and allocating MiBs per batch reads "0.0 MiB". The counting
//! allocator sees every allocation through Rust's allocator: candle's and tract's tensors,
//! weights, workspaces and the GGML blocks all go through it. It does not see memory an engine
//! gets elsewhere: GPU memory (the driver's counter, `gpu_memory_used_bytes`), memory-mapped
//! files, or a C++ engine's own allocator; those figures come from their own counters or are
//! marked as not covered.
//!
//! The counters are process-wide atomics (relaxed: exact totals, no ordering needed): four
//! atomic updates per allocation (live bytes, peak, total, count) and one per free, on shared
//! cache lines, so threads allocating at once contend a little. Records count the allocations
//! per run (`run_heap_allocations_per_run`), which bounds what this adds to a latency. Being
//! the global allocator of the library, it is every program's that links qbench: a program with
//! its own global allocator cannot link it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting. Installed as qbench's global allocator (`lib.rs`).
pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);

fn added(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
    TOTAL.fetch_add(bytes as u64, Relaxed);
    COUNT.fetch_add(1, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let old = layout.size();
            if new_size >= old {
                added(new_size - old);
            } else {
                LIVE.fetch_sub(old - new_size, Relaxed);
            }
        }
        p
    }
}

/// What a step allocated through the global allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// Peak live heap above what was live when the step started.
    pub peak_bytes: u64,
    /// Every byte allocated during the step (freed or not).
    pub total_bytes: u64,
    /// Allocations (a growing reallocation counts as one).
    pub allocations: u64,
}

/// Whether this process counts its allocations (qbench's allocator is the global one): an
/// allocation must show in the counters.
pub fn counting() -> bool {
    let before = COUNT.load(Relaxed);
    drop(std::hint::black_box(vec![0u8; 64]));
    COUNT.load(Relaxed) > before
}

/// Bytes live on the heap now.
pub fn live_bytes() -> u64 {
    LIVE.load(Relaxed) as u64
}

/// Runs `f` and says what it allocated; `None` when the process does not count (another
/// global allocator). Steps measured this way must not overlap: the peak is reset at the start.
/// Allocations other threads make meanwhile are counted too (engines' worker threads are part
/// of the step).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Option<Allocated>) {
    if !counting() {
        return (f(), None);
    }
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let (total, count) = (TOTAL.load(Relaxed), COUNT.load(Relaxed));
    let out = f();
    let allocated = Allocated {
        peak_bytes: PEAK.load(Relaxed).saturating_sub(start) as u64,
        total_bytes: TOTAL.load(Relaxed) - total,
        allocations: COUNT.load(Relaxed) - count,
    };
    (out, Some(allocated))
}
