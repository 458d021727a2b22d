//! Reference models: what a model is ([`ModelKind`], the one description every layer matches
//! on), and the fp32 model a suite names, read once per run ([`LoadedModel`]).
//!
//! This layer reads and writes model files (safetensors and GGUF through candle-core's readers,
//! ONNX through its protobuf types) and checks them; it never builds or runs a model on an engine:
//! that is each backend's, in `backend/<engine>/`.

pub mod bert;
pub mod gguf_check;
pub mod gguf_lm;
pub mod gguf_tokenizer;
pub mod onnx;
pub mod onnx_file;
pub mod qformat;
pub mod safetensors_check;
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
    /// How the weights were trained, when the file says (`qbench train-qat` writes its
    /// scheme, epochs, time and seed into the safetensors metadata).
    pub training: Option<String>,
}

/// The safetensors metadata key that says how a zoo model's weights were trained.
pub const TRAINING_METADATA: &str = "qbench.training";

/// The largest model file qbench reads (bytes); model files are read whole.
pub const MAX_MODEL_FILE_BYTES: u64 = 32 << 30;

/// A model file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    #[error("cannot read model file {path}; check the model's path in the suite")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    #[error("model \"{model}\" ({path}): {reason}")]
    Checkpoint { model: String, path: PathBuf, reason: String },
    #[error("cannot export {model}: {reason}")]
    Export { model: String, reason: String },
    #[error("cannot write {path}; check that the run folder is writable")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Reference {
    /// Loads and checks a zoo model's weights: every tensor the architecture needs,
    /// with its exact shape, f32, finite.
    pub fn load(name: &str, zoo: ZooModelId, path: &Path) -> Result<Reference, ModelError> {
        let bytes = crate::files::read_bounded(path, MAX_MODEL_FILE_BYTES, "a model file")?;
        let corrupt = |reason: String| ModelError::Corrupt { path: path.to_path_buf(), reason };
        safetensors_check::check(&bytes).map_err(corrupt)?;
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
        let training = safetensors::SafeTensors::read_metadata(&bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get(crate::model::TRAINING_METADATA).cloned()));
        Ok(Reference {
            name: name.to_string(),
            zoo,
            weights_path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            tensors: checked,
            training,
        })
    }
}

/// What a reference model is, as a suite declares it: the one description of a model's kind,
/// engine-neutral. Backends say what they can make of each kind; building the engine's model
/// from it is theirs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A built-in architecture with its trained weights (safetensors).
    Zoo { zoo: ZooModelId, weights: PathBuf },
    /// A user's ONNX graph, with its declared inputs (in feeding order) and the outputs read
    /// (empty: the graph's first).
    Onnx { path: PathBuf, inputs: Vec<onnx_file::InputDecl>, outputs: Vec<String> },
    /// A BERT-family encoder checkpoint: safetensors and its `config.json`. Its output is an
    /// embedding of each row of token ids.
    Bert { path: PathBuf, config: PathBuf },
    /// A decoder language model in a GGUF file (llama.cpp's format).
    GgufLm { path: PathBuf },
}

impl ModelKind {
    /// The zoo architecture, for zoo models.
    pub fn zoo(&self) -> Option<ZooModelId> {
        match self {
            ModelKind::Zoo { zoo, .. } => Some(*zoo),
            _ => None,
        }
    }

    /// The model file: zoo weights, the ONNX file, the checkpoint or the GGUF.
    pub fn file(&self) -> &Path {
        match self {
            ModelKind::Zoo { weights, .. } => weights,
            ModelKind::Onnx { path, .. } | ModelKind::Bert { path, .. } | ModelKind::GgufLm { path } => path,
        }
    }

    /// A short name of the kind, for messages: `zoo cnn`, `ONNX graph`, `BERT checkpoint`,
    /// `GGUF language model`.
    pub fn describe(&self) -> String {
        match self {
            ModelKind::Zoo { zoo, .. } => format!("zoo {}", zoo.name()),
            ModelKind::Onnx { .. } => "ONNX graph".into(),
            ModelKind::Bert { .. } => "BERT checkpoint".into(),
            ModelKind::GgufLm { .. } => "GGUF language model".into(),
        }
    }

    /// Shape of one item of each input, in order; `None` for a model that takes a row of
    /// token ids of any length.
    pub fn input_parts(&self) -> Option<Vec<Vec<usize>>> {
        match self {
            ModelKind::Zoo { zoo, .. } => Some(vec![zoo.input_shape().to_vec()]),
            // Constants are part of the graph, not of the dataset's items.
            ModelKind::Onnx { inputs, .. } => {
                Some(inputs.iter().filter(|i| i.constant.is_none()).map(|i| i.item_shape.clone()).collect())
            }
            ModelKind::Bert { .. } | ModelKind::GgufLm { .. } => None,
        }
    }

    /// The weighted layers when known without reading the model file (zoo models).
    pub fn known_layers(&self) -> Option<Vec<(String, usize)>> {
        self.zoo().map(|z| z.weighted_layers().into_iter().map(|(n, w)| (n.to_string(), w)).collect())
    }

    /// Whether the model is a causal language model, scored by perplexity.
    pub fn is_language_model(&self) -> bool {
        matches!(self, ModelKind::GgufLm { .. })
    }

    /// Whether the model's output is an embedding (no classes to score or agree on).
    pub fn outputs_embeddings(&self) -> bool {
        matches!(self, ModelKind::Bert { .. })
    }
}

/// A reference model as read for a run (or for `explain`): its kind, what every model has, and
/// what its file holds.
#[derive(Debug)]
pub struct LoadedModel {
    pub name: String,
    pub kind: ModelKind,
    /// sha256 of the model file.
    pub sha256: String,
    /// The weighted layers schemes apply to, with their row widths, in order.
    pub layers: Vec<(String, usize)>,
    /// Elements of the model's parameters.
    pub parameters: usize,
    pub content: Content,
}

/// What a model file holds once read, by kind.
pub enum Content {
    Zoo(Reference),
    /// The normalized graph and its f32 file (written into the run's artifacts: what the f32
    /// cases and the reference run).
    Onnx {
        model: Box<onnx_file::OnnxModel>,
        f32_file: PathBuf,
    },
    Bert(Box<bert::BertCheckpoint>),
    /// Every variant, f32 included, is requantized from it.
    GgufLm(Box<gguf_lm::GgufLm>),
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Zoo(r) => write!(f, "Zoo({})", r.weights_path.display()),
            Content::Onnx { model, f32_file } => write!(f, "Onnx({}, {})", model.path.display(), f32_file.display()),
            Content::Bert(b) => write!(f, "Bert({})", b.path.display()),
            Content::GgufLm(g) => write!(f, "GgufLm({})", g.path.display()),
        }
    }
}

impl LoadedModel {
    /// Checks that `data` fits what the model declares of its own inputs: token ids below its
    /// vocabulary and rows no longer than its positions (BERT checkpoints, GGUF language models),
    /// which an engine would otherwise index past.
    pub fn check_dataset(
        &self,
        name: &str,
        data: &crate::data::Dataset,
        tokenizer: Option<&Path>,
    ) -> Result<(), ModelError> {
        let (path, vocab, positions) = match &self.content {
            Content::Bert(b) => (&b.path, b.config.vocab_size, Some(b.config.max_position_embeddings)),
            Content::GgufLm(g) => (&g.path, g.vocab, g.context_length),
            Content::Zoo(_) | Content::Onnx { .. } => return Ok(()),
        };
        let bad = |reason: String| ModelError::Checkpoint { model: name.to_string(), path: path.clone(), reason };
        let max = data.values.iter().fold(0f32, |m, &v| m.max(v));
        if max >= vocab as f32 || data.values.iter().any(|v| *v < 0.0 || v.fract() != 0.0) {
            return Err(bad(format!(
                "dataset \"{}\" holds token id {max}, but the model's vocabulary has {vocab} tokens; use the model's own tokenizer{}",
                data.name,
                tokenizer.map(|t| format!(" (the dataset's is {})", t.display())).unwrap_or_default()
            )));
        }
        let row = data.item_size();
        if let Some(p) = positions.filter(|&p| row > p) {
            return Err(bad(format!(
                "dataset \"{}\" has rows of {row} tokens, more than the model's {p} positions; lower seq_len to at most {p}",
                data.name
            )));
        }
        Ok(())
    }

    /// Reads and checks the model `kind` declares; an ONNX file's normalized f32 form is written
    /// to `artifacts`.
    pub fn load(name: &str, kind: &ModelKind, artifacts: &Path) -> Result<LoadedModel, ModelError> {
        let (sha256, layers, parameters, content) = match kind {
            ModelKind::Zoo { zoo, weights } => {
                let r = Reference::load(name, *zoo, weights)?;
                (r.sha256.clone(), kind.known_layers().unwrap_or_default(), zoo.parameter_count(), Content::Zoo(r))
            }
            ModelKind::Onnx { path, inputs, outputs } => {
                let m = onnx_file::OnnxModel::load(name, path, inputs, outputs)?;
                let f32_file = crate::files::join(artifacts, &format!("{}.f32.onnx", crate::files::file_stem(name)))?;
                std::fs::write(&f32_file, m.to_bytes())
                    .map_err(|source| ModelError::Write { path: f32_file.clone(), source })?;
                (m.sha256.clone(), m.weighted_layers(), m.parameters, Content::Onnx { model: Box::new(m), f32_file })
            }
            ModelKind::Bert { path, config } => {
                let b = bert::BertCheckpoint::load(name, path, config)?;
                (b.sha256.clone(), b.layers.clone(), b.parameters(), Content::Bert(Box::new(b)))
            }
            ModelKind::GgufLm { path } => {
                let g = gguf_lm::GgufLm::load(name, path)?;
                (g.sha256.clone(), g.layers.clone(), g.parameters(), Content::GgufLm(Box::new(g)))
            }
        };
        Ok(LoadedModel { name: name.to_string(), kind: kind.clone(), sha256, layers, parameters, content })
    }

    /// An ONNX graph's nodes, in graph order: what an engine checks against the ops it
    /// implements. Empty for other kinds.
    pub fn onnx_ops(&self) -> Vec<OnnxOp> {
        let Content::Onnx { model, .. } = &self.content else { return Vec::new() };
        let Some(graph) = model.proto.graph.as_ref() else { return Vec::new() };
        graph
            .node
            .iter()
            .map(|n| OnnxOp { op_type: n.op_type.clone(), domain: n.domain.clone(), node: n.name.clone() })
            .collect()
    }
}

/// One node of an ONNX graph, as an engine's capability checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxOp {
    pub op_type: String,
    /// Empty (or `ai.onnx`) for the default domain.
    pub domain: String,
    pub node: String,
}

impl OnnxOp {
    /// `Op`, or `Op (domain d)` outside the default domain.
    pub fn describe(&self) -> String {
        if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op_type.clone()
        } else {
            format!("{} (domain {})", self.op_type, self.domain)
        }
    }
}
