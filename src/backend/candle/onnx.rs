//! candle on a user's ONNX file: candle-onnx's `simple_eval`, an interpreter that walks the graph
//! node by node on candle tensors (f32 compute; f16 weights are cast by the graph's own Cast
//! nodes, GGML variants hold dequantized weights). Built with the `candle-onnx` feature, whose
//! build needs `protoc`.
//!
//! `simple_eval` converts every initializer into a tensor on each call; the session converts
//! them once at prepare and passes them in as inputs, so a run times the graph, as an engine
//! that loads its weights once would.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::ModelProto;

use crate::backend::{BackendError, BackendId, Compute, LayerEvidence, Prepared, Session, StoredWeight, WeightType};
use crate::model::onnx_file::InputDtype;
use crate::model::OnnxOp;
use crate::quant::Variant;

const ID: BackendId = BackendId::CANDLE_CPU;

/// The ops candle-onnx 0.11.1's `simple_eval` implements (its match arms).
const OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Cos",
    "CumSum",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "Gelu",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "HardSwish",
    "Identity",
    "If",
    "LSTM",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "OneHot",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "RNN",
    "Range",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Why candle-onnx cannot run this node, or `None` when it implements its op (in the default
/// domain only). The capability asks this of the loaded graph, and `prepare` of the variant's.
pub(super) fn refusal(op: &OnnxOp) -> Option<String> {
    let default_domain = op.domain.is_empty() || op.domain == "ai.onnx";
    (!default_domain || !OPS.contains(&op.op_type.as_str())).then(|| {
        format!(
            "candle-onnx 0.11 does not implement op {} (node \"{}\"); this model runs on tract-cpu",
            op.describe(),
            op.node
        )
    })
}

pub(super) fn prepare(variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
    let err = |stage: &'static str| move |e: candle_core::Error| BackendError::engine(ID, stage, e);
    let mut model = candle_onnx::read_file(&variant.onnx).map_err(err("reading the ONNX model"))?;
    let graph = model.graph.as_mut().ok_or_else(|| BackendError::engine(ID, "reading the ONNX model", "no graph"))?;
    let ops = graph.node.iter().map(|n| OnnxOp {
        op_type: n.op_type.clone(),
        domain: n.domain.clone(),
        node: n.name.clone(),
    });
    if let Some(why) = ops.filter_map(|op| refusal(&op)).next() {
        return Err(BackendError::engine(ID, "checking the ONNX ops", why));
    }
    let mut weights = HashMap::new();
    let mut weights_bytes = 0u64;
    for t in std::mem::take(&mut graph.initializer) {
        let tensor = candle_onnx::eval::get_tensor(&t, &t.name).map_err(err("converting the weights"))?;
        weights_bytes += (tensor.elem_count() * tensor.dtype().size_in_bytes()) as u64;
        weights.insert(t.name, tensor);
    }
    let declared = crate::model::onnx_file::graph_inputs(&variant.onnx)
        .map_err(|e| BackendError::engine(ID, "reading the ONNX model", crate::backend::chain(&e)))?;
    let mut inputs_decl = Vec::with_capacity(declared.len());
    for (name, item, check) in declared {
        let dtype = match check {
            InputDtype::F32 => DType::F32,
            InputDtype::F16 => DType::F16,
            InputDtype::I64 => DType::I64,
            InputDtype::U8 => DType::U8,
            InputDtype::I32 => {
                return Err(BackendError::engine(
                    ID,
                    "reading the ONNX model",
                    format!("candle-onnx takes no int32 input (\"{name}\"); this model runs on tract-cpu"),
                ))
            }
        };
        let shape: Vec<usize> = std::iter::once(batch).chain(item.iter().copied()).collect();
        inputs_decl.push(OnnxInput { name, size: item.iter().product(), shape, dtype, check });
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    if outputs.is_empty() {
        return Err(BackendError::engine(ID, "reading the ONNX model", "the graph has no output"));
    }
    let evidence = format!("candle-onnx simple_eval ({} nodes interpreted per run, f32 compute)", graph.node.len());
    let artifact_bytes = crate::backend::artifact_bytes(ID, &variant.onnx)?;
    Ok(Prepared {
        session: Box::new(OnnxSession {
            variant: variant.clone(),
            model,
            weights,
            inputs_decl,
            outputs,
            batch,
            inputs: None,
            out: Vec::new(),
        }),
        artifact: variant.onnx.clone(),
        artifact_bytes,
        evidence,
        layers: Vec::new(),
        weights_bytes: Some(weights_bytes),
        heap_not_covered: None,
    })
}

/// Each planned layer's node as the interpreter will run it: the weight input traced back
/// through casts and reshapes to its initializer (as candle-onnx converted it), computing
/// in the type the last cast gives (or the initializer's own).
fn evidence(
    variant: &Variant,
    graph: &candle_onnx::onnx::GraphProto,
    weights: &HashMap<String, Tensor>,
) -> Vec<LayerEvidence> {
    let source = "the graph candle-onnx interprets, and its converted initializers";
    let producer = |value: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == value));
    variant
        .layer_schemes
        .iter()
        .map(|(layer, _)| {
            let scheme = variant.layer_scheme(layer);
            let Some(node) = graph.node.iter().find(|n| &n.name == layer) else {
                return LayerEvidence::observed(
                    layer,
                    scheme,
                    StoredWeight::new(WeightType::NotFound),
                    Compute::NotObservable,
                    "no node of that name",
                    "cpu",
                    true,
                    None,
                    source,
                );
            };
            let mut value = node.input.get(1).cloned().unwrap_or_default();
            let mut cast_to: Option<DType> = None;
            let mut path = Vec::new();
            // Ops that move or convert the weight on its way to the product, each interpreted on
            // every run (the interpreter folds nothing).
            while let Some(p) = producer(&value) {
                if !matches!(
                    p.op_type.as_str(),
                    "Cast" | "Identity" | "Transpose" | "Reshape" | "Unsqueeze" | "Squeeze" | "Flatten"
                ) {
                    path.push(p.op_type.clone());
                    break;
                }
                if p.op_type == "Cast" && cast_to.is_none() {
                    cast_to = p.attribute.iter().find(|a| a.name == "to").and_then(|a| onnx_dtype(a.i));
                }
                path.push(p.op_type.clone());
                value = p.input.first().cloned().unwrap_or_default();
            }
            let kernel = format!("candle-onnx {} (interpreted)", node.op_type);
            match weights.get(&value) {
                Some(w) => {
                    let dtype = cast_to.unwrap_or(w.dtype());
                    let per_call = (!path.is_empty())
                        .then(|| format!("{} of the weight, interpreted on every run", path.join(" → ")));
                    let stored = StoredWeight::named(&format!("{:?}", w.dtype()).to_lowercase());
                    LayerEvidence::observed(
                        layer,
                        scheme,
                        stored,
                        super::compute_of(dtype),
                        kernel,
                        "cpu",
                        true,
                        per_call,
                        source,
                    )
                }
                None => LayerEvidence::observed(
                    layer,
                    scheme,
                    StoredWeight::new(WeightType::Other("computed in the graph".into())),
                    Compute::NotObservable,
                    format!(
                        "{kernel}; its weight comes from {}",
                        if path.is_empty() { "a graph input".to_string() } else { path.join(" → ") }
                    ),
                    "cpu",
                    true,
                    None,
                    source,
                ),
            }
        })
        .collect()
}

/// ONNX's element type codes for the float types.
fn onnx_dtype(code: i64) -> Option<DType> {
    match code {
        1 => Some(DType::F32),
        10 => Some(DType::F16),
        11 => Some(DType::F64),
        16 => Some(DType::BF16),
        _ => None,
    }
}

/// One graph input: its name, shape at the batch size, element type, and values per item.
struct OnnxInput {
    name: String,
    shape: Vec<usize>,
    size: usize,
    dtype: DType,
    check: InputDtype,
}

struct OnnxSession {
    variant: Variant,
    /// The graph without its initializers (they are in `weights`).
    model: ModelProto,
    weights: HashMap<String, Tensor>,
    inputs_decl: Vec<OnnxInput>,
    /// The graph's outputs, in order.
    outputs: Vec<String>,
    batch: usize,
    inputs: Option<HashMap<String, Tensor>>,
    out: Vec<Tensor>,
}

impl Session for OnnxSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        let bad = |e: String| BackendError::engine(ID, "copying the input", e);
        let total: usize = self.inputs_decl.iter().map(|i| i.size).sum();
        if input.len() != self.batch * total {
            return Err(bad(format!("{} values for {} items of {total}", input.len(), self.batch)));
        }
        let mut inputs = self.weights.clone();
        let mut offset = 0;
        for i in &self.inputs_decl {
            let part: Vec<f32> = if self.inputs_decl.len() == 1 {
                input.to_vec()
            } else {
                (0..self.batch)
                    .flat_map(|b| input[b * total + offset..b * total + offset + i.size].iter().copied())
                    .collect()
            };
            offset += i.size;
            i.check.check(&part).map_err(|e| bad(e.to_string()))?;
            let x = Tensor::from_vec(part, i.shape.as_slice(), &Device::Cpu)
                .and_then(|t| t.to_dtype(i.dtype))
                .map_err(|e| bad(e.to_string()))?;
            inputs.insert(i.name.clone(), x);
        }
        self.inputs = Some(inputs);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        // Cloning the map clones reference-counted tensors, not their data.
        let inputs = self.inputs.clone().ok_or_else(|| BackendError::engine(ID, "running", "no input was set"))?;
        let mut outputs =
            candle_onnx::simple_eval(&self.model, inputs).map_err(|e| BackendError::engine(ID, "running", e))?;
        self.out = self
            .outputs
            .iter()
            .map(|name| {
                outputs.remove(name).ok_or_else(|| {
                    BackendError::engine(ID, "running", format!("the graph computed no output \"{name}\""))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        super::output_values(ID, self.out.first())
    }

    fn outputs(&self) -> Result<Vec<crate::backend::OutputTensor>, BackendError> {
        if self.out.is_empty() {
            return Err(BackendError::engine(ID, "reading the output", "the model has not run"));
        }
        self.out
            .iter()
            .zip(&self.outputs)
            .map(|(t, name)| {
                Ok(crate::backend::OutputTensor {
                    name: name.clone(),
                    shape: Some(t.dims().to_vec()),
                    values: super::output_values(ID, Some(t))?,
                })
            })
            .collect()
    }

    fn layer_evidence(&self) -> Vec<LayerEvidence> {
        match self.model.graph.as_ref() {
            Some(graph) => evidence(&self.variant, graph, &self.weights),
            None => Vec::new(),
        }
    }
}
