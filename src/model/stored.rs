//! Parameters as an artifact stores them: f32, or integers with scales and zero points,
//! written as safetensors (candle's artifact) and read back, dequantized, by candle.
//!
//! Layout of an 8-bit integer parameter `<name>`: `<name>` (i8, the float tensor's shape),
//! `<name>.scale` (f32, one per block), and `<name>.zero_point` (i8, one per block) when
//! asymmetric. Blocks are consecutive runs of `len / scales` elements.
//!
//! A 4-bit parameter is `<name>.int4` (u8, two values a byte, the first in the low nibble,
//! as ONNX packs INT4), with `<name>.scale` and, when asymmetric (u4), `<name>.zero_point` (u8).
//! Nibbles hold `q + 8` for symmetric i4 and `q` for u4.
//!
//! A layer whose input is quantized carries `<layer>.input_scale` (f32) and
//! `<layer>.input_zero_point` (u8) when static, and a one-byte marker `<layer>.input_dynamic`
//! when dynamic. (Tensors, not metadata: safetensors keeps metadata in a hash map, whose order
//! would make two exports of the same variant differ.)

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use super::qformat::{dequantize_linear, QParams, QuantizedWeight};
use super::ModelError;
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
                    super::qformat::Granularity::PerTensor => "per-tensor".to_string(),
                    super::qformat::Granularity::PerChannel => "per-channel".to_string(),
                    super::qformat::Granularity::Group(g) => format!("group {g}"),
                };
                format!("{:?} {g} {}", q.ty, if q.symmetric { "sym" } else { "asym" }).to_lowercase()
            }
        }
    }
}

/// Parameters by name, in a stable order.
pub type StoredParams = BTreeMap<String, Stored>;

/// How a layer's activations are quantized around its integer kernel (u8, asymmetric, per
/// tensor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputQuant {
    /// The input, with a scale and zero point from each batch (ONNX `DynamicQuantizeLinear`);
    /// the output stays f32, as onnxruntime's `quantize_dynamic` leaves it.
    Dynamic,
    /// Input and output with fixed scales and zero points from calibration, as onnxruntime's
    /// `quantize_static` quantizes every tensor around a quantized op (`QLinearConv` requantizes
    /// its output): the layer's output (bias included) is quantized with `output`.
    Static { input: QParams, output: QParams },
}

/// Quantized inputs by layer name.
pub type InputQuants = BTreeMap<String, InputQuant>;

/// Packs integers of a 4-bit type as ONNX does: two per byte, the first in the low nibble;
/// each nibble holds `q − qmin`.
pub fn pack_int4(q: &QuantizedWeight) -> Vec<u8> {
    // `q − qmin` on the stored bytes (two's complement): a wrapping subtraction.
    let qmin = q.ty.range().0 as u8;
    let nibble = |b: u8| b.wrapping_sub(qmin) & 0x0f;
    let pairs = q.values.chunks_exact(2);
    let last = pairs.remainder().first().map(|&b| nibble(b));
    pairs.map(|c| nibble(c[0]) | (nibble(c[1]) << 4)).chain(last).collect()
}

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

/// Why parameters could not be written as safetensors.
#[derive(Debug, thiserror::Error)]
pub enum SerializeError {
    #[error("{tensor}: only i8 and 4-bit integer storage is written, not {ty}")]
    IntType { tensor: String, ty: String },
    #[error("{layer}: an activation zero point {zero_point} is not a u8")]
    InputZeroPoint { layer: String, zero_point: i32 },
    #[error("the safetensors writer refused the tensors")]
    Safetensors(#[from] safetensors::SafeTensorError),
}

/// Serializes parameters (and input quantization) as safetensors: i8 for 8-bit integers,
/// packed nibbles for 4-bit ones.
pub fn to_safetensors(params: &StoredParams, inputs: &InputQuants, scheme: &str) -> Result<Vec<u8>, SerializeError> {
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, p) in params {
        match p {
            Stored::F32 { shape, values } => buffers.push((name.clone(), Dtype::F32, shape.clone(), f32_bytes(values))),
            Stored::Half { bf16, shape, bits } => {
                let dt = if *bf16 { Dtype::BF16 } else { Dtype::F16 };
                buffers.push((name.clone(), dt, shape.clone(), half_bytes(bits)))
            }
            Stored::Int(q) if q.ty.bits() == 4 => {
                // Packed per row, so the file keeps the row count: [rows, bytes per row].
                let rows = q.shape.first().copied().unwrap_or(1).max(1);
                let packed = pack_int4(q);
                let shape = if packed.len().is_multiple_of(rows) {
                    vec![rows, packed.len() / rows]
                } else {
                    vec![packed.len()]
                };
                buffers.push((format!("{name}.int4"), Dtype::U8, shape, packed));
                let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                buffers.push((format!("{name}.scale"), Dtype::F32, vec![scales.len()], f32_bytes(&scales)));
                if !q.symmetric {
                    let zps: Vec<u8> = q.params.iter().map(|p| (p.zero_point - q.ty.range().0) as u8).collect();
                    buffers.push((format!("{name}.zero_point"), Dtype::U8, vec![zps.len()], zps));
                }
            }
            Stored::Int(q) => {
                if q.ty.bits() != 8 || q.ty.range().0 >= 0 {
                    return Err(SerializeError::IntType { tensor: name.clone(), ty: format!("{:?}", q.ty) });
                }
                buffers.push((name.clone(), Dtype::I8, q.shape.clone(), q.values.clone()));
                let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                buffers.push((format!("{name}.scale"), Dtype::F32, vec![scales.len()], f32_bytes(&scales)));
                if !q.symmetric {
                    let zps: Vec<u8> = q.params.iter().map(|p| p.zero_point as i8 as u8).collect();
                    buffers.push((format!("{name}.zero_point"), Dtype::I8, vec![zps.len()], zps));
                }
            }
        }
    }
    for (layer, iq) in inputs {
        match iq {
            InputQuant::Dynamic => buffers.push((format!("{layer}.input_dynamic"), Dtype::U8, vec![1], vec![1])),
            InputQuant::Static { input, output } => {
                for (side, p) in [("input", input), ("output", output)] {
                    buffers.push((format!("{layer}.{side}_scale"), Dtype::F32, vec![1], f32_bytes(&[p.scale])));
                    let zp = u8::try_from(p.zero_point).map_err(|_| SerializeError::InputZeroPoint {
                        layer: layer.clone(),
                        zero_point: p.zero_point,
                    })?;
                    buffers.push((format!("{layer}.{side}_zero_point"), Dtype::U8, vec![1], vec![zp]));
                }
            }
        }
    }
    let views = buffers
        .iter()
        .map(|(n, dt, shape, bytes)| TensorView::new(*dt, shape.clone(), bytes).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([("qbench.scheme".to_string(), scheme.to_string())]);
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// Reads a zoo model's parameters from safetensors, shapes checked against the architecture.
/// f16 and bf16 stay as stored (the engine decides what it computes them in); i8 and packed
/// 4-bit integers are dequantized with their scales and zero points.
pub fn load_tensors(path: &Path, zoo: ZooModelId) -> Result<HashMap<String, Tensor>, ModelError> {
    load_model(path, zoo).map(|(t, _)| t)
}

/// [`load_tensors`], plus how each layer's input is quantized.
pub fn load_model(path: &Path, zoo: ZooModelId) -> Result<(HashMap<String, Tensor>, InputQuants), ModelError> {
    let bytes = crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file")?;
    let corrupt = |reason: String| ModelError::Corrupt { path: path.to_path_buf(), reason };
    super::safetensors_check::check(&bytes).map_err(corrupt)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, expected) in zoo.parameters() {
        let shape_error = |found: String| ModelError::Shape {
            path: path.to_path_buf(),
            zoo: zoo.name(),
            tensor: name.clone(),
            found,
            expected: format!("F32, F16, BF16 or I8 {expected:?}"),
        };
        if let Ok(view) = st.tensor(&name) {
            if view.shape() != expected.as_slice()
                || !matches!(view.dtype(), Dtype::F32 | Dtype::I8 | Dtype::F16 | Dtype::BF16)
            {
                return Err(shape_error(format!("{:?} {:?}", view.dtype(), view.shape())));
            }
        }
        match read_param(&st, &name, Some(&expected)) {
            Ok(Some(t)) => {
                out.insert(name, t);
            }
            Ok(None) => {
                return Err(ModelError::Missing {
                    path: path.to_path_buf(),
                    zoo: zoo.name(),
                    tensor: name.clone(),
                    expected: expected.clone(),
                })
            }
            Err(ParamError::NonFinite) => return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor: name }),
            Err(ParamError::Corrupt(reason)) => return Err(corrupt(reason)),
        }
    }
    let mut inputs = InputQuants::new();
    for (layer, _) in zoo.weighted_layers() {
        if st.tensor(&format!("{layer}.input_dynamic")).is_ok() {
            inputs.insert(layer.to_string(), InputQuant::Dynamic);
        }
        let params = |side: &str| -> Result<Option<QParams>, ModelError> {
            let Ok(scale) = st.tensor(&format!("{layer}.{side}_scale")) else { return Ok(None) };
            let zp = st
                .tensor(&format!("{layer}.{side}_zero_point"))
                .map_err(|_| corrupt(format!("{layer}.{side}_scale has no {layer}.{side}_zero_point")))?;
            let (scale, zp) = (f32s(scale.data()), zp.data());
            if scale.len() != 1 || zp.len() != 1 || !(scale[0].is_finite() && scale[0] > 0.0) {
                return Err(corrupt(format!(
                    "{layer}: {side} scale {scale:?} / zero point {zp:?} are not one positive scale and one u8"
                )));
            }
            Ok(Some(QParams { scale: scale[0], zero_point: zp[0] as i32 }))
        };
        match (params("input")?, params("output")?) {
            (Some(input), Some(output)) => {
                inputs.insert(layer.to_string(), InputQuant::Static { input, output });
            }
            (None, None) => {}
            _ => {
                return Err(corrupt(format!(
                    "{layer}: a statically quantized layer needs both input_scale and output_scale"
                )))
            }
        }
    }
    Ok((out, inputs))
}

/// Why a stored parameter cannot be read.
enum ParamError {
    NonFinite,
    Corrupt(String),
}

/// Every parameter of a safetensors artifact written by [`to_safetensors`], as candle tensors:
/// f16 and bf16 kept, integers dequantized (a 4-bit tensor's shape comes from its packed
/// `[rows, bytes per row]` layout). For checkpoints whose architecture lives elsewhere (BERT).
pub fn load_all(path: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    let bytes = crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file")?;
    let corrupt = |reason: String| ModelError::Corrupt { path: path.to_path_buf(), reason };
    super::safetensors_check::check(&bytes).map_err(corrupt)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = HashMap::new();
    for name in st.names() {
        let name: &str = name;
        let stored_as = st.tensor(name).map(|v| v.dtype()).ok();
        // Integer buffers other than ours (e.g. BERT's int64 position_ids) are not parameters.
        if !name.ends_with(".int4") && !matches!(stored_as, Some(Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::I8)) {
            continue;
        }
        let base = match name.strip_suffix(".int4") {
            Some(b) => b,
            None if [".scale", ".zero_point", ".input_scale", ".input_zero_point", ".input_dynamic"]
                .iter()
                .any(|s| name.ends_with(s)) =>
            {
                continue
            }
            None => name,
        };
        match read_param(&st, base, None) {
            Ok(Some(t)) => {
                out.insert(base.to_string(), t);
            }
            Ok(None) => return Err(corrupt(format!("{base} cannot be read"))),
            Err(ParamError::NonFinite) => {
                return Err(ModelError::NonFinite { path: path.to_path_buf(), tensor: base.to_string() })
            }
            Err(ParamError::Corrupt(reason)) => return Err(corrupt(reason)),
        }
    }
    Ok(out)
}

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// One parameter in any of the stored forms; `None` when the file does not hold it. `expected`
/// is its shape when the architecture knows it.
fn read_param(st: &SafeTensors, name: &str, expected: Option<&[usize]>) -> Result<Option<Tensor>, ParamError> {
    let corrupt = |reason: String| ParamError::Corrupt(reason);
    let tensor = |values: Vec<f32>, shape: Vec<usize>| {
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ParamError::NonFinite);
        }
        Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| corrupt(e.to_string()))
    };
    if let Ok(packed) = st.tensor(&format!("{name}.int4")) {
        let shape = match (expected, packed.shape()) {
            (Some(e), _) => e.to_vec(),
            (None, &[rows, bytes]) => vec![rows, bytes * 2],
            (None, other) => {
                return Err(corrupt(format!(
                    "{name}.int4 has shape {other:?}; the packed layout is [rows, bytes per row]"
                )))
            }
        };
        let n: usize = shape.iter().product();
        let scales = f32s(
            st.tensor(&format!("{name}.scale"))
                .map_err(|_| corrupt(format!("{name} is int4 but {name}.scale is missing")))?
                .data(),
        );
        // Symmetric i4 stores q + 8 and has no zero point; u4 stores q and its zero points.
        let (offset, zps): (i32, Vec<i32>) = match st.tensor(&format!("{name}.zero_point")) {
            Ok(z) => (0, z.data().iter().map(|&b| b as i32).collect()),
            Err(_) => (-8, vec![0; scales.len()]),
        };
        let data = packed.data();
        if data.len() != n.div_ceil(2)
            || scales.is_empty()
            || !n.is_multiple_of(scales.len())
            || zps.len() != scales.len()
        {
            return Err(corrupt(format!(
                "{name}: {} packed bytes, {} scales and {} zero points do not describe {n} values of shape {shape:?}",
                data.len(),
                scales.len(),
                zps.len()
            )));
        }
        let block = n / scales.len();
        let values = (0..n)
            .map(|i| {
                let nibble = (data[i / 2] >> (4 * (i % 2))) & 0x0f;
                let p = QParams { scale: scales[i / block], zero_point: zps[i / block] };
                dequantize_linear(nibble as i32 + offset, p)
            })
            .collect();
        return tensor(values, shape).map(Some);
    }
    let Ok(view) = st.tensor(name) else { return Ok(None) };
    let shape = expected.map_or_else(|| view.shape().to_vec(), <[usize]>::to_vec);
    let n: usize = shape.iter().product();
    let values = match view.dtype() {
        Dtype::F16 => {
            let v: Vec<half::f16> =
                view.data().chunks_exact(2).map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(ParamError::NonFinite);
            }
            return Tensor::from_vec(v, shape, &Device::Cpu).map(Some).map_err(|e| corrupt(e.to_string()));
        }
        Dtype::F32 => f32s(view.data()),
        Dtype::BF16 => {
            let v: Vec<half::bf16> =
                view.data().chunks_exact(2).map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(ParamError::NonFinite);
            }
            return Tensor::from_vec(v, shape, &Device::Cpu).map(Some).map_err(|e| corrupt(e.to_string()));
        }
        Dtype::I8 => {
            let scales = f32s(
                st.tensor(&format!("{name}.scale"))
                    .map_err(|_| corrupt(format!("{name} is i8 but {name}.scale is missing")))?
                    .data(),
            );
            let zps: Vec<i32> = match st.tensor(&format!("{name}.zero_point")) {
                Ok(z) => z.data().iter().map(|&b| b as i8 as i32).collect(),
                Err(_) => vec![0; scales.len()],
            };
            if scales.is_empty() || !n.is_multiple_of(scales.len()) || zps.len() != scales.len() {
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
                    let p = QParams { scale: scales[i / block], zero_point: zps[i / block] };
                    dequantize_linear(q as i8 as i32, p)
                })
                .collect()
        }
        other => {
            return Err(corrupt(format!("{name} is {other:?}; qbench stores f32, f16, bf16, i8 and packed 4-bit")))
        }
    };
    tensor(values, shape).map(Some)
}

/// Little-endian bytes of f32 values (safetensors and ONNX raw data).
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes of f16/bf16 bit patterns.
pub(crate) fn half_bytes(bits: &[u16]) -> Vec<u8> {
    bits.iter().flat_map(|b| b.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::qformat::{Granularity, IntType};

    #[test]
    fn int4_packs_low_nibble_first_and_round_trips_through_safetensors() {
        // ONNX INT4 packing: element 0 in bits 0–3 of byte 0, element 1 in bits 4–7.
        let q = QuantizedWeight {
            shape: vec![1, 4],
            ty: IntType::I4,
            symmetric: true,
            granularity: Granularity::Group(4),
            values: IntType::I4.encode(&[-8, 7, 0, -1]),
            params: vec![QParams { scale: 0.5, zero_point: 0 }],
        };
        assert_eq!(pack_int4(&q), vec![0x0f << 4, 0x7 << 4 | 0x8]);

        // Every zoo weight quantized to i4 (sym) and u4 (asym) comes back exactly as dequantized.
        let zoo = ZooModelId::Mlp;
        let mut params = StoredParams::new();
        let mut want = HashMap::new();
        for (i, (name, shape)) in zoo.parameters().into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|k| ((k * 7919 + i) % 997) as f32 / 997.0 - 0.3).collect();
            let stored = if name.ends_with(".weight") {
                // Integers over the whole range of the type, one scale (and zero point) a group.
                let (ty, sym) = if i % 4 == 0 { (IntType::I4, true) } else { (IntType::U4, false) };
                let (lo, hi) = ty.range();
                let ints: Vec<i32> = (0..n).map(|k| lo + ((k * 31 + i) % (hi - lo + 1) as usize) as i32).collect();
                let params = (0..n / 16)
                    .map(|g| QParams {
                        scale: 0.01 + g as f32 * 1e-4,
                        zero_point: if sym { 0 } else { (g % 16) as i32 },
                    })
                    .collect();
                let q = QuantizedWeight {
                    shape: shape.clone(),
                    ty,
                    symmetric: sym,
                    granularity: Granularity::Group(16),
                    values: ty.encode(&ints),
                    params,
                };
                want.insert(name.clone(), q.dequantize());
                Stored::Int(q)
            } else {
                want.insert(name.clone(), values.clone());
                Stored::F32 { shape, values }
            };
            params.insert(name, stored);
        }
        let inputs = InputQuants::from([
            (
                "fc1".to_string(),
                InputQuant::Static {
                    input: QParams { scale: 0.25, zero_point: 3 },
                    output: QParams { scale: 0.125, zero_point: 0 },
                },
            ),
            ("fc2".to_string(), InputQuant::Dynamic),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, to_safetensors(&params, &inputs, "test").unwrap()).unwrap();
        let (tensors, read_inputs) = load_model(&path, zoo).unwrap();
        for (name, values) in want {
            assert_eq!(tensors[&name].flatten_all().unwrap().to_vec1::<f32>().unwrap(), values, "{name}");
        }
        assert_eq!(read_inputs, inputs);
        // 4 bits a weight: the packed tensors hold half a byte per weight.
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("fc1.weight.int4").unwrap().data().len(), 784 * 256 / 2);
    }
}
