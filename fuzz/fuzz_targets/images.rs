//! Image-folder datasets: decoding (PNG, JPEG) and the declared preprocessing.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;
use qbench::data::{ImagePrep, Resize};

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch().join("images");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("a.png"), data).expect("writable");
    for (channels, resize, crop) in [(3, Resize::ShorterSide(16), Some((8, 8))), (1, Resize::None, None)] {
        let prep = ImagePrep {
            channels,
            resize,
            crop,
            scale: 1.0 / 255.0,
            mean: vec![0.5; channels],
            std: vec![0.25; channels],
            channels_last: false,
        };
        let _ = qbench::data::load_images("d", &dir, &prep, None);
    }
});
