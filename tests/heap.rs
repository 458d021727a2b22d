//! The counting allocator against allocations of known sizes. Its own test binary, with one
//! test: the counters are process-wide, and another test's frees during a step would lower the
//! peak it sees.

use qbench::measure::alloc::{counting, measure};

#[test]
fn counts_exact_bytes_of_known_allocations() {
    assert!(counting(), "the library installs the counting allocator");
    // Two live buffers of 1 MiB and 3 MiB, then one freed and a 2 MiB one: the peak above the
    // start is 4 MiB, and the total is 6 MiB (plus the small allocations the harness makes).
    let (kept, a) = measure(|| {
        let x = std::hint::black_box(vec![1u8; 1 << 20]);
        let y = std::hint::black_box(vec![2u8; 3 << 20]);
        drop(y);
        let z = std::hint::black_box(vec![3u8; 2 << 20]);
        drop(x);
        z
    });
    let a = a.unwrap();
    assert!(a.peak_bytes >= 4 << 20 && a.peak_bytes < (4 << 20) + (64 << 10), "{a:?}");
    assert!(a.total_bytes >= 6 << 20 && a.total_bytes < (6 << 20) + (64 << 10) && a.allocations >= 3, "{a:?}");
    // Growing a vector by reallocation counts its growth.
    let (_, grown) = measure(|| {
        let mut v: Vec<u8> = Vec::with_capacity(1000);
        v.reserve_exact(1_000_000);
        std::hint::black_box(v)
    });
    let grown = grown.unwrap();
    assert!(grown.total_bytes >= 1_000_000 && grown.total_bytes < 1_100_000, "{grown:?}");
    assert_eq!(kept.len(), 2 << 20);
}
