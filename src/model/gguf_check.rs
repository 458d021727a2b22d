//! A bounds check of a GGUF file's header, before any GGUF reader allocates what it declares.
//!
//! A GGUF header is lengths and counts: string lengths, array lengths, tensor counts, tensor
//! dimensions and offsets. A reader that trusts them allocates a string of 2^60 bytes, or
//! multiplies dimensions past 2^64 into a tensor of 0 elements that passes the end-of-file
//! check and then reads 32 GiB. This walk checks every length against the bytes that remain
//! and every tensor's size (checked arithmetic) against the data section, allocating nothing.

use candle_core::quantized::GgmlDType;

/// GGML's limit on a tensor's dimensions.
const MAX_DIMS: u32 = 4;

/// Checks the whole header of the GGUF in `bytes` and that every tensor lies inside the file.
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let mut r = Reader { bytes, pos: 0, v1: false };
    if r.take(4)? != b"GGUF" {
        return Err("it does not start with the GGUF magic bytes".into());
    }
    let version = r.u32()?;
    if !(1..=3).contains(&version) {
        return Err(format!("it is GGUF version {version}; qbench reads versions 1 to 3"));
    }
    r.v1 = version == 1;
    let tensors = r.len()?;
    let kvs = r.len()?;
    let mut alignment = 32u64;
    for i in 0..kvs {
        let key = r.string().map_err(|e| format!("metadata entry {i}: {e}"))?;
        let ty = r.u32()?;
        if key == b"general.alignment" && ty == 4 {
            alignment = u64::from(r.u32()?);
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(format!("general.alignment is {alignment}; it must be a power of two"));
            }
        } else {
            r.skip_value(ty).map_err(|e| format!("metadata {}: {e}", String::from_utf8_lossy(key)))?;
        }
    }
    let mut spans = Vec::new();
    for i in 0..tensors {
        let name = String::from_utf8_lossy(r.string().map_err(|e| format!("tensor {i}: {e}"))?).into_owned();
        let n_dims = r.u32()?;
        if n_dims > MAX_DIMS {
            return Err(format!("tensor {name} declares {n_dims} dimensions; GGML tensors have at most {MAX_DIMS}"));
        }
        let mut elements = 1u64;
        for _ in 0..n_dims {
            let d = r.len()?;
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| format!("tensor {name}'s dimensions multiply past 2^64; the header is corrupt"))?;
        }
        if elements == 0 {
            return Err(format!("tensor {name} has a dimension of 0 (no elements); the header is corrupt"));
        }
        let ty = r.u32()?;
        let dtype = dtype_of(ty).ok_or_else(|| format!("tensor {name} has unknown GGML type {ty}"))?;
        let (block, size) = (dtype.block_size() as u64, dtype.type_size() as u64);
        if !elements.is_multiple_of(block) {
            return Err(format!("tensor {name} has {elements} elements, not whole blocks of {block} ({dtype:?})"));
        }
        let offset = r.u64()?;
        let end = (elements / block).checked_mul(size).and_then(|n| n.checked_add(offset));
        let end = end.ok_or_else(|| format!("tensor {name}'s size overflows; the header is corrupt"))?;
        spans.push((name, offset, end));
    }
    let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
    let data_len = (bytes.len() as u64).saturating_sub(data_start);
    for (name, offset, end) in spans {
        if end > data_len {
            return Err(format!(
                "tensor {name} spans bytes {} to {} but the file has {} bytes: the file is truncated or corrupt",
                data_start + offset,
                data_start.saturating_add(end),
                bytes.len()
            ));
        }
    }
    Ok(())
}

/// GGUF's tensor type ids, as ggml.h numbers them (those candle reads).
fn dtype_of(id: u32) -> Option<GgmlDType> {
    use GgmlDType::*;
    Some(match id {
        0 => F32,
        1 => F16,
        2 => Q4_0,
        3 => Q4_1,
        6 => Q5_0,
        7 => Q5_1,
        8 => Q8_0,
        9 => Q8_1,
        10 => Q2K,
        11 => Q3K,
        12 => Q4K,
        13 => Q5K,
        14 => Q6K,
        15 => Q8K,
        30 => BF16,
        _ => return None,
    })
}

/// Reads little-endian fields, every length checked against what remains.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// GGUF version 1 stores lengths and counts as u32.
    v1: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(format!(
                "the header declares {n} bytes at byte {} but only {left} remain; the file is truncated or corrupt",
                self.pos
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A length or a count: u64, or u32 in version 1.
    fn len(&mut self) -> Result<u64, String> {
        if self.v1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.len()?;
        self.take(n)
    }

    fn skip_value(&mut self, ty: u32) -> Result<(), String> {
        match ty {
            0 | 1 | 7 => self.take(1).map(drop),
            2 | 3 => self.take(2).map(drop),
            4..=6 => self.take(4).map(drop),
            10..=12 => self.take(8).map(drop),
            8 => self.string().map(drop),
            9 => {
                let elem = self.u32()?;
                let count = self.len()?;
                // Fixed-size elements are skipped at once; strings and nested arrays one by one,
                // each taking at least one byte, so a false count ends at the end of the file.
                match elem {
                    0 | 1 | 7 => self.take(count).map(drop),
                    2 | 3 => self.take(count.checked_mul(2).ok_or("array length overflows")?).map(drop),
                    4..=6 => self.take(count.checked_mul(4).ok_or("array length overflows")?).map(drop),
                    10..=12 => self.take(count.checked_mul(8).ok_or("array length overflows")?).map(drop),
                    8 | 9 => {
                        for _ in 0..count {
                            if self.pos == self.bytes.len() {
                                return Err(format!("an array declares {count} elements past the end of the file"));
                            }
                            self.skip_value(elem)?;
                        }
                        Ok(())
                    }
                    _ => Err(format!("an array has unknown element type {elem}")),
                }
            }
            _ => Err(format!("unknown value type {ty}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 with one metadata string and one tensor of `dims`, type `ty`, at `offset`,
    /// with `data` bytes of tensor data after the aligned header.
    fn gguf(dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        let s = |b: &mut Vec<u8>, x: &str| {
            b.extend((x.len() as u64).to_le_bytes());
            b.extend(x.as_bytes());
        };
        s(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "w.weight");
        b.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| b.extend(d.to_le_bytes()));
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        b.resize(b.len().div_ceil(32) * 32 + data, 0);
        b
    }

    #[test]
    fn sizes_are_checked_against_the_file_with_checked_arithmetic() {
        check(&gguf(&[4, 8], 0, 0, 128)).unwrap();
        // One byte short of the data section.
        let e = check(&gguf(&[4, 8], 0, 0, 127)).unwrap_err();
        assert!(e.contains("the file is truncated"), "{e}");
        // 2^32 × 2^32 × 4 wraps to 0 elements in unchecked arithmetic.
        let e = check(&gguf(&[1 << 32, 1 << 32, 4], 0, 0, 0)).unwrap_err();
        assert!(e.contains("multiply past 2^64"), "{e}");
        // An offset near 2^64 wraps the end.
        let e = check(&gguf(&[4], 0, u64::MAX - 1, 16)).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        let e = check(&gguf(&[33], 8, 0, 64)).unwrap_err();
        assert!(e.contains("not whole blocks of 32"), "{e}");
        let e = check(&gguf(&[4], 99, 0, 16)).unwrap_err();
        assert!(e.contains("unknown GGML type 99"), "{e}");
        let e = check(&gguf(&[1, 1, 1, 1, 1], 0, 0, 4)).unwrap_err();
        assert!(e.contains("5 dimensions"), "{e}");
        // A string length of 2^60 is refused without allocating it.
        let mut b = gguf(&[4], 0, 0, 16);
        b[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = check(&b).unwrap_err();
        assert!(e.contains("declares 1152921504606846976 bytes"), "{e}");
        assert!(check(b"GGUF").unwrap_err().contains("truncated"));
        assert!(check(b"GGML....").unwrap_err().contains("magic"));
    }
}
