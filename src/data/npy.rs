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
    let arrays: Vec<&str> = array.into_iter().collect();
    load_npy_arrays(name, path, &arrays, labels)
}

/// As [`load_npy`], with several members of an `.npz` (a model with several inputs): each item is
/// their items concatenated, in order, and `Dataset::parts` holds their item shapes.
pub fn load_npy_arrays(
    name: &str,
    path: &Path,
    arrays: &[&str],
    labels: Option<(&Path, Option<&str>)>,
) -> Result<Dataset, DataError> {
    let raw = super::read_file(path)?;
    let err = |reason: String| DataError::Npy { path: path.to_path_buf(), reason };
    let members: Vec<Vec<u8>> = match (raw.starts_with(b"PK"), arrays) {
        (true, []) => vec![npz_member(&raw, None).map_err(err)?],
        (true, _) => arrays.iter().map(|a| npz_member(&raw, Some(a))).collect::<Result<_, _>>().map_err(err)?,
        (false, [] | [_]) => vec![raw.clone()],
        (false, _) => return Err(err("a .npy file holds one array; several arrays need an .npz (np.savez)".into())),
    };
    let mut read = Vec::with_capacity(members.len());
    for (i, bytes) in members.iter().enumerate() {
        let what = arrays.get(i).map_or(String::from("the array"), |a| format!("array \"{a}\""));
        let (shape, values) = read_f32(bytes).map_err(err)?;
        if shape.is_empty() {
            return Err(err(format!("{what} is a scalar; a dataset needs an items axis first")));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(err(format!("{what} holds NaN or infinite values; clean the data before benchmarking")));
        }
        if let Some((first, _)) = read.first() {
            let first: &Vec<usize> = first;
            if first[0] != shape[0] {
                return Err(err(format!(
                    "{what} has {} items, \"{}\" {}; every array needs the same first axis",
                    shape[0], arrays[0], first[0]
                )));
            }
        }
        read.push((shape, values));
    }
    let (shape, values, parts) = if read.len() == 1 {
        let (shape, values) = read.remove(0);
        (shape, values, Vec::new())
    } else {
        let n = read[0].0[0];
        let sizes: Vec<usize> = read.iter().map(|(s, _)| s[1..].iter().product()).collect();
        let total: usize = sizes.iter().sum();
        let mut values = Vec::with_capacity(n * total);
        for item in 0..n {
            for ((_, v), size) in read.iter().zip(&sizes) {
                values.extend_from_slice(&v[item * size..(item + 1) * size]);
            }
        }
        (vec![n, total], values, read.iter().map(|(s, _)| s[1..].to_vec()).collect())
    };
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
        parts,
        texts: None,
    })
}

/// The `.npy` bytes of one member of an `.npz` archive.
fn npz_member(raw: &[u8], array: Option<&str>) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(raw))
        .map_err(|e| format!("it is not a valid .npz (zip) archive ({e}); the file is truncated or corrupt"))?;
    let names: Vec<String> =
        zip.file_names().filter_map(Result::ok).filter_map(|n| n.strip_suffix(".npy").map(str::to_string)).collect();
    // At most 20 names in a message, so a long archive's error stays a line.
    let listed = match names.len() {
        n if n > 20 => format!("{}, … ({n} in all)", names[..20].join(", ")),
        _ => names.join(", "),
    };
    let member = match array {
        Some(a) if names.iter().any(|n| n == a) => a.to_string(),
        Some(a) => return Err(format!("it has no array \"{a}\"; its arrays are: {listed}")),
        None if names.len() == 1 => names[0].clone(),
        None => return Err(format!("it holds {} arrays ({listed}); name one with array = \"…\"", names.len())),
    };
    let file = zip.by_name(&format!("{member}.npy")).map_err(|e| format!("array {member}: {e}"))?;
    let declared = file.size();
    if declared > super::MAX_DATASET_FILE_BYTES {
        return Err(format!(
            "array {member} declares {declared} bytes uncompressed, more than qbench's {}-byte limit for a dataset file",
            super::MAX_DATASET_FILE_BYTES
        ));
    }
    // Decompressed only up to the size the archive declares (a zip bomb stops there).
    let mut out = Vec::new();
    file.take(declared + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("array {member} cannot be read ({e}); the archive is corrupt"))?;
    if out.len() as u64 != declared {
        return Err(format!(
            "array {member} holds more data than the archive declares ({declared} bytes); the archive is corrupt"
        ));
    }
    Ok(out)
}

/// Shape and values (as f32) of an `.npy`; C order only.
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    // npyz's header parser takes exponential time on nested brackets: a NumPy header is one
    // flat dict with one shape tuple.
    let header_len = match bytes.get(6) {
        Some(1) => bytes.get(8..10).map(|b| (10usize, u16::from_le_bytes([b[0], b[1]]) as usize)),
        _ => bytes.get(8..12).map(|b| (12, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)),
    };
    let header = header_len.and_then(|(start, len)| bytes.get(start..start.saturating_add(len).min(bytes.len())));
    if let Some(header) = header.filter(|_| bytes.starts_with(b"\x93NUMPY")) {
        let nested = |open: u8| header.iter().filter(|&&b| b == open).count() > 1;
        if nested(b'{') || nested(b'(') || nested(b'[') {
            return Err(
                "its header is not a NumPy header (one flat dict with one shape tuple); the file is corrupt".into()
            );
        }
    }
    // npyz multiplies the shape unchecked (a panic, or a wrapped size): check it first.
    let data_start = match header_shape(bytes) {
        Some(parsed) => {
            let (start, shape) = parsed?;
            super::checked_values(&shape)?;
            Some(start)
        }
        None => None,
    };
    let npy = NpyFile::new(bytes).map_err(|e| format!("it is not a valid .npy file ({e})"))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err("the array is in Fortran order; save it in C order (np.ascontiguousarray)".into());
    }
    let DType::Plain(ty) = npy.dtype() else {
        return Err("the array has a structured dtype; save a plain numeric array".into());
    };
    // The header's sizes, checked before `into_vec` allocates them.
    let count = super::checked_values(&shape)?;
    let need = count.checked_mul(ty.num_bytes().unwrap_or(1)).filter(|&n| n <= bytes.len());
    if need.is_none() {
        return Err(format!(
            "the header declares shape {shape:?} ({count} values of {ty}) but the file holds only {} bytes; the file is truncated",
            bytes.len()
        ));
    }
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
    // Bytes after the declared data: the header's shape does not describe the file.
    if let (Some(start), Some(width)) = (data_start, ty.num_bytes()) {
        let extra = bytes.len().saturating_sub(start + values.len() * width);
        if extra > 0 {
            return Err(format!(
                "the file holds {extra} bytes after the {} values its header declares (shape {shape:?}); the header does not describe the data",
                values.len()
            ));
        }
    }
    Ok((shape, values))
}

/// The `shape` of an `.npy` header, read without trusting it; `None` when the header is not
/// one this reads (then npyz's own parser reports what is wrong).
fn header_shape(bytes: &[u8]) -> Option<Result<(usize, Vec<usize>), String>> {
    let rest = bytes.strip_prefix(b"\x93NUMPY")?;
    let (len, start): (usize, usize) = match rest.first()? {
        1 => (u16::from_le_bytes([*rest.get(2)?, *rest.get(3)?]) as usize, 10),
        _ => (u32::from_le_bytes(rest.get(2..6)?.try_into().ok()?) as usize, 12),
    };
    let header = std::str::from_utf8(bytes.get(start..start.checked_add(len)?)?).ok()?;
    let after = &header[header.find("'shape'")? + "'shape'".len()..];
    let tuple = &after[after.find('(')? + 1..];
    let tuple = &tuple[..tuple.find(')')?];
    let dims: Result<Vec<usize>, _> = tuple
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>())
        .collect();
    Some(dims.map(|d| (start + len, d)).map_err(|_| {
        format!("its header's shape ({tuple}) is not a tuple of sizes that fit in 64 bits; the header is corrupt")
    }))
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
