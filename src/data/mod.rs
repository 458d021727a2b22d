//! Datasets: labelled images loaded once per run and served in batches.

mod idx;

pub use idx::{encode_idx_images, encode_idx_labels, load_idx};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// File formats qbench reads datasets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// MNIST-style IDX files (`idx3-ubyte` images, `idx1-ubyte` labels), gzip or raw.
    Idx,
}

impl DatasetFormat {
    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Idx => "idx",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        (s == "idx").then_some(DatasetFormat::Idx)
    }
    pub fn names() -> &'static [&'static str] {
        &["idx"]
    }
    pub fn description(self) -> &'static str {
        match self {
            DatasetFormat::Idx => "MNIST-style IDX pair: images (magic 0x803, u8 N×rows×cols) and labels (magic 0x801, u8 N), gzip-compressed or raw",
        }
    }
}

/// A labelled image dataset, held in memory as bytes; pixels are scaled to
/// `[0, 1]` f32 when a batch is taken (the zoo models were trained on that).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// N × rows × cols pixels, row-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    /// sha256 of the images file's bytes followed by the labels file's bytes.
    pub sha256: String,
    pub images_path: PathBuf,
    pub labels_path: PathBuf,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn image_size(&self) -> usize {
        self.rows * self.cols
    }

    /// Images `range` as a dataset of their own (the calibration or evaluation split).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        let size = self.image_size();
        Dataset {
            pixels: self.pixels[range.start * size..range.end * size].to_vec(),
            labels: self.labels[range].to_vec(),
            ..self.clone_header()
        }
    }

    fn clone_header(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            pixels: Vec::new(),
            labels: Vec::new(),
            rows: self.rows,
            cols: self.cols,
            sha256: self.sha256.clone(),
            images_path: self.images_path.clone(),
            labels_path: self.labels_path.clone(),
        }
    }

    /// Images `start..start+count` as f32 in `[0, 1]`, NCHW with C = 1, followed by
    /// zero images up to `pad_to` (so fixed-shape engines can run a short last batch).
    pub fn batch_f32(&self, start: usize, count: usize, pad_to: usize) -> Vec<f32> {
        let size = self.image_size();
        let end = (start + count).min(self.len());
        let mut out: Vec<f32> = self.pixels[start * size..end * size].iter().map(|&p| p as f32 / 255.0).collect();
        out.resize(pad_to.max(end - start) * size, 0.0);
        out
    }
}

/// A dataset file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read dataset file {path}: {source}; check the path in the suite (relative to the suite file)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("dataset file {path} is not valid gzip ({reason}); the file is corrupt or truncated: copy it again (for the shipped Fashion-MNIST files: git checkout -- suites/data)")]
    Gzip { path: PathBuf, reason: String },
    #[error("dataset file {path} is not an IDX {expected} file: {reason}")]
    Idx { path: PathBuf, expected: &'static str, reason: String },
    #[error("dataset \"{dataset}\": {images} holds {n_images} images but {labels} holds {n_labels} labels; use the labels file that belongs to these images")]
    CountMismatch { dataset: String, images: PathBuf, labels: PathBuf, n_images: usize, n_labels: usize },
    #[error("dataset \"{dataset}\" ({path}) has {rows}×{cols} images but model \"{model}\" ({zoo}) takes 1×{want_rows}×{want_cols} inputs; evaluate it on a dataset of {want_rows}×{want_cols} images, or pick a model that fits this dataset")]
    ShapeMismatch {
        dataset: String,
        path: PathBuf,
        rows: usize,
        cols: usize,
        model: String,
        zoo: &'static str,
        want_rows: usize,
        want_cols: usize,
    },
    #[error("{at}: calibration.items = {items} leaves no image of dataset \"{dataset}\" ({len} images) to evaluate on; use fewer calibration images (at most {max})", max = .len.saturating_sub(1))]
    CalibrationSplit { at: String, items: usize, dataset: String, len: usize },
    #[error("dataset \"{dataset}\" ({path}) has label {label}, but model \"{model}\" has only {classes} outputs; the labels file does not fit this model")]
    LabelRange { dataset: String, path: PathBuf, label: u8, model: String, classes: usize },
}
