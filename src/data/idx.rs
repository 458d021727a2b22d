//! IDX files (the MNIST format): a big-endian header then raw u8 data.
//! Gzip-compressed files are recognized by their magic bytes.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use super::{DataError, Dataset};
use crate::hash::hex;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Loads an images/labels IDX pair and checks that they belong together.
pub fn load_idx(name: &str, images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let images_raw = super::read_file(images)?;
    let labels_raw = super::read_file(labels)?;
    let (dims, pixels) = parse(images, &images_raw, IMAGES_MAGIC, "images (magic 0x00000803, 3 dimensions)")?;
    let (ldims, labels_v) = parse(labels, &labels_raw, LABELS_MAGIC, "labels (magic 0x00000801, 1 dimension)")?;
    if dims[0] != ldims[0] {
        return Err(DataError::CountMismatch {
            dataset: name.to_string(),
            images: images.to_path_buf(),
            labels: labels.to_path_buf(),
            n_images: dims[0],
            n_labels: ldims[0],
        });
    }
    let mut hasher = Sha256::new();
    hasher.update(&images_raw);
    hasher.update(&labels_raw);
    Ok(Dataset {
        name: name.to_string(),
        item_shape: vec![1, dims[1], dims[2]],
        // Pixels scaled to [0, 1]: what the zoo models were trained on.
        values: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: Some(labels_v.iter().map(|&l| l as u32).collect()),
        sha256: hex(&hasher.finalize()),
        inputs_path: images.to_path_buf(),
        labels_path: Some(labels.to_path_buf()),
        parts: Vec::new(),
        texts: None,
    })
}

/// The header's dimensions and the data, of a raw or gzip-compressed IDX file. The data's size
/// is computed from the header with checked arithmetic and checked against the limit and the
/// file (a gzip stream is decompressed only up to the size the header declares).
fn parse(path: &Path, raw: &[u8], magic: u32, expected: &'static str) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let err = |reason: String| DataError::Idx { path: path.to_path_buf(), expected, reason };
    let gzip = raw.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read + '_> = if gzip { Box::new(GzDecoder::new(raw)) } else { Box::new(raw) };
    let gz_err = |e: std::io::Error| DataError::Gzip { path: path.to_path_buf(), reason: e.to_string() };
    let ndims = (magic & 0xff) as usize;
    let mut header = vec![0u8; 4 + 4 * ndims];
    let got = read_up_to(&mut reader, &mut header).map_err(gz_err)?;
    if got < 4 {
        return Err(err(format!("only {got} bytes, too short for a header")));
    }
    let found = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if found != magic {
        return Err(err(format!("magic number is 0x{found:08x}, expected 0x{magic:08x}")));
    }
    if got < header.len() {
        return Err(err("header is truncated".into()));
    }
    let dims: Vec<usize> =
        header[4..].chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    if dims[0] == 0 {
        return Err(err("its header declares 0 items; a dataset needs at least one".into()));
    }
    let want = super::checked_values(&dims).map_err(err)?;
    if !gzip && raw.len() - header.len() != want {
        return Err(err(format!(
            "header declares {:?} = {want} bytes of data but the file holds {}",
            dims,
            raw.len() - header.len()
        )));
    }
    // At most one byte more than declared is read, so a gzip bomb stops at the declared size.
    let mut data = Vec::new();
    reader.take(want as u64 + 1).read_to_end(&mut data).map_err(gz_err)?;
    if data.len() != want {
        let held = if data.len() > want { "more".to_string() } else { data.len().to_string() };
        return Err(err(format!("header declares {:?} = {want} bytes of data but the file holds {held}", dims)));
    }
    Ok((dims, data))
}

/// Fills `buf` as far as the stream goes; the count read.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// IDX bytes for u8 images `n × rows × cols` (used by tests and tools that write datasets).
pub fn encode_idx_images(rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let n = pixels.len() / (rows * cols);
    let mut out = IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [n, rows, cols] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// IDX bytes for u8 labels.
pub fn encode_idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = LABELS_MAGIC.to_be_bytes().to_vec();
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_and_magic_check() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("i.idx");
        let lab = dir.path().join("l.idx");
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        std::fs::write(&img, encode_idx_images(3, 4, &pixels)).unwrap();
        std::fs::write(&lab, encode_idx_labels(&[7, 1])).unwrap();
        let d = load_idx("t", &img, &lab).unwrap();
        assert_eq!((d.len(), d.item_shape.as_slice()), (2, &[1, 3, 4][..]));
        let back: Vec<u8> = d.values.iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(back, pixels);
        assert_eq!(d.labels, Some(vec![7, 1]));
        // Swapped files: the magic number catches it.
        let e = load_idx("t", &lab, &img).unwrap_err().to_string();
        assert!(e.contains("magic number is 0x00000801"), "{e}");
    }

    #[test]
    fn batch_is_scaled_and_padded() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("i.idx");
        let lab = dir.path().join("l.idx");
        std::fs::write(&img, encode_idx_images(1, 2, &[0, 255, 51, 102])).unwrap();
        std::fs::write(&lab, encode_idx_labels(&[0, 1])).unwrap();
        let d = load_idx("t", &img, &lab).unwrap();
        // A short batch is padded with copies of its last item.
        assert_eq!(d.batch_f32(1, 5, 3), vec![0.2, 0.4, 0.2, 0.4, 0.2, 0.4]);
        assert_eq!(d.batch_f32(0, 2, 3), vec![0.0, 1.0, 0.2, 0.4, 0.2, 0.4]);
        assert_eq!(d.batch_f32(0, 1, 1), vec![0.0, 1.0]);
    }
}
