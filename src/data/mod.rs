//! Datasets: items (f32 tensors of one shape) and, when known, their class labels, loaded
//! once per run and served in batches. Without labels a dataset is outputs-only: cases are
//! scored by fidelity to the f32 reference alone.

mod folder;
mod idx;
mod images;
mod labels;
pub mod npy;
pub mod split;
mod text;

pub use folder::load_raw;
pub use idx::{encode_idx_images, encode_idx_labels, load_idx};
pub use images::{load_images, ImagePrep, Resize};
pub use labels::load_labels;
pub use npy::{encode_npy_f32, load_npy, load_npy_arrays};
pub use text::{load_text, load_text_with};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// File formats qbench reads datasets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// MNIST-style IDX files (`idx3-ubyte` images, `idx1-ubyte` labels), gzip or raw.
    Idx,
    /// A NumPy array (`.npy`, or one array of an `.npz`), first axis the items.
    Npy,
    /// Text, one item a line, tokenized into token-id rows by a `tokenizer.json`.
    Text,
    /// A folder of PNG/JPEG images (or one subfolder per class), preprocessed as declared.
    Images,
    /// A folder of files, each one item: its bytes.
    Raw,
}

impl DatasetFormat {
    pub const ALL: &'static [DatasetFormat] =
        &[DatasetFormat::Idx, DatasetFormat::Npy, DatasetFormat::Text, DatasetFormat::Images, DatasetFormat::Raw];

    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Idx => "idx",
            DatasetFormat::Npy => "npy",
            DatasetFormat::Text => "text",
            DatasetFormat::Images => "images",
            DatasetFormat::Raw => "raw",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == s)
    }
    pub fn names() -> &'static [&'static str] {
        &["idx", "npy", "text", "images", "raw"]
    }
    pub fn description(self) -> &'static str {
        match self {
            DatasetFormat::Idx => "MNIST-style IDX pair: images (magic 0x803, u8 N×rows×cols, scaled to [0, 1]) and labels (magic 0x801, u8 N), gzip-compressed or raw",
            DatasetFormat::Npy => "NumPy .npy file, or an array of an .npz (array = \"name\"): N items of any shape, any real dtype, values as stored (converted to f32); labels optional, from a CSV (one per line, or a column) or an integer .npy; without labels the dataset is outputs-only",
            DatasetFormat::Text => "UTF-8 text, one item a line, tokenized by a Hugging Face tokenizer.json (tokenizer = \"…\") into rows of seq_len token ids (truncated, or padded with the tokenizer's pad id); for transformer checkpoints; labels optional as for npy",
            DatasetFormat::Images => "a folder of PNG/JPEG images in name order, or one subfolder per class (the labels); [datasets.image] declares channels, resize, crop, scale, mean, std and layout; labels may also come from a CSV (file,label)",
            DatasetFormat::Raw => "a folder of files, each one item: its bytes as values 0–255, cut or zero-padded to length; labels as for images",
        }
    }
}

/// A dataset in memory: `len` items of `item_shape`, as f32.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// Shape of one item, e.g. `[1, 28, 28]`.
    pub item_shape: Vec<usize>,
    /// `len × item` values, row-major.
    pub values: Vec<f32>,
    /// One class per item; `None` when the dataset is outputs-only.
    pub labels: Option<Vec<u32>>,
    /// sha256 of the inputs file's bytes followed by the labels file's bytes.
    pub sha256: String,
    pub inputs_path: PathBuf,
    pub labels_path: Option<PathBuf>,
    /// Item shapes of the arrays each item concatenates (a model with several inputs, fed from
    /// several `.npz` arrays); empty when items are one array of `item_shape`.
    pub parts: Vec<Vec<usize>>,
    /// One text per item (`text_labels`): what a sequence output decodes to, for exact match
    /// and character error rate.
    pub texts: Option<Vec<String>>,
}

impl Dataset {
    /// The item shape of each array an item holds, in order.
    pub fn item_parts(&self) -> Vec<Vec<usize>> {
        if self.parts.is_empty() {
            vec![self.item_shape.clone()]
        } else {
            self.parts.clone()
        }
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.item_size().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per item.
    pub fn item_size(&self) -> usize {
        self.item_shape.iter().product()
    }

    /// Labels, or an empty slice for an outputs-only dataset.
    pub fn labels(&self) -> &[u32] {
        self.labels.as_deref().unwrap_or(&[])
    }

    /// Items `range` as a dataset of their own (the calibration or evaluation split).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        let size = self.item_size();
        Dataset {
            name: self.name.clone(),
            item_shape: self.item_shape.clone(),
            values: self.values[range.start * size..range.end * size].to_vec(),
            labels: self.labels.as_ref().map(|l| l[range.clone()].to_vec()),
            texts: self.texts.as_ref().map(|t| t[range].to_vec()),
            sha256: self.sha256.clone(),
            inputs_path: self.inputs_path.clone(),
            labels_path: self.labels_path.clone(),
            parts: self.parts.clone(),
        }
    }

    /// The items at `indices` (in that order), as a dataset of their own.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let size = self.item_size();
        let mut values = Vec::with_capacity(indices.len() * size);
        for &i in indices {
            values.extend_from_slice(&self.values[i * size..(i + 1) * size]);
        }
        Dataset {
            name: self.name.clone(),
            item_shape: self.item_shape.clone(),
            values,
            labels: self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect()),
            texts: self.texts.as_ref().map(|t| indices.iter().map(|&i| t[i].clone()).collect()),
            sha256: self.sha256.clone(),
            inputs_path: self.inputs_path.clone(),
            labels_path: self.labels_path.clone(),
            parts: self.parts.clone(),
        }
    }

    /// Items `start..start+count`, followed by copies of the last of them up to `pad_to` (so
    /// fixed-shape engines can run a short last batch; their outputs are not used). Copies, not
    /// zeros: an all-zero item can be an input the model cannot take (a mask of zeros divides by
    /// zero), and dynamic quantization with one scale per tensor (ONNX Runtime's
    /// `DynamicQuantizeLinear`) would spread a padded item's NaN, or its range, to the real items.
    pub fn batch_f32(&self, start: usize, count: usize, pad_to: usize) -> Vec<f32> {
        let size = self.item_size();
        let end = (start + count).min(self.len());
        let mut out = self.values[start * size..end * size].to_vec();
        let items = pad_to.max(end.saturating_sub(start));
        if end > start {
            let last = (end - 1) * size;
            while out.len() < items * size {
                out.extend_from_slice(&self.values[last..last + size]);
            }
        } else {
            out.resize(items * size, 0.0);
        }
        out
    }
}

/// Reads `path`'s lines as one text label per item of `d` (a trailing newline ends the last
/// line; `\r\n` is read as `\n`); the dataset's hash then covers them too.
pub fn attach_texts(mut d: Dataset, path: &std::path::Path) -> Result<Dataset, DataError> {
    use sha2::{Digest, Sha256};
    let bytes = crate::files::read_bounded(path, 1 << 30, "a text labels file")?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|e| DataError::Labels { path: path.to_path_buf(), reason: format!("not UTF-8 text ({e})") })?;
    // A byte-order mark (Windows editors write one) is not part of the first text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let texts: Vec<String> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l).to_string()).collect();
    if texts.len() != d.len() {
        let hint = if texts.len() == d.len() + 1 && texts.last().is_some_and(|t| t.is_empty()) {
            " (its last line is empty: a stray blank line at the end, or an empty text for a last item that is not there; remove it if stray)"
        } else {
            ""
        };
        return Err(DataError::Labels {
            path: path.to_path_buf(),
            reason: format!(
                "holds {} lines but dataset \"{}\" ({}) has {} items; write one text a line, in item order{hint}",
                texts.len(),
                d.name,
                d.inputs_path.display(),
                d.len()
            ),
        });
    }
    let mut hasher = Sha256::new();
    hasher.update(d.sha256.as_bytes());
    hasher.update(&bytes);
    d.sha256 = format!("{:x}", hasher.finalize());
    d.texts = Some(texts);
    Ok(d)
}

/// `8 + 8` for items of two arrays (one a model input).
pub fn parts(parts: &[Vec<usize>]) -> String {
    parts.iter().map(|p| shape(p)).collect::<Vec<_>>().join(" + ")
}

/// `1×28×28`.
pub fn shape(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// The most values a dataset may hold in memory (2^28 values, 1 GiB as f32). Sizes read from
/// dataset headers are checked against it, and against the file's length, before anything is
/// allocated, so a corrupt or hostile header is an error, not an out-of-memory abort.
pub const MAX_DATASET_VALUES: usize = 1 << 28;

/// The longest image side qbench decodes or resizes to (pixels), and the most pixels one
/// image may have, decoded or resized: a header or a suite asking for more is an error before
/// any pixel is allocated.
pub const MAX_IMAGE_SIDE: usize = 16_384;
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// The largest dataset file qbench reads (bytes).
pub const MAX_DATASET_FILE_BYTES: u64 = 4 << 30;

/// Reads a dataset file whole: a regular file (not a FIFO or a device) of at most
/// [`MAX_DATASET_FILE_BYTES`].
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, DataError> {
    Ok(crate::files::read_bounded(path, MAX_DATASET_FILE_BYTES, "a dataset file")?)
}

/// `dims`' product, when it exists and is within [`MAX_DATASET_VALUES`]; else the error says
/// which limit the header broke.
fn checked_values(dims: &[usize]) -> Result<usize, String> {
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match n {
        Some(n) if n <= MAX_DATASET_VALUES => Ok(n),
        Some(n) => Err(format!(
            "{} = {n} values is more than qbench's limit of {MAX_DATASET_VALUES} values (1 GiB as f32) for a dataset; use a subset",
            shape(dims)
        )),
        None => Err(format!("dimensions {dims:?} multiply past 2^64 (the product overflows); the header is corrupt")),
    }
}

// Not `#[from]`: the message already holds the file error, so it is not also its source.
impl From<crate::files::FileError> for DataError {
    fn from(e: crate::files::FileError) -> Self {
        DataError::File(e)
    }
}

/// A dataset file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}; check the dataset's path in the suite")]
    File(crate::files::FileError),
    #[error("dataset \"{dataset}\" ({path}) holds no item; a dataset needs at least one item to measure anything")]
    Empty { dataset: String, path: PathBuf },
    #[error("cannot read dataset {path}; check the path in the suite (relative to the suite file)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("dataset file {path} is not valid gzip ({reason}); the file is corrupt or truncated: copy it again (for the shipped Fashion-MNIST files: git checkout -- suites/data)")]
    Gzip { path: PathBuf, reason: String },
    #[error("dataset file {path} is not an IDX {expected} file: {reason}")]
    Idx { path: PathBuf, expected: &'static str, reason: String },
    #[error("dataset \"{dataset}\": {images} holds {n_images} images but {labels} holds {n_labels} labels; use the labels file that belongs to these images")]
    CountMismatch { dataset: String, images: PathBuf, labels: PathBuf, n_images: usize, n_labels: usize },
    /// `dataset` is its name and file, e.g. `"fm" (data/x.npy)`.
    /// `found`/`want`: item shapes, one per array or input (`1×28×28`, or `8 + 8` for two).
    #[error("dataset {dataset} has items of shape {found} but model \"{model}\" takes {want} inputs; evaluate it on a dataset of that shape (one .npz array per input, in order: arrays = [...]), or fix the model's declared input shapes")]
    ShapeMismatch { dataset: String, found: String, model: String, want: String },
    #[error("{at}: calibration.items = {items}{repeats} leaves no image of dataset \"{dataset}\" ({len} images) to evaluate on; use fewer calibration images (at most {max} in all)", max = .len.saturating_sub(1), repeats = if *.repeats > 1 { format!(" × repeats = {} ({} held out)", .repeats, .items * .repeats) } else { String::new() })]
    CalibrationSplit { at: String, items: usize, repeats: usize, dataset: String, len: usize },
    #[error("[{table}] select = \"stratified\" ({at}) needs labels, but dataset \"{dataset}\" has none; add labels to it or use select = \"random\"")]
    StratifiedWithoutLabels { table: &'static str, at: String, dataset: String },
    #[error("{at}: tuning.items = {items} leaves no item of dataset \"{dataset}\" ({len} evaluation items after calibration) to test on; use fewer tuning items (at most {max})", max = .len.saturating_sub(1))]
    TuningSplit { at: String, items: usize, dataset: String, len: usize },
    #[error("dataset \"{dataset}\" ({path}) has label {label}, but model \"{model}\" has only {classes} outputs; the labels file does not fit this model")]
    LabelRange { dataset: String, path: PathBuf, label: u32, model: String, classes: usize },
    #[error("dataset file {path}: {reason}")]
    Npy { path: PathBuf, reason: String },
    #[error("dataset folder {path}: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("text dataset {path}: {reason}")]
    Text { path: PathBuf, reason: String },
    #[error("labels file {path}: {reason}")]
    Labels { path: PathBuf, reason: String },
    #[error("dataset \"{dataset}\": {inputs} holds {n_items} items but {labels} holds {n_labels} labels; use the labels file that belongs to these items")]
    LabelCount { dataset: String, inputs: PathBuf, labels: PathBuf, n_items: usize, n_labels: usize },
}
