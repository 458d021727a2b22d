//! NumPy datasets: `.npy`, and `.npz` archives (chosen by the input's own magic bytes), with the
//! labels read from the same file.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file(if data.starts_with(b"PK") { "x.npz" } else { "x.npy" }, data);
    let _ = qbench::data::load_npy("d", &path, None, None);
    let _ = qbench::data::load_npy_arrays("d", &path, &["x", "y"], None);
    let _ = qbench::data::load_labels(&path, None);
});
