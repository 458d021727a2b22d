//! Parameters as an artifact stores them: f32, or integers with scales and zero points,
//! written as safetensors (candle's artifact) and read back, dequantized, by candle.
//!
//! Layout of an integer parameter `<name>`: `<name>` (i8, the float tensor's shape),
//! `<name>.scale` (f32, one per block), and `<name>.zero_point` (i8, one per block) when
//! asymmetric. Blocks are consecutive runs of `len / scales` elements.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use super::ModelError;
use crate::quant::int::{dequantize_linear, QParams, QuantizedWeight};
use crate::zoo::ZooModelId;

/// One parameter as stored.
#[derive(Debug, Clone)]
pub enum Stored {
    F32 {
        shape: Vec<usize>,
        values: Vec<f32>,
    },
    Int(QuantizedWeight),
    /// IEEE f16 (`bf16: false`) or bfloat16 bit patterns.
    Half {
        bf16: bool,
        shape: Vec<usize>,
        bits: Vec<u16>,
    },
}

impl Stored {
    pub fn from_tensor(t: &Tensor) -> candle_core::Result<Stored> {
        Ok(Stored::F32 { shape: t.dims().to_vec(), values: t.flatten_all()?.to_vec1::<f32>()? })
    }

    /// Rounds f32 values to f16 or bf16 (round to nearest even, as `half` does).
    pub fn half(t: &Tensor, bf16: bool) -> candle_core::Result<Stored> {
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        let bits = if bf16 {
            v.iter().map(|&x| half::bf16::from_f32(x).to_bits()).collect()
        } else {
            v.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect()
        };
        Ok(Stored::Half { bf16, shape: t.dims().to_vec(), bits })
    }

    pub fn len(&self) -> usize {
        match self {
            Stored::F32 { values, .. } => values.len(),
            Stored::Int(q) => q.values.len(),
            Stored::Half { bits, .. } => bits.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored bits per element, block parameters included.
    pub fn bits_per_weight(&self) -> f64 {
        match self {
            Stored::F32 { .. } => 32.0,
            Stored::Int(q) => q.bits_per_weight(),
            Stored::Half { .. } => 16.0,
        }
    }

    /// Short description for records, e.g. `i8 per-channel sym` or `f32`.
    pub fn describe(&self) -> String {
        match self {
            Stored::F32 { .. } => "f32".into(),
            Stored::Half { bf16, .. } => if *bf16 { "bf16" } else { "f16" }.into(),
            Stored::Int(q) => {
                let g = match q.granularity {
                    crate::quant::int::Granularity::PerTensor => "per-tensor".to_string(),
                    crate::quant::int::Granularity::PerChannel => "per-channel".to_string(),
                    crate::quant::int::Granularity::Group(g) => format!("group {g}"),
                };
                format!("{:?} {g} {}", q.ty, if q.symmetric { "sym" } else { "asym" }).to_lowercase()
            }
        }
    }
}

/// Parameters by name, in a stable order.
pub type StoredParams = BTreeMap<String, Stored>;

/// `name=storage` for each parameter, joined: the record's `weight_storage`.
pub fn describe_storage(params: &StoredParams) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", v.describe())).collect::<Vec<_>>().join(", ")
}

/// Effective bits per parameter over the whole model, scales and zero points included.
pub fn bits_per_weight(params: &StoredParams) -> f64 {
    let (bits, n) =
        params.values().fold((0.0, 0usize), |(b, n), p| (b + p.bits_per_weight() * p.len() as f64, n + p.len()));
    bits / n.max(1) as f64
}

/// Serializes parameters as safetensors (integers as i8; only 8-bit types are written).
pub fn to_safetensors(params: &StoredParams, scheme: &str) -> Result<Vec<u8>, String> {
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, p) in params {
        match p {
            Stored::F32 { shape, values } => buffers.push((name.clone(), Dtype::F32, shape.clone(), f32_bytes(values))),
            Stored::Half { bf16, shape, bits } => {
                let dt = if *bf16 { Dtype::BF16 } else { Dtype::F16 };
                buffers.push((name.clone(), dt, shape.clone(), half_bytes(bits)))
            }
            Stored::Int(q) => {
                if q.ty.bits() != 8 || q.ty.range().0 >= 0 {
                    return Err(format!("{name}: only i8 integer storage is written to safetensors, not {:?}", q.ty));
                }
                buffers.push((
                    name.clone(),
                    Dtype::I8,
                    q.shape.clone(),
                    q.values.iter().map(|&v| v as i8 as u8).collect(),
                ));
                let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                buffers.push((format!("{name}.scale"), Dtype::F32, vec![scales.len()], f32_bytes(&scales)));
                if !q.symmetric {
                    let zps: Vec<u8> = q.params.iter().map(|p| p.zero_point as i8 as u8).collect();
                    buffers.push((format!("{name}.zero_point"), Dtype::I8, vec![zps.len()], zps));
                }
            }
        }
    }
    let views = buffers
        .iter()
        .map(|(n, dt, shape, bytes)| TensorView::new(*dt, shape.clone(), bytes).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let meta = HashMap::from([("qbench.scheme".to_string(), scheme.to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| e.to_string())
}

/// Reads a zoo model's parameters from safetensors, shapes checked against the architecture.
/// f16 stays f16 (candle runs it); bf16 is widened to f32 (candle 0.11 has no bf16 matmul
/// on the CPU); i8 is dequantized with its scales and zero points to f32.
pub fn load_tensors(path: &Path, zoo: ZooModelId) -> Result<HashMap<String, Tensor>, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Read { path: path.to_path_buf(), source })?;
    let corrupt = |reason: String| ModelError::Corrupt { path: path.to_path_buf(), reason };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, expected) in zoo.parameters() {
        let view = st.tensor(&name).map_err(|_| ModelError::Missing {
            path: path.to_path_buf(),
            zoo: zoo.name(),
            tensor: name.clone(),
            expected: expected.clone(),
        })?;
        if view.shape() != expected.as_slice()
            || !matches!(view.dtype(), Dtype::F32 | Dtype::I8 | Dtype::F16 | Dtype::BF16)
        {
            return Err(ModelError::Shape {
                path: path.to_path_buf(),
                zoo: zoo.name(),
                tensor: name,
                found: format!("{:?} {:?}", view.dtype(), view.shape()),
                expected: format!("F32, F16, BF16 or I8 {expected:?}"),
            });
        }
        if matches!(view.dtype(), Dtype::F16 | Dtype::BF16) {
            let bits: Vec<u16> = view.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            let t = if view.dtype() == Dtype::F16 {
                let v: Vec<half::f16> = bits.iter().map(|&b| half::f16::from_bits(b)).collect();
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor: name });
                }
                Tensor::from_vec(v, expected, &Device::Cpu)
            } else {
                let v: Vec<f32> = bits.iter().map(|&b| half::bf16::from_bits(b).to_f32()).collect();
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor: name });
                }
                Tensor::from_vec(v, expected, &Device::Cpu)
            };
            out.insert(name, t.map_err(|e| corrupt(e.to_string()))?);
            continue;
        }
        let values: Vec<f32> = if view.dtype() == Dtype::F32 {
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            let scale = st
                .tensor(&format!("{name}.scale"))
                .map_err(|_| corrupt(format!("{name} is i8 but {name}.scale is missing")))?;
            let scales: Vec<f32> =
                scale.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let zps: Vec<i32> = match st.tensor(&format!("{name}.zero_point")) {
                Ok(z) => z.data().iter().map(|&b| b as i8 as i32).collect(),
                Err(_) => vec![0; scales.len()],
            };
            let n = view.data().len();
            if scales.is_empty() || n % scales.len() != 0 || zps.len() != scales.len() {
                return Err(corrupt(format!(
                    "{name}: {} scales and {} zero points do not split {n} values into equal blocks",
                    scales.len(),
                    zps.len()
                )));
            }
            let block = n / scales.len();
            view.data()
                .iter()
                .enumerate()
                .map(|(i, &q)| {
                    dequantize_linear(q as i8 as i32, QParams { scale: scales[i / block], zero_point: zps[i / block] })
                })
                .collect()
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor: name });
        }
        let t = Tensor::from_vec(values, expected, &Device::Cpu).map_err(|e| corrupt(e.to_string()))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Little-endian bytes of f32 values (safetensors and ONNX raw data).
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes of f16/bf16 bit patterns.
pub(crate) fn half_bytes(bits: &[u16]) -> Vec<u8> {
    bits.iter().flat_map(|b| b.to_le_bytes()).collect()
}
