//! NumPy arrays as datasets: a `.npy` file, or one array of an `.npz` (a zip of `.npy` files,
//! stored or deflated, as `np.savez` and `np.savez_compressed` write them). The first axis is
//! the items; values of any real dtype are converted to f32 as stored (no scaling).

use std::io::Read;
use std::path::Path;

use npyz::{DType, NpyFile, TypeChar};
use sha2::{Digest, Sha256};

use super::{DataError, Dataset};
use crate::hash::hex;

/// Loads `path` (`.npy`, or `.npz` with `array` naming the member, default its only one) and,
/// when given, the labels file.
pub fn load_npy(
    name: &str,
    path: &Path,
    array: Option<&str>,
    labels: Option<(&Path, Option<&str>)>,
) -> Result<Dataset, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Read { path: path.to_path_buf(), source })?;
    let err = |reason: String| DataError::Npy { path: path.to_path_buf(), reason };
    let npy_bytes = if raw.starts_with(b"PK") { npz_member(&raw, array).map_err(err)? } else { raw.clone() };
    let (shape, values) = read_f32(&npy_bytes).map_err(err)?;
    if shape.is_empty() {
        return Err(err("the array is a scalar; a dataset needs an items axis first".into()));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(err("the array holds NaN or infinite values; clean the data before benchmarking".into()));
    }
    let n = shape[0];
    let mut hasher = Sha256::new();
    hasher.update(&raw);
    let (labels_v, labels_path) = match labels {
        Some((lp, column)) => {
            let (l, bytes) = super::load_labels(lp, column)?;
            hasher.update(&bytes);
            if l.len() != n {
                return Err(DataError::LabelCount {
                    dataset: name.to_string(),
                    inputs: path.to_path_buf(),
                    labels: lp.to_path_buf(),
                    n_items: n,
                    n_labels: l.len(),
                });
            }
            (Some(l), Some(lp.to_path_buf()))
        }
        None => (None, None),
    };
    Ok(Dataset {
        name: name.to_string(),
        item_shape: shape[1..].to_vec(),
        values,
        labels: labels_v,
        sha256: hex(&hasher.finalize()),
        inputs_path: path.to_path_buf(),
        labels_path,
    })
}

/// The `.npy` bytes of one member of an `.npz` archive.
fn npz_member(raw: &[u8], array: Option<&str>) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(raw))
        .map_err(|e| format!("it is not a valid .npz (zip) archive ({e}); the file is truncated or corrupt"))?;
    let names: Vec<String> =
        zip.file_names().filter_map(|n| n.strip_suffix(".npy")).map(str::to_string).collect::<Vec<_>>();
    let member = match array {
        Some(a) if names.iter().any(|n| n == a) => a.to_string(),
        Some(a) => return Err(format!("it has no array \"{a}\"; its arrays are: {}", names.join(", "))),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(format!("it holds {} arrays ({}); name one with array = \"…\"", names.len(), names.join(", ")))
        }
    };
    let mut file = zip.by_name(&format!("{member}.npy")).map_err(|e| format!("array {member}: {e}"))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).map_err(|e| format!("array {member} cannot be read ({e}); the archive is corrupt"))?;
    Ok(out)
}

/// Shape and values (as f32) of an `.npy`; C order only.
pub(super) fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    let npy = NpyFile::new(bytes).map_err(|e| format!("it is not a valid .npy file ({e})"))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err("the array is in Fortran order; save it in C order (np.ascontiguousarray)".into());
    }
    let DType::Plain(ty) = npy.dtype() else {
        return Err("the array has a structured dtype; save a plain numeric array".into());
    };
    let short = |e: std::io::Error| format!("its data cannot be read ({e}); the file is truncated");
    let values: Vec<f32> = match (ty.type_char(), ty.size_field()) {
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map_err(short)?,
        (TypeChar::Float, 8) => npy.into_vec::<f64>().map_err(short)?.into_iter().map(|v| v as f32).collect(),
        (TypeChar::Float, 2) => {
            npy.into_vec::<u16>().map_err(short)?.into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect()
        }
        (TypeChar::Uint, 1) => npy.into_vec::<u8>().map_err(short)?.into_iter().map(f32::from).collect(),
        (TypeChar::Int, 1) => npy.into_vec::<i8>().map_err(short)?.into_iter().map(f32::from).collect(),
        (TypeChar::Uint, 2) => npy.into_vec::<u16>().map_err(short)?.into_iter().map(f32::from).collect(),
        (TypeChar::Int, 2) => npy.into_vec::<i16>().map_err(short)?.into_iter().map(f32::from).collect(),
        (TypeChar::Int, 4) => npy.into_vec::<i32>().map_err(short)?.into_iter().map(|v| v as f32).collect(),
        (TypeChar::Uint, 4) => npy.into_vec::<u32>().map_err(short)?.into_iter().map(|v| v as f32).collect(),
        (TypeChar::Int, 8) => npy.into_vec::<i64>().map_err(short)?.into_iter().map(|v| v as f32).collect(),
        (TypeChar::Uint, 8) => npy.into_vec::<u64>().map_err(short)?.into_iter().map(|v| v as f32).collect(),
        (TypeChar::Bool, 1) => npy.into_vec::<bool>().map_err(short)?.into_iter().map(|v| v as u8 as f32).collect(),
        _ => return Err(format!("dtype {ty} is not a real number type qbench reads")),
    };
    if values.len() != shape.iter().product::<usize>() {
        return Err(format!("the header declares shape {shape:?} but {} values were read", values.len()));
    }
    Ok((shape, values))
}

/// `.npy` bytes of a little-endian f32 array (for tests and tools that write datasets).
pub fn encode_npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_truncation() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = encode_npy_f32(&[2, 3, 4], &values);
        assert_eq!(bytes.len() % 16, 0, "header padding: data starts 64-byte aligned, 96 bytes of data");
        let (shape, back) = read_f32(&bytes).unwrap();
        assert_eq!((shape, back), (vec![2, 3, 4], values));
        let e = read_f32(&bytes[..bytes.len() - 5]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }
}
