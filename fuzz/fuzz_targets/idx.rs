//! IDX datasets (raw or gzip): the input as the images file with valid labels, and as the
//! labels file with valid images.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let images = qbench::data::encode_idx_images(2, 2, &[0, 1, 2, 3, 4, 5, 6, 7]);
    let labels = qbench::data::encode_idx_labels(&[1, 2]);
    let fuzzed = common::file("x.idx", data);
    let good_images = common::file("i.idx", &images);
    let good_labels = common::file("l.idx", &labels);
    let _ = qbench::data::load_idx("d", &fuzzed, &good_labels);
    let _ = qbench::data::load_idx("d", &good_images, &fuzzed);
});
