//! Datasets held as one file per item in a folder: raw bytes (`raw`) or images (`images`).
//!
//! Items are the folder's files sorted by name, or, when the folder holds only subfolders, the
//! files of each subfolder with the subfolder as the class (classes numbered in name order, as
//! torchvision's ImageFolder does). Labels may also come from a CSV: with a `file` column they
//! are matched by file name, else taken in item order.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::DataError;

/// The items of `dir`: files in name order, with their class when the folder is split by class.
pub(super) struct Listing {
    pub files: Vec<PathBuf>,
    /// Class per file, from class subfolders.
    pub classes: Option<Vec<u32>>,
}

pub(super) fn list(dir: &Path) -> Result<Listing, DataError> {
    let entries = sorted_entries(dir)?;
    let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = entries.into_iter().partition(|p| p.is_dir());
    let bad = |reason: String| DataError::Folder { path: dir.to_path_buf(), reason };
    match (dirs.is_empty(), files.is_empty()) {
        (true, false) => Ok(Listing { files, classes: None }),
        (false, true) => {
            let mut all = Vec::new();
            let mut classes = Vec::new();
            for (c, d) in dirs.iter().enumerate() {
                for f in sorted_entries(d)?.into_iter().filter(|p| p.is_file()) {
                    all.push(f);
                    classes.push(c as u32);
                }
            }
            if all.is_empty() {
                return Err(bad("its class subfolders hold no file".into()));
            }
            Ok(Listing { files: all, classes: Some(classes) })
        }
        (true, true) => Err(bad("it is empty".into())),
        (false, false) => Err(bad("it mixes files and subfolders; use files only, or one subfolder per class".into())),
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|source| DataError::Read { path: dir.to_path_buf(), source })?;
    let mut out: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    out.sort();
    Ok(out)
}

/// Labels for the listed files: the CSV's (by `file` column, or in order), else the class
/// subfolders'. Hashes what it reads.
pub(super) fn labels(
    listing: &Listing,
    dir: &Path,
    csv: Option<(&Path, Option<&str>)>,
    hasher: &mut Sha256,
) -> Result<Option<Vec<u32>>, DataError> {
    let Some((path, column)) = csv else { return Ok(listing.classes.clone()) };
    let bytes = super::read_file(path)?;
    hasher.update(&bytes);
    let bad = |reason: String| DataError::Labels { path: path.to_path_buf(), reason };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("it is not UTF-8 text (CSV)".into()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> =
        lines.next().unwrap_or("").split(',').map(|c| c.trim().trim_matches('"').to_string()).collect();
    let Some(file_col) = header.iter().position(|h| matches!(h.as_str(), "file" | "filename" | "path")) else {
        // No file column: labels in item order, as for any other dataset.
        let (l, _) = super::load_labels(path, column)?;
        if l.len() != listing.files.len() {
            return Err(DataError::LabelCount {
                dataset: dir.display().to_string(),
                inputs: dir.to_path_buf(),
                labels: path.to_path_buf(),
                n_items: listing.files.len(),
                n_labels: l.len(),
            });
        }
        return Ok(Some(l));
    };
    let label_col = match column {
        Some(c) => header
            .iter()
            .position(|h| h == c)
            .ok_or_else(|| bad(format!("it has no column \"{c}\"; its columns are: {}", header.join(", "))))?,
        None => header.iter().position(|h| h == "label").ok_or_else(|| {
            bad(format!(
                "it has a file column but no \"label\" column; name it with label_column (columns: {})",
                header.join(", ")
            ))
        })?,
    };
    let mut by_name = std::collections::HashMap::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(|c| c.trim().trim_matches('"')).collect();
        let (Some(f), Some(l)) = (cells.get(file_col), cells.get(label_col)) else {
            return Err(bad(format!("line {} has fewer columns than the header", i + 2)));
        };
        let l: u32 =
            l.parse().map_err(|_| bad(format!("line {}: \"{l}\" is not a class index (0, 1, 2, …)", i + 2)))?;
        by_name.insert(f.to_string(), l);
    }
    listing
        .files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(dir).unwrap_or(f).to_string_lossy().replace('\\', "/");
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            by_name
                .get(&rel)
                .or_else(|| by_name.get(&name))
                .copied()
                .ok_or_else(|| bad(format!("it has no label for {rel}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Raw files as byte tensors: each file's bytes (0–255, as f32), cut or zero-padded to `length`.
pub fn load_raw(
    name: &str,
    dir: &Path,
    length: usize,
    labels_csv: Option<(&Path, Option<&str>)>,
) -> Result<super::Dataset, DataError> {
    let listing = list(dir)?;
    let mut hasher = Sha256::new();
    super::checked_values(&[listing.files.len(), length]).map_err(|reason| DataError::Folder {
        path: dir.to_path_buf(),
        reason: format!("{} files of length {length}: {reason}", listing.files.len()),
    })?;
    let mut values = Vec::with_capacity(listing.files.len() * length);
    for f in &listing.files {
        let bytes = super::read_file(f)?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
        values.extend(bytes.iter().take(length).map(|&b| b as f32));
        values.extend(std::iter::repeat_n(0.0, length.saturating_sub(bytes.len())));
    }
    let labels = labels(&listing, dir, labels_csv, &mut hasher)?;
    Ok(super::Dataset {
        name: name.to_string(),
        item_shape: vec![length],
        values,
        labels,
        sha256: crate::hash::hex(&hasher.finalize()),
        inputs_path: dir.to_path_buf(),
        labels_path: labels_csv.map(|(p, _)| p.to_path_buf()),
        parts: Vec::new(),
        texts: None,
    })
}
