//! A user's ONNX model file: decoding, the checks against the declared input, normalization.
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;
use qbench::model::onnx_file::{InputDecl, InputDtype, OnnxModel};

fuzz_target!(|data: &[u8]| {
    let path = common::file("m.onnx", data);
    let input = InputDecl {
        name: "images".into(),
        item_shape: vec![1, 28, 28],
        fixed_batch: None,
        bound: Default::default(),
        dtype: InputDtype::F32,
    };
    if let Ok(m) = OnnxModel::load("m", &path, &[input], &[]) {
        let _ = m.to_bytes();
        let _ = m.weighted_layers();
    }
});
