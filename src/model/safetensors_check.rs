//! A check of a safetensors file's header that names the tensor at fault, before a reader
//! (candle's, or the safetensors crate's, whose messages name none) takes the file.

/// The largest JSON header qbench reads (bytes); the format's own readers stop at 100 MB.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Checks the header of the safetensors file in `bytes`: its length against the file, and for
/// each tensor a known dtype, a shape whose size (checked arithmetic) is its byte span, and a
/// span inside the data that overlaps no other tensor's.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
        return Err(format!("it is {} bytes, too short for a safetensors header", bytes.len()));
    };
    let rest = bytes.len() as u64 - 8;
    if len > rest || len > MAX_HEADER_BYTES {
        return Err(format!(
            "its header declares {len} bytes but the file holds {rest} after the length (and a header is at most {MAX_HEADER_BYTES} bytes); the file is truncated or corrupt"
        ));
    }
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + len as usize])
        .map_err(|e| format!("its header is not a JSON object of tensors ({e})"))?;
    let data_len = rest - len;
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: String| format!("tensor {name}: {what}; the file is truncated or corrupt");
        let width: u64 = match info.get("dtype").and_then(|d| d.as_str()) {
            Some("F64" | "I64" | "U64") => 8,
            Some("F32" | "I32" | "U32") => 4,
            Some("F16" | "BF16" | "I16" | "U16") => 2,
            Some("I8" | "U8" | "BOOL" | "F8_E5M2" | "F8_E4M3") => 1,
            Some(other) => return Err(bad(format!("unknown dtype \"{other}\""))),
            None => return Err(bad("no dtype".into())),
        };
        let shape = info.get("shape").and_then(|s| s.as_array()).ok_or_else(|| bad("no shape".into()))?;
        let mut count: u64 = 1;
        for d in shape {
            let d = d.as_u64().ok_or_else(|| bad(format!("shape {shape:?} is not a list of sizes")))?;
            count = count.checked_mul(d).ok_or_else(|| bad(format!("shape {shape:?} multiplies past 2^64")))?;
        }
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .map(|o| o.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        let [begin, end] = offsets[..] else { return Err(bad("data_offsets is not [begin, end]".into())) };
        let size = count.checked_mul(width).ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
        if begin > end || end > data_len || end - begin != size {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] do not hold its shape {shape:?} ({size} bytes) within the {data_len} bytes of data"
            )));
        }
        spans.push((begin, end, name));
    }
    spans.sort();
    if let Some(w) = spans.windows(2).find(|w| w[0].1 > w[1].0) {
        return Err(format!("tensors {} and {} overlap in the data; the file is corrupt", w[0].2, w[1].2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    #[test]
    fn the_tensor_at_fault_is_named() {
        check(&file(r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#, 24)).unwrap();
        let e = check(&file(r#"{"fc1.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,240]}}"#, 24)).unwrap_err();
        assert!(e.contains("tensor fc1.weight: data_offsets [0, 240]"), "{e}");
        let e = check(&file(r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}}"#, 8))
            .unwrap_err();
        assert!(e.contains("tensor w: shape") && e.contains("2^64"), "{e}");
        let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
        assert!(check(&file(h, 6)).unwrap_err().contains("tensors a and b overlap"));
        assert!(check(&file(r#"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#, 1))
            .unwrap_err()
            .contains("unknown dtype"));
        let mut b = file("{}", 0);
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check(&b).unwrap_err().contains("header declares"));
    }
}
