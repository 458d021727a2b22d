//! Reference models: the fp32 model a suite names, loaded once per run.

pub mod bert;
pub mod gguf_lm;
pub mod onnx;
pub mod onnx_file;
pub mod stored;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::hash::sha256_hex;
use crate::zoo::ZooModelId;

/// A zoo model with its trained fp32 weights.
pub struct Reference {
    pub name: String,
    pub zoo: ZooModelId,
    pub weights_path: PathBuf,
    /// sha256 of the weights file.
    pub sha256: String,
    /// Parameters by name, f32 on the CPU, shapes checked against the architecture.
    pub tensors: HashMap<String, Tensor>,
}

/// A model file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read weights file {path}: {source}; check the `weights` path in the suite")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("weights file {path} is not a valid safetensors file ({reason}); it is corrupt or of another format: write it with `cargo run --release --example train_zoo`")]
    Corrupt { path: PathBuf, reason: String },
    #[error("weights file {path} has no tensor \"{tensor}\" (shape {expected:?}) that the {zoo} architecture needs; is it the weights of another model?")]
    Missing { path: PathBuf, zoo: &'static str, tensor: String, expected: Vec<usize> },
    #[error("weights file {path}: tensor \"{tensor}\" is {found}, but the {zoo} architecture needs {expected}; is it the weights of another model?")]
    Shape {
        path: PathBuf,
        zoo: &'static str,
        tensor: String,
        /// dtype and shape, e.g. `F16 [16, 1, 3, 3]`.
        found: String,
        expected: String,
    },
    #[error("weights file {path}: tensor \"{tensor}\" holds NaN or infinite values; retrain or re-export the model")]
    NonFinite { path: PathBuf, tensor: String },
    #[error("model \"{model}\" ({path}): {reason}")]
    Onnx { model: String, path: PathBuf, reason: String },
    /// `op` is the op type, with its domain when not the default one.
    #[error("model \"{model}\" ({path}): node \"{node}\" uses op {op}, which tract does not implement; replace the op when exporting (e.g. a different opset or operator), or keep this model out of the suite")]
    UnsupportedOp { model: String, path: PathBuf, op: String, node: String },
    #[error("model \"{model}\" ({path}): {reason}")]
    Checkpoint { model: String, path: PathBuf, reason: String },
    #[error("cannot quantize or export {model}: {reason}")]
    Export { model: String, reason: String },
}

impl Reference {
    /// Loads and checks a zoo model's weights: every tensor the architecture needs,
    /// with its exact shape, f32, finite.
    pub fn load(name: &str, zoo: ZooModelId, path: &Path) -> Result<Reference, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Read { path: path.to_path_buf(), source })?;
        let corrupt = |reason: String| ModelError::Corrupt { path: path.to_path_buf(), reason };
        let tensors =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| corrupt(e.to_string()))?;
        let mut checked = HashMap::new();
        for (tensor, expected) in zoo.parameters() {
            let t = tensors.get(&tensor).ok_or_else(|| ModelError::Missing {
                path: path.to_path_buf(),
                zoo: zoo.name(),
                tensor: tensor.clone(),
                expected: expected.clone(),
            })?;
            if t.dims() != expected.as_slice() || t.dtype() != candle_core::DType::F32 {
                return Err(ModelError::Shape {
                    path: path.to_path_buf(),
                    zoo: zoo.name(),
                    tensor,
                    found: format!("{:?} {:?}", t.dtype(), t.dims()),
                    expected: format!("F32 {expected:?}"),
                });
            }
            let values = t.flatten_all().and_then(|f| f.to_vec1::<f32>()).map_err(|e| corrupt(e.to_string()))?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor });
            }
            checked.insert(tensor, t.clone());
        }
        Ok(Reference {
            name: name.to_string(),
            zoo,
            weights_path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            tensors: checked,
        })
    }
}
