//! A user's ONNX model: read, checked against the suite's input declaration, and normalized
//! into one form every later step can rely on.
//!
//! Normalization, and why:
//! - `Constant` nodes become initializers, so weights are found the same way whether the
//!   exporter stored them as initializers (PyTorch) or as Constant nodes (TensorFlow, Paddle).
//! - Intermediate `value_info` shape hints are dropped: exporters write symbolic dims there that
//!   clash with a concrete batch ("Impossible to unify Sym(batch) with Val(1)"), and tract infers
//!   every shape from the input anyway.
//! - The one input gets the suite's declared shape, batch axis symbolic (`N`); the one output
//!   keeps its type and loses its dims (they follow from the input).
//! - Unnamed nodes get their first output's name, so every layer has a name to report.
//!
//! The quantizable layers are the MatMul, Gemm and Conv nodes whose weight is an f32 constant;
//! anything else with float weights (LSTM, GRU, ConvTranspose, …) stays float and is listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as DimValue,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto,
    TensorShapeProto,
};

use super::ModelError;
use crate::hash::sha256_hex;

/// Name the batch axis gets in every normalized model.
pub const BATCH_SYMBOL: &str = "N";

/// The input a suite declares for an ONNX model, symbols already bound.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputDecl {
    pub name: String,
    /// Shape of one item (every axis after the batch axis).
    pub item_shape: Vec<usize>,
    /// `Some(n)` when the model's batch axis is fixed to `n`.
    pub fixed_batch: Option<usize>,
    /// Symbols the suite bound (for messages).
    pub bound: BTreeMap<String, usize>,
    /// The element type the suite declares (the dataset's values are converted to it); `None`:
    /// the type the file declares, read when the model loads (a loaded model's inputs have it).
    pub dtype: Option<InputDtype>,
    /// Fed a constant, not dataset values: `item_shape` is then the input's whole shape without
    /// its batch axis, if it has one.
    pub constant: Option<Constant>,
    /// A data input's batch axis in the file (`[time, batch, features]`: 1). The normalized
    /// graph takes the batch first, as the dataset's items come, and transposes it into place.
    pub batch_axis: usize,
}

/// An input fed the same value in every element and every run, not from the dataset: a scalar
/// such as a sample rate, or a recurrent state's initial zeros. The normalized graph holds it
/// (an initializer, or one repeated along the batch), so every engine sees only data inputs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Constant {
    pub value: f64,
    /// The batch's position in the input's shape, when it has one (`[2, batch, 128]`: 1).
    pub batch_axis: Option<usize>,
}

impl InputDecl {
    /// The input's whole shape as ONNX dims: the batch symbolic (or the model's fixed batch) at
    /// its axis: first for a data input, `batch_axis` for a constant, none for a constant
    /// without one.
    /// The input's shape as the file has it: a data input's batch at its `batch_axis`.
    fn file_dims(&self) -> Vec<DimValue> {
        let mut dims = self.dims();
        if self.constant.is_none() && self.batch_axis > 0 && self.batch_axis < dims.len() {
            let batch = dims.remove(0);
            dims.insert(self.batch_axis, batch);
        }
        dims
    }

    fn dims(&self) -> Vec<DimValue> {
        let batch = match self.fixed_batch {
            Some(n) => DimValue::DimValue(n as i64),
            None => DimValue::DimParam(BATCH_SYMBOL.into()),
        };
        let mut dims: Vec<DimValue> = self.item_shape.iter().map(|&d| DimValue::DimValue(d as i64)).collect();
        match self.constant {
            Some(Constant { batch_axis: None, .. }) => {}
            Some(Constant { batch_axis: Some(k), .. }) => dims.insert(k.min(dims.len()), batch),
            None => dims.insert(0, batch),
        }
        dims
    }
}

/// The element types qbench feeds an ONNX input. Datasets hold f32 values; integer inputs (token
/// ids, bytes) take them converted exactly, and a value that is not a whole number in range is an
/// error, not a silent truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputDtype {
    #[default]
    F32,
    F16,
    I64,
    I32,
    U8,
}

impl InputDtype {
    pub const NAMES: &'static [&'static str] = &["f32", "f16", "i64", "i32", "u8"];

    pub fn from_name(s: &str) -> Option<InputDtype> {
        Some(match s {
            "f32" | "float32" | "float" => InputDtype::F32,
            "f16" | "float16" => InputDtype::F16,
            "i64" | "int64" => InputDtype::I64,
            "i32" | "int32" => InputDtype::I32,
            "u8" | "uint8" => InputDtype::U8,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            InputDtype::F32 => "f32",
            InputDtype::F16 => "f16",
            InputDtype::I64 => "i64",
            InputDtype::I32 => "i32",
            InputDtype::U8 => "u8",
        }
    }

    /// The type of an ONNX element-type code, when qbench feeds it (0, unset, reads as f32).
    pub fn from_onnx(code: i32) -> Option<InputDtype> {
        if code == 0 {
            return Some(InputDtype::F32);
        }
        Self::NAMES.iter().filter_map(|n| InputDtype::from_name(n)).find(|d| d.onnx() as i32 == code)
    }

    fn onnx(self) -> DataType {
        match self {
            InputDtype::F32 => DataType::Float,
            InputDtype::F16 => DataType::Float16,
            InputDtype::I64 => DataType::Int64,
            InputDtype::I32 => DataType::Int32,
            InputDtype::U8 => DataType::Uint8,
        }
    }

    /// The range of whole numbers the type holds, for integer types.
    pub fn integer_range(self) -> Option<(f64, f64)> {
        match self {
            InputDtype::I64 => Some((-(2f64.powi(63)), 2f64.powi(63) - 1.0)),
            InputDtype::I32 => Some((i32::MIN as f64, i32::MAX as f64)),
            InputDtype::U8 => Some((0.0, 255.0)),
            InputDtype::F32 | InputDtype::F16 => None,
        }
    }

    /// Checks that `values` fit the type: whole numbers in range for an integer type.
    pub fn check(self, values: &[f32]) -> Result<(), InputValueError> {
        let Some((lo, hi)) = self.integer_range() else { return Ok(()) };
        match values.iter().position(|&v| v.fract() != 0.0 || (v as f64) < lo || (v as f64) > hi) {
            Some(element) => Err(InputValueError { value: values[element], element, lo, hi, dtype: self.name() }),
            None => Ok(()),
        }
    }
}

/// A dataset value an integer input cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("value {value} (element {element} of the batch) is not a whole number from {lo} to {hi}, which a {dtype} input takes")]
pub struct InputValueError {
    pub value: f32,
    pub element: usize,
    pub lo: f64,
    pub hi: f64,
    pub dtype: &'static str,
}

/// A normalized ONNX file's inputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GraphInputsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not ONNX")]
    Decode {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{path} has no graph")]
    NoGraph { path: PathBuf },
    #[error("input \"{input}\" {problem}")]
    Input { input: String, problem: String },
}

/// Which op a quantizable layer is.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerOp {
    /// `Y = X·W (+ C)`, W stored `[K, N]` (`MatMul`, or `Gemm` without transB).
    MatMul,
    /// `Y = X·Wᵀ + C`, W stored `[N, K]` (`Gemm` with transB = 1).
    MatMulTransposed,
    /// W stored `[O, I/group, k…]`.
    Conv,
}

/// A node with a constant f32 weight that schemes apply to.
#[derive(Debug, Clone)]
pub struct OnnxLayer {
    /// The node's name (unique after normalization).
    pub name: String,
    /// ONNX op type, e.g. `Gemm`.
    pub op_type: String,
    pub op: LayerOp,
    /// Initializer names of the weight and (Gemm's C, Conv's B) the bias.
    pub weight: String,
    pub bias: Option<String>,
    /// Output channels and the reduction length of one output (the row width schemes group).
    pub out_channels: usize,
    pub width: usize,
}

/// A loaded, normalized ONNX model.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    pub path: PathBuf,
    pub sha256: String,
    /// Normalized model (see the module doc).
    pub proto: ModelProto,
    /// The declared inputs, in the order the graph now lists them.
    pub inputs: Vec<InputDecl>,
    /// The outputs qbench reads, in order (the suite's `[[models.outputs]]`, or the graph's
    /// first), and the shape the file declares for each (`None`: a symbolic or unstated axis).
    pub outputs: Vec<String>,
    pub output_dims: Vec<Option<Vec<Option<i64>>>>,
    pub layers: Vec<OnnxLayer>,
    /// Nodes with float weights that no scheme applies to, e.g. `lstm1 (LSTM)`.
    pub float_nodes: Vec<String>,
    /// Matrix products whose weight the file already stores quantized (integer constants behind
    /// a `DequantizeLinear`, or `MatMulInteger`/`ConvInteger`/`QLinear…` weights): no scheme
    /// applies to them, but an engine's evidence reports how it runs them.
    pub prequantized: Vec<String>,
    /// Elements of all float initializers.
    pub parameters: usize,
}

impl OnnxModel {
    /// Reads and normalizes `path`; `outputs` picks graph outputs (empty: the first).
    pub fn load(model: &str, path: &Path, inputs: &[InputDecl], outputs: &[String]) -> Result<OnnxModel, ModelError> {
        let bytes = crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file")?;
        let bad = |reason: String| ModelError::Onnx { model: model.to_string(), path: path.to_path_buf(), reason };
        let mut proto = ModelProto::decode(bytes.as_slice()).map_err(|e| {
            bad(format!(
                "it is not a valid ONNX protobuf ({e}); the file is truncated, corrupt or not ONNX: export it again"
            ))
        })?;
        check_opset(&proto).map_err(&bad)?;
        let graph = proto
            .graph
            .as_mut()
            .ok_or_else(|| bad("the file holds no graph; it is not an ONNX model: export it again".into()))?;
        if graph.node.is_empty() {
            return Err(bad("the graph has no node; export the model again".into()));
        }
        // Which ops an engine implements is the engine's to say (its backend's capability).
        // tract names a graph input's node after the input: a node may not take that name.
        let init_names: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
        let mut seen: HashSet<String> =
            graph.input.iter().map(|i| i.name.clone()).filter(|n| !init_names.contains(n)).collect();
        for (i, node) in graph.node.iter_mut().enumerate() {
            if node.name.is_empty() || !seen.insert(node.name.clone()) {
                let base =
                    node.output.first().filter(|o| !o.is_empty()).cloned().unwrap_or_else(|| node.op_type.clone());
                node.name = if seen.insert(base.clone()) { base } else { format!("{}#{i}", node.op_type) };
                seen.insert(node.name.clone());
            }
        }
        constants_to_initializers(graph).map_err(&bad)?;
        rename_clashing_initializers(graph);
        for t in &graph.initializer {
            if t.data_location == Some(1) {
                return Err(bad(format!("tensor {} is stored in an external data file; save the model with all tensors inside (onnx.save(model, path, save_as_external_data=False))", t.name)));
            }
        }
        check_initializers(graph).map_err(&bad)?;
        check_order(graph).map_err(&bad)?;
        graph.value_info.clear();

        // The inputs: every non-initializer graph input, each declared, in the declared order.
        let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let graph_inputs: Vec<usize> =
            (0..graph.input.len()).filter(|&i| !inits.contains(graph.input[i].name.as_str())).collect();
        let names: Vec<&str> = graph_inputs.iter().map(|&i| graph.input[i].name.as_str()).collect();
        let mut ordered = Vec::with_capacity(inputs.len());
        let mut moved: Vec<(String, usize, usize)> = Vec::new();
        // The symbols the file gives its data inputs' batch axes: where an output has one of
        // them, its batch is.
        let mut batch_symbols: HashSet<String> = HashSet::new();
        let mut constants: Vec<(InputDecl, InputDtype)> = Vec::new();
        let mut inputs = inputs.to_vec();
        for input in &mut inputs {
            let Some(&at) = graph_inputs.iter().find(|&&i| graph.input[i].name == input.name) else {
                return Err(bad(format!(
                    "it has no input \"{}\"; its inputs are: {}; fix the name in [[models.inputs]]",
                    input.name,
                    names.join(", ")
                )));
            };
            let mut declared = graph.input[at].clone();
            check_input(&declared, input).map_err(&bad)?;
            // An undeclared type is the file's own.
            let dtype = input.dtype.map_or_else(|| file_dtype(&declared), Ok).map_err(&bad)?;
            input.dtype = Some(dtype);
            if input.constant.is_some() {
                constants.push((input.clone(), dtype));
                continue;
            }
            batch_symbols.extend(dim_param(&declared, input.batch_axis));
            set_dims(&mut declared, &input.dims());
            if input.batch_axis > 0 {
                moved.push((input.name.clone(), input.batch_axis, input.item_shape.len() + 1));
            }
            ordered.push(declared);
        }
        // A data input whose batch is not its first axis: fed batch first, transposed into the
        // file's layout before anything reads it.
        for (name, axis, rank) in moved {
            let value = format!("{name}.batch_axis");
            for node in &mut graph.node {
                for i in node.input.iter_mut().filter(|i| **i == name) {
                    *i = value.clone();
                }
            }
            let perm: Vec<i64> = (0..rank).map(|j| if j < axis { j + 1 } else if j == axis { 0 } else { j } as i64).collect();
            graph.node.insert(0, transpose_node(format!("qbench.{name}.batch_axis"), name.clone(), value, perm));
        }
        if let Some(missing) = names.iter().find(|n| !inputs.iter().any(|i| i.name == **n)) {
            return Err(bad(format!(
                "its input \"{missing}\" is not declared; declare every input the graph takes ({}) with a [[models.inputs]] entry each, fed in order by the dataset's arrays",
                names.join(", ")
            )));
        }
        if ordered.is_empty() {
            return Err(bad("every input is declared a constant; at least one must be fed from the dataset".into()));
        }
        let first = ordered[0].name.clone();
        graph.input = ordered;
        let inputs: Vec<InputDecl> = inputs.into_iter().filter(|i| i.constant.is_none()).collect();

        // The outputs, in the order asked for.
        let declared: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        let chosen: Vec<String> = if outputs.is_empty() {
            vec![declared.first().cloned().ok_or_else(|| bad("the graph declares no output".into()))?]
        } else {
            outputs.to_vec()
        };
        let produced: HashSet<&str> = graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
        for o in &chosen {
            if !declared.contains(o) {
                return Err(bad(format!("it has no output \"{o}\"; its outputs are: {}", declared.join(", "))));
            }
            if !produced.contains(o.as_str()) && !inits.contains(o.as_str()) {
                return Err(bad(format!(
                    "no node produces its output \"{o}\"; the graph is incomplete: export it again"
                )));
            }
        }
        let mut kept = Vec::with_capacity(chosen.len());
        let mut output_dims = Vec::with_capacity(chosen.len());
        let mut transposes = Vec::new();
        for o in &chosen {
            let mut info = graph.output.iter().find(|x| &x.name == o).cloned().expect("checked above");
            output_dims.push(declared_dims(&info));
            // An output whose batch the file puts elsewhere (`[time, batch, vocab]`, as PyTorch
            // exports CTC logits) is transposed batch first, as every metric reads outputs.
            let rank = declared_dims(&info).map_or(0, |d| d.len());
            let at = (1..rank).find(|&k| dim_param(&info, k).is_some_and(|p| batch_symbols.contains(&p)));
            if let (Some(k), true) = (at, produced.contains(o.as_str())) {
                let inner = format!("{o}.file_layout");
                let perm: Vec<i64> = (0..rank).map(|j| if j == 0 { k } else if j <= k { j - 1 } else { j } as i64).collect();
                transposes.push((o.clone(), inner, perm));
            }
            set_dims(&mut info, &[]);
            kept.push(info);
        }
        graph.output = kept;
        for (o, inner, perm) in transposes {
            for node in &mut graph.node {
                for v in node.output.iter_mut().chain(node.input.iter_mut()).filter(|v| **v == o) {
                    *v = inner.clone();
                }
            }
            graph.node.push(transpose_node(format!("qbench.{o}.batch_first"), inner, o.clone(), perm));
        }

        let by_name: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut layers = Vec::new();
        let mut float_nodes = Vec::new();
        for node in &graph.node {
            match find_layer(node, &by_name) {
                Some(l) => layers.push(l),
                None => {
                    let float_weight = node.input.iter().filter_map(|i| by_name.get(i.as_str())).any(|t| {
                        t.data_type == DataType::Float as i32 && t.dims.len() >= 2 && t.dims.iter().product::<i64>() > 1
                    });
                    if float_weight {
                        float_nodes.push(format!("{} ({})", node.name, node.op_type));
                    }
                }
            }
        }
        let prequantized = prequantized_products(graph, &by_name);
        let parameters = graph
            .initializer
            .iter()
            .filter(|t| t.data_type == DataType::Float as i32)
            .map(|t| t.dims.iter().product::<i64>().max(0) as usize)
            .sum();
        // Constants become part of the graph, once the weights are counted (they are inputs, not
        // parameters); a batched one takes its batch from the first data input.
        for (c, dtype) in &constants {
            bake_constant(graph, c, *dtype, &first).map_err(&bad)?;
        }
        Ok(OnnxModel {
            path: path.to_path_buf(),
            sha256: sha256_hex(&bytes),
            proto,
            inputs,
            outputs: chosen,
            output_dims,
            layers,
            float_nodes,
            prequantized,
            parameters,
        })
    }

    /// The quantizable layers with their row widths, in graph order.
    pub fn weighted_layers(&self) -> Vec<(String, usize)> {
        self.layers.iter().map(|l| (l.name.clone(), l.width)).collect()
    }

    /// An initializer's f32 values and dims.
    pub fn initializer(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        let graph = self.proto.graph.as_ref()?;
        let t = graph.initializer.iter().find(|t| t.name == name)?;
        let values = f32_values(t)?;
        Some((t.dims.iter().map(|&d| d as usize).collect(), values))
    }

    /// The normalized model as bytes (the f32 reference artifact).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.proto.encode_to_vec()
    }
}

/// Products whose weight operand is an integer constant, directly (the integer ops) or through
/// dequantization and reshaping ops (a QDQ graph), in graph order.
fn prequantized_products(graph: &tract_onnx::pb::GraphProto, inits: &HashMap<&str, &TensorProto>) -> Vec<String> {
    let integer = |t: &TensorProto| {
        [DataType::Int8, DataType::Uint8, DataType::Int4, DataType::Uint4].iter().any(|d| t.data_type == *d as i32)
    };
    let producer = |value: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == value));
    let mut out = Vec::new();
    for node in &graph.node {
        let weight = match node.op_type.as_str() {
            "MatMul" | "Gemm" | "Conv" | "MatMulInteger" | "ConvInteger" => node.input.get(1),
            "QLinearMatMul" | "QLinearConv" => node.input.get(3),
            _ => None,
        };
        let Some(mut value) = weight.cloned() else { continue };
        for _ in 0..8 {
            if let Some(t) = inits.get(value.as_str()) {
                if integer(t) {
                    out.push(node.name.clone());
                }
                break;
            }
            match producer(&value) {
                Some(p)
                    if ["DequantizeLinear", "Cast", "Transpose", "Reshape", "Identity", "Unsqueeze"]
                        .contains(&p.op_type.as_str()) =>
                {
                    value = p.input.first().cloned().unwrap_or_default()
                }
                _ => break,
            }
        }
    }
    out
}

/// Replaces graph input `c` by its constant: an initializer of its shape filled with its value,
/// or, with a batch axis, that initializer with 1 at the axis repeated (`Expand`) to the batch
/// of the data input `first` (batch-first), so its shape follows every batch size.
fn bake_constant(graph: &mut GraphProto, c: &InputDecl, dtype: InputDtype, first: &str) -> Result<(), String> {
    let Some(constant) = c.constant else { return Ok(()) };
    if let Some((lo, hi)) = dtype.integer_range() {
        if constant.value.fract() != 0.0 || constant.value < lo || constant.value > hi {
            return Err(format!(
                "input \"{}\" is {} in the model, and value = {} is not a whole number it holds",
                c.name,
                dtype.name(),
                constant.value
            ));
        }
    }
    // Bounded before anything is allocated: a constant is a scalar or a state, not a dataset.
    const MAX_CONSTANT_VALUES: usize = 1 << 26;
    let count = c
        .item_shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_CONSTANT_VALUES)
        .ok_or_else(|| {
            format!(
                "input \"{}\" fed a constant of shape {:?} would hold more than {MAX_CONSTANT_VALUES} values; check its shape",
                c.name, c.item_shape
            )
        })?;
    let one: Vec<u8> = match dtype {
        InputDtype::F32 => (constant.value as f32).to_le_bytes().to_vec(),
        InputDtype::F16 => half::f16::from_f64(constant.value).to_bits().to_le_bytes().to_vec(),
        InputDtype::I64 => (constant.value as i64).to_le_bytes().to_vec(),
        InputDtype::I32 => (constant.value as i32).to_le_bytes().to_vec(),
        InputDtype::U8 => vec![constant.value as u8],
    };
    let mut dims: Vec<i64> = c.item_shape.iter().map(|&d| d as i64).collect();
    if let Some(k) = constant.batch_axis {
        dims.insert(k.min(dims.len()), 1);
    }
    let value_name = match constant.batch_axis {
        None => c.name.clone(),
        Some(_) => format!("{}.constant", c.name),
    };
    graph.initializer.push(TensorProto {
        name: value_name.clone(),
        dims: dims.clone(),
        data_type: dtype.onnx() as i32,
        raw_data: one.repeat(count),
        ..Default::default()
    });
    let Some(k) = constant.batch_axis else { return Ok(()) };
    // shape = dims with the first data input's batch at k: Shape → Slice [0, 1) → Concat.
    let n = |s: &str| format!("{}.{s}", c.name);
    let i64s = |name: String, v: &[i64]| TensorProto {
        name,
        dims: vec![v.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    };
    graph.initializer.push(i64s(n("before"), &dims[..k]));
    graph.initializer.push(i64s(n("after"), &dims[k + 1..]));
    graph.initializer.push(i64s(n("zero"), &[0]));
    graph.initializer.push(i64s(n("one"), &[1]));
    let node = |op: &str, input: Vec<String>, output: String, attribute| NodeProto {
        name: output.clone(),
        input,
        output: vec![output],
        op_type: op.into(),
        attribute,
        ..Default::default()
    };
    let axis0 = tract_onnx::pb::AttributeProto {
        name: "axis".into(),
        r#type: AttributeType::Int as i32,
        i: 0,
        ..Default::default()
    };
    let batch_nodes = vec![
        node("Shape", vec![first.to_string()], n("data_shape"), vec![]),
        node("Slice", vec![n("data_shape"), n("zero"), n("one")], n("batch"), vec![]),
        node("Concat", vec![n("before"), n("batch"), n("after")], n("shape"), vec![axis0]),
        node("Expand", vec![value_name, n("shape")], c.name.clone(), vec![]),
    ];
    graph.node.splice(0..0, batch_nodes);
    Ok(())
}

/// One axis of an input as a file declares it.
#[derive(Debug, Clone, PartialEq)]
pub enum FileDim {
    Fixed(usize),
    Symbol(String),
    /// No size and no name.
    Unknown,
}

/// A graph input as the file declares it (initializers listed as inputs left out).
#[derive(Debug, Clone, PartialEq)]
pub struct FileInput {
    pub name: String,
    pub dims: Vec<FileDim>,
}

/// The inputs `path` declares, in order: what a suite that leaves out `[[models.inputs]]`
/// feeds. Errors say why the file cannot be read (the run then reports it as the model's
/// failure).
pub fn file_inputs(path: &Path) -> Result<Vec<FileInput>, String> {
    let bytes =
        crate::files::read_bounded(path, super::MAX_MODEL_FILE_BYTES, "a model file").map_err(|e| e.to_string())?;
    let proto = ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let graph = proto.graph.ok_or("the file holds no graph")?;
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    Ok(graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .map(|i| {
            let dims = match i.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(t)) => t.shape.as_ref().map_or_else(Vec::new, |s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(DimValue::DimValue(n)) if *n > 0 => FileDim::Fixed(*n as usize),
                            Some(DimValue::DimParam(p)) if !p.is_empty() => FileDim::Symbol(p.clone()),
                            _ => FileDim::Unknown,
                        })
                        .collect()
                }),
                _ => Vec::new(),
            };
            FileInput { name: i.name.clone(), dims }
        })
        .collect())
}

/// A normalized file's inputs, in order: name, item shape (every axis after the batch), and
/// element type. Backends read them from the variant's file, so a variant is self-describing.
pub fn graph_inputs(path: &Path) -> Result<Vec<(String, Vec<usize>, InputDtype)>, GraphInputsError> {
    let bytes = std::fs::read(path).map_err(|source| GraphInputsError::Read { path: path.to_path_buf(), source })?;
    let proto = ModelProto::decode(bytes.as_slice())
        .map_err(|source| GraphInputsError::Decode { path: path.to_path_buf(), source })?;
    let graph = proto.graph.ok_or_else(|| GraphInputsError::NoGraph { path: path.to_path_buf() })?;
    let bad = |input: &str, problem: String| GraphInputsError::Input { input: input.to_string(), problem };
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut out = Vec::new();
    for input in graph.input.iter().filter(|i| !inits.contains(i.name.as_str())) {
        let Some(type_proto::Value::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(bad(&input.name, "is not a tensor".into()));
        };
        let dtype = InputDtype::from_onnx(t.elem_type)
            .ok_or_else(|| bad(&input.name, format!("has element type {}, which qbench does not feed", t.elem_type)))?;
        let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
        let item = dims
            .iter()
            .skip(1)
            .map(|d| match &d.value {
                Some(DimValue::DimValue(n)) if *n > 0 => Ok(*n as usize),
                _ => Err(bad(&input.name, "has a dim that is not a number after the batch axis".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((input.name.clone(), item, dtype));
    }
    Ok(out)
}

/// The model's own input type against the declaration: same element type, same rank, same
/// fixed dims.
fn check_input(info: &tract_onnx::pb::ValueInfoProto, input: &InputDecl) -> Result<(), String> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    if let Some(dtype) = input.dtype.filter(|d| t.elem_type != d.onnx() as i32 && t.elem_type != 0) {
        let ty = DataType::try_from(t.elem_type).map(|d| format!("{d:?}")).unwrap_or_else(|_| t.elem_type.to_string());
        let fix = InputDtype::NAMES
            .iter()
            .find(|n| InputDtype::from_name(n).is_some_and(|d| d.onnx() as i32 == t.elem_type))
            .map_or(format!("qbench feeds {} inputs", InputDtype::NAMES.join(", ")), |n| {
                format!("set dtype = \"{n}\" in [[models.inputs]]")
            });
        return Err(format!(
            "input \"{}\" is {ty} in the model, but the suite declares {}; {fix}, or leave dtype out to take the model's",
            input.name,
            dtype.name()
        ));
    }
    let Some(shape) = &t.shape else { return Ok(()) };
    let model: Vec<String> = shape.dim.iter().map(describe_dim).collect();
    let want = input.file_dims();
    let declared: Vec<String> = want
        .iter()
        .map(|d| match d {
            DimValue::DimValue(v) => v.to_string(),
            DimValue::DimParam(_) => "batch".to_string(),
        })
        .collect();
    let mismatch = || {
        format!(
            "input \"{}\" has shape [{}] in the model, but the suite declares [{}]; fix shape in [[models.inputs]] (symbols bound: {:?})",
            input.name,
            model.join(", "),
            declared.join(", "),
            input.bound
        )
    };
    if shape.dim.len() != want.len() {
        return Err(mismatch());
    }
    for (d, w) in shape.dim.iter().zip(&want) {
        if let Some(DimValue::DimValue(v)) = d.value {
            match w {
                DimValue::DimValue(x) if *x == v => {}
                // A model exported with batch 1 and no symbol runs only at batch 1.
                DimValue::DimParam(_) if v > 0 => {
                    // The file's open axis is elsewhere: the batch is there.
                    if let Some(k) =
                        shape.dim.iter().position(|d| matches!(&d.value, Some(DimValue::DimParam(p)) if !p.is_empty()))
                    {
                        return Err(format!(
                            "input \"{}\" has shape [{}] in the model: its batch is at axis {k}; declare shape = [{}] with batch_axis = {k} in [[models.inputs]]",
                            input.name,
                            model.join(", "),
                            model.iter().enumerate().map(|(a, d)| if a == k { "\"batch\"".to_string() } else { d.clone() }).collect::<Vec<_>>().join(", ")
                        ));
                    }
                    return Err(format!(
                        "input \"{}\" has a fixed batch of {v} in the model; declare shape = [{v}, …] in [[models.inputs]] and use batch_sizes = [{v}], or export the model with a dynamic batch axis",
                        input.name
                    ));
                }
                DimValue::DimParam(_) => {}
                _ => return Err(mismatch()),
            }
        }
    }
    Ok(())
}

/// The element type a graph input declares, when qbench feeds it.
fn file_dtype(info: &tract_onnx::pb::ValueInfoProto) -> Result<InputDtype, String> {
    let code = match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.elem_type,
        _ => return Err(format!("input \"{}\" is not a tensor; qbench feeds tensor inputs", info.name)),
    };
    InputDtype::from_onnx(code).ok_or_else(|| {
        let ty = DataType::try_from(code).map(|d| format!("{d:?}")).unwrap_or_else(|_| code.to_string());
        format!(
            "input \"{}\" is {ty} in the model, which qbench does not feed (it feeds {})",
            info.name,
            InputDtype::NAMES.join(", ")
        )
    })
}

fn describe_dim(d: &Dimension) -> String {
    match &d.value {
        Some(DimValue::DimValue(v)) => v.to_string(),
        Some(DimValue::DimParam(p)) => p.clone(),
        None => "?".into(),
    }
}

/// A `Transpose` node named `name` from `input` to `output` with permutation `perm`: how the
/// normalized graph moves a batch axis to where the file has it, or an output's batch first.
fn transpose_node(name: String, input: String, output: String, perm: Vec<i64>) -> NodeProto {
    NodeProto {
        name,
        op_type: "Transpose".into(),
        input: vec![input],
        output: vec![output],
        attribute: vec![AttributeProto {
            name: "perm".into(),
            r#type: AttributeType::Ints as i32,
            ints: perm,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The symbol a value's declaration names axis `axis` by, if it names one.
fn dim_param(info: &tract_onnx::pb::ValueInfoProto, axis: usize) -> Option<String> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return None;
    };
    match t.shape.as_ref()?.dim.get(axis)?.value.as_ref()? {
        DimValue::DimParam(p) if !p.is_empty() => Some(p.clone()),
        _ => None,
    }
}

/// The shape a value's declaration states: `None` for an unstated shape, `None` per axis for a
/// symbolic or unstated one.
fn declared_dims(info: &tract_onnx::pb::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return None;
    };
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(DimValue::DimValue(v)) if v >= 0 => Some(v),
                _ => None,
            })
            .collect(),
    )
}

fn set_dims(info: &mut tract_onnx::pb::ValueInfoProto, dims: &[DimValue]) {
    if let Some(type_proto::Value::TensorType(t)) = info.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.shape = (!dims.is_empty()).then(|| TensorShapeProto {
            dim: dims.iter().map(|d| Dimension { value: Some(d.clone()), ..Default::default() }).collect(),
        });
    }
}

/// tract names a constant's node after the initializer, so an initializer may not share a
/// name with a node (exporters allow it, e.g. node "proj" with weight "proj"): such initializers
/// are renamed, and every reference to them follows. Node names, which the user sees as layer
/// names, are kept.
fn rename_clashing_initializers(graph: &mut tract_onnx::pb::GraphProto) {
    let nodes: HashSet<String> = graph.node.iter().map(|n| n.name.clone()).collect();
    let mut taken: HashSet<String> = nodes.clone();
    taken.extend(graph.initializer.iter().map(|t| t.name.clone()));
    taken.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
    let mut renamed: HashMap<String, String> = HashMap::new();
    for t in &mut graph.initializer {
        if nodes.contains(&t.name) {
            let mut new = format!("{}.value", t.name);
            while taken.contains(&new) {
                new.push('_');
            }
            taken.insert(new.clone());
            renamed.insert(std::mem::replace(&mut t.name, new.clone()), new);
        }
    }
    if renamed.is_empty() {
        return;
    }
    for node in &mut graph.node {
        for i in &mut node.input {
            if let Some(new) = renamed.get(i.as_str()) {
                *i = new.clone();
            }
        }
    }
    for i in &mut graph.input {
        if let Some(new) = renamed.get(i.name.as_str()) {
            i.name = new.clone();
        }
    }
}

/// Moves every `Constant` node's value into an initializer named after its output.
fn constants_to_initializers(graph: &mut tract_onnx::pb::GraphProto) -> Result<(), String> {
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if node.op_type != "Constant" || node.output.len() != 1 {
            kept.push(node);
            continue;
        }
        let out = node.output[0].clone();
        let Some(a) = node.attribute.first() else {
            return Err(format!("Constant node {} has no value", node.name));
        };
        let t = match a.name.as_str() {
            "value" => a.t.clone().map(|mut t| {
                t.name = out.clone();
                t
            }),
            "value_float" => Some(float_tensor(&out, &[], &[a.f])),
            "value_floats" => Some(float_tensor(&out, &[a.floats.len()], &a.floats)),
            "value_int" => Some(int64_tensor(&out, &[], &[a.i])),
            "value_ints" => Some(int64_tensor(&out, &[a.ints.len()], &a.ints)),
            _ => None,
        };
        match t {
            Some(t) => graph.initializer.push(t),
            // Sparse and string constants stay nodes; tract evaluates them itself.
            None => kept.push(node),
        }
    }
    graph.node = kept;
    Ok(())
}

fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: super::stored::f32_bytes(values),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// The default ONNX domain's opset must be one ONNX has defined (versions grow by one a year
/// or so; 30 leaves room for the next few).
fn check_opset(proto: &ModelProto) -> Result<(), String> {
    for o in &proto.opset_import {
        if (o.domain.is_empty() || o.domain == "ai.onnx") && !(1..=30).contains(&o.version) {
            return Err(format!(
                "it imports ONNX opset {}, which does not exist (opsets run from 1 to about 23); export it again",
                o.version
            ));
        }
    }
    Ok(())
}

/// Every initializer: sizes that exist (no negative dimension, a product within 64 bits), a
/// numeric type, exactly as much data as its dimensions declare, and finite float values.
fn check_initializers(graph: &GraphProto) -> Result<(), String> {
    for t in &graph.initializer {
        let name = &t.name;
        let mut count: u64 = 1;
        for &d in &t.dims {
            let d =
                u64::try_from(d).map_err(|_| format!("initializer {name} has a negative dimension in {:?}", t.dims))?;
            count = count.checked_mul(d).ok_or_else(|| {
                format!("initializer {name}'s dimensions {:?} multiply past 2^64; the file is corrupt", t.dims)
            })?;
        }
        let ty = t.data_type;
        let is = |d: DataType| ty == d as i32;
        let width: u64 = if [DataType::Float, DataType::Int32, DataType::Uint32].into_iter().any(is) {
            4
        } else if [DataType::Double, DataType::Int64, DataType::Uint64].into_iter().any(is) {
            8
        } else if [DataType::Float16, DataType::Bfloat16, DataType::Int16, DataType::Uint16].into_iter().any(is) {
            2
        } else if [DataType::Int8, DataType::Uint8, DataType::Bool].into_iter().any(is) {
            1
        } else if is(DataType::String) {
            return Err(format!("initializer {name} holds strings; qbench runs models whose weights are numbers"));
        } else {
            return Err(format!(
                "initializer {name} has data type {ty}, which is not an ONNX numeric type; the file is corrupt"
            ));
        };
        let held = if !t.raw_data.is_empty() {
            t.raw_data.len() as u64 / width
        } else if is(DataType::Float) {
            t.float_data.len() as u64
        } else if is(DataType::Double) {
            t.double_data.len() as u64
        } else if is(DataType::Int64) {
            t.int64_data.len() as u64
        } else if is(DataType::Uint64) || is(DataType::Uint32) {
            t.uint64_data.len() as u64
        } else {
            t.int32_data.len() as u64
        };
        let exact = t.raw_data.is_empty() || (t.raw_data.len() as u64).is_multiple_of(width);
        if held != count || !exact {
            return Err(format!(
                "initializer {name} declares dimensions {:?} ({count} values) but holds {} bytes of data; the file is truncated or corrupt",
                t.dims,
                if t.raw_data.is_empty() { held * width } else { t.raw_data.len() as u64 }
            ));
        }
        if f32_values(t).is_some_and(|v| v.iter().any(|x| !x.is_finite())) {
            return Err(format!(
                "initializer {name} holds NaN or infinite values; the model is broken: export it again"
            ));
        }
    }
    Ok(())
}

/// Nodes in the order ONNX requires: each reads only graph inputs, initializers, and outputs
/// of nodes before it (an engine cannot order a graph with a cycle).
fn check_order(graph: &GraphProto) -> Result<(), String> {
    let mut known: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    known.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    for node in &graph.node {
        if let Some(missing) = node.input.iter().find(|i| !i.is_empty() && !known.contains(i.as_str())) {
            return Err(format!(
                "node {} ({}) reads {missing}, which no graph input, initializer or earlier node produces: the graph has a cycle, is out of order or is incomplete; export it again",
                node.name, node.op_type
            ));
        }
        known.extend(node.output.iter().map(String::as_str));
    }
    Ok(())
}

/// The f32 values of a FLOAT tensor stored inline (raw bytes or `float_data`).
pub fn f32_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    let n = t.dims.iter().product::<i64>().max(0) as usize;
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        t.float_data.clone()
    };
    (values.len() == n).then_some(values)
}

fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name && a.r#type == AttributeType::Int as i32).map(|a| a.i)
}

fn attr_float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name && a.r#type == AttributeType::Float as i32).map(|a| a.f)
}

/// The node as a quantizable layer, when its weight is a constant f32 tensor of a form the
/// schemes handle.
fn find_layer(node: &NodeProto, inits: &HashMap<&str, &TensorProto>) -> Option<OnnxLayer> {
    let weight = node.input.get(1)?;
    let w = inits.get(weight.as_str()).filter(|t| t.data_type == DataType::Float as i32)?;
    let dims: Vec<usize> = w.dims.iter().map(|&d| d.max(0) as usize).collect();
    // The activation must not be a constant itself (that would be a constant subgraph).
    if inits.contains_key(node.input.first()?.as_str()) {
        return None;
    }
    let bias = node.input.get(2).filter(|b| !b.is_empty()).cloned();
    if let Some(b) = &bias {
        inits.get(b.as_str()).filter(|t| t.data_type == DataType::Float as i32)?;
    }
    let (op, out_channels, width) = match node.op_type.as_str() {
        "MatMul" if dims.len() == 2 => (LayerOp::MatMul, dims[1], dims[0]),
        "Gemm" if dims.len() == 2 => {
            let plain = attr_int(node, "transA").unwrap_or(0) == 0
                && attr_float(node, "alpha").unwrap_or(1.0) == 1.0
                && attr_float(node, "beta").unwrap_or(1.0) == 1.0;
            if !plain {
                return None;
            }
            if attr_int(node, "transB").unwrap_or(0) == 1 {
                (LayerOp::MatMulTransposed, dims[0], dims[1])
            } else {
                (LayerOp::MatMul, dims[1], dims[0])
            }
        }
        "Conv" if dims.len() >= 3 => (LayerOp::Conv, dims[0], dims[1..].iter().product()),
        _ => return None,
    };
    if out_channels == 0 || width == 0 {
        return None;
    }
    Some(OnnxLayer {
        name: node.name.clone(),
        op_type: node.op_type.clone(),
        op,
        weight: weight.clone(),
        bias,
        out_channels,
        width,
    })
}
