//! tract on the CPU: the variant's ONNX file, with a concrete input shape, optimized.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{Backend, BackendError, BackendId, LayerSession, Prepared, Session};
use crate::model::onnx_file::InputDtype;
use crate::quant::Variant;

pub struct TractCpu;

const ID: BackendId = BackendId::TractCpu;

/// Runs tract's matrix products on `threads` threads (tract is single-threaded by default).
pub(super) fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    set_default_executor(if threads > 1 { Executor::multithread(threads) } else { Executor::SingleThread });
}

impl Backend for TractCpu {
    fn id(&self) -> BackendId {
        ID
    }

    fn prepare(&self, variant: &Variant, batch: usize) -> Result<Prepared, BackendError> {
        let inputs = Inputs::of(&variant.onnx, batch).map_err(|e| BackendError::engine(ID, "reading the inputs", e))?;
        // into_optimized() is declutter + optimize; split so the weights can be counted as
        // constants between the two (codegen moves them into the kernels' packed operands).
        let mut weights_bytes = None;
        let plan = tract_onnx::onnx()
            .model_for_path(&variant.onnx)
            .and_then(|m| inputs.set_facts(m))
            .and_then(|m| m.into_typed())
            .and_then(|mut m| {
                m.declutter()?;
                weights_bytes = Some(constant_bytes(&m));
                m.optimize()?;
                m.into_runnable()
            })
            .map_err(|e| BackendError::engine(ID, "loading and optimizing the ONNX model", e))?;
        let mut evidence = op_summary(plan.model());
        let state = plan.spawn().map_err(|e| BackendError::engine(ID, "creating the run state", e))?;
        // Ops with state between runs (LSTM/GRU/Scan keep their hidden state, for streaming)
        // would carry one batch's state into the next: such models get a fresh state per run.
        let stateful = state.op_states.iter().any(Option::is_some);
        if stateful {
            evidence.push_str(" (stateful ops: a fresh run state per run, timed)");
        }
        let artifact_bytes = std::fs::metadata(&variant.onnx)
            .map(|m| m.len())
            .map_err(|e| BackendError::engine(ID, "reading the artifact size", e))?;
        Ok(Prepared {
            session: Box::new(TractSession { state, plan, stateful, inputs, input: None, output: None }),
            artifact: variant.onnx.clone(),
            artifact_bytes,
            evidence,
            weights_bytes,
        })
    }

    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        // Float layers' nodes carry the layer's name; zoo integer layers end in `<name>.out`.
        let mut names: Vec<String> = variant.plan.layers.iter().map(|(n, _)| n.clone()).collect();
        let probe = ValueProbe::new(&variant.onnx, batch, &names, true, true)
            .map_err(|e| BackendError::engine(ID, "capturing layer outputs", e))?;
        names.push(super::MODEL_OUTPUT.to_string());
        Ok(Box::new(TractLayers { names, probe }))
    }
}

/// A model's inputs at a batch size, as its file declares them (in the graph's order, which is
/// the order of the arrays in each dataset item).
pub(super) struct Inputs {
    shapes: Vec<Vec<usize>>,
    dtypes: Vec<InputDtype>,
    /// Values per item of each input.
    sizes: Vec<usize>,
}

impl Inputs {
    pub(super) fn of(onnx: &std::path::Path, batch: usize) -> TractResult<Inputs> {
        let declared = crate::model::onnx_file::graph_inputs(onnx).map_err(TractError::msg)?;
        Ok(Inputs {
            shapes: declared
                .iter()
                .map(|(_, item, _)| std::iter::once(batch).chain(item.iter().copied()).collect())
                .collect(),
            dtypes: declared.iter().map(|(_, _, d)| *d).collect(),
            sizes: declared.iter().map(|(_, item, _)| item.iter().product()).collect(),
        })
    }

    pub(super) fn set_facts(&self, mut model: InferenceModel) -> TractResult<InferenceModel> {
        for (i, (shape, dtype)) in self.shapes.iter().zip(&self.dtypes).enumerate() {
            model.set_input_fact(i, TypedFact::dt_shape(datum_type(*dtype), shape.as_slice()).into())?;
        }
        Ok(model)
    }

    /// One batch of dataset items (each the inputs' values concatenated) as one tensor per
    /// input, of its element type; integer inputs take whole numbers in range only.
    pub(super) fn tensors(&self, values: &[f32]) -> TractResult<TVec<TValue>> {
        let total: usize = self.sizes.iter().sum();
        let batch = self.shapes.first().map_or(0, |s| s[0]);
        if values.len() != batch * total {
            return Err(TractError::msg(format!("{} values for {batch} items of {total}", values.len())));
        }
        let mut out = TVec::new();
        let mut offset = 0;
        for ((shape, dtype), size) in self.shapes.iter().zip(&self.dtypes).zip(&self.sizes) {
            let part: Vec<f32> = if self.sizes.len() == 1 {
                values.to_vec()
            } else {
                (0..batch).flat_map(|b| values[b * total + offset..b * total + offset + size].iter().copied()).collect()
            };
            offset += size;
            dtype.check(&part).map_err(TractError::msg)?;
            let t = Tensor::from_shape(shape, &part)?;
            let t = if *dtype == InputDtype::F32 { t } else { t.cast_to_dt(datum_type(*dtype))?.into_owned() };
            out.push(t.into_tvalue());
        }
        Ok(out)
    }
}

fn datum_type(d: InputDtype) -> DatumType {
    match d {
        InputDtype::F32 => DatumType::F32,
        InputDtype::F16 => DatumType::F16,
        InputDtype::I64 => DatumType::I64,
        InputDtype::I32 => DatumType::I32,
        InputDtype::U8 => DatumType::U8,
    }
}

struct TractLayers {
    names: Vec<String>,
    probe: ValueProbe,
}

impl LayerSession for TractLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let values = self.probe.run(input).map_err(|e| BackendError::engine(ID, "capturing layer outputs", e))?;
        Ok(self.names.iter().cloned().zip(values).collect())
    }
}

/// An ONNX model whose outputs are chosen intermediate values: layer outputs for per-layer
/// error localization, layer inputs for calibration.
pub(crate) struct ValueProbe {
    plan: Arc<TypedRunnableModel>,
    inputs: Inputs,
}

impl ValueProbe {
    /// `names` are ONNX value names, or node names (their first output); with `node_first`,
    /// node names are tried first (a layer's node), else value names (a layer's input). With
    /// `with_output`, the model's own output comes last.
    pub(crate) fn new(
        onnx: &std::path::Path,
        batch: usize,
        names: &[String],
        node_first: bool,
        with_output: bool,
    ) -> TractResult<Self> {
        let inputs = Inputs::of(onnx, batch)?;
        let mut model = inputs.set_facts(tract_onnx::onnx().model_for_path(onnx)?)?;
        let output = model.output_outlets()?.first().copied();
        let mut outlets = Vec::new();
        for name in names {
            let node = || {
                model
                    .node_id_by_name(name)
                    .or_else(|_| model.node_id_by_name(&format!("{name}.out")))
                    .ok()
                    .map(|id| OutletId::new(id, 0))
            };
            let value = || model.find_outlet_label(name);
            let found = if node_first { node().or_else(value) } else { value().or_else(node) };
            match found {
                Some(o) => outlets.push(o),
                None => return Err(TractError::msg(format!("no node or value named {name} in {}", onnx.display()))),
            }
        }
        if with_output {
            outlets.push(output.ok_or_else(|| TractError::msg(format!("{} has no output", onnx.display())))?);
        }
        model.select_output_outlets(&outlets)?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok(ValueProbe { plan, inputs })
    }

    /// Runs one batch (exactly the prepared shape); one vector per name, in order.
    pub(crate) fn run(&self, input: &[f32]) -> TractResult<Vec<Vec<f32>>> {
        let outputs = self.plan.run(self.inputs.tensors(input)?)?;
        outputs.iter().map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
    }
}

/// Bytes held by a model's constants: plain tensors' bytes, and for packed (exotic) ones the
/// buffer sizes tract reports. Counted on the decluttered model, where weights are still
/// constants (f32 once dequantization graphs are folded; i8 for integer layers).
pub(super) fn constant_bytes(model: &TypedModel) -> u64 {
    use tract_onnx::tract_core::ops::konst::Const;
    model
        .nodes()
        .iter()
        .filter_map(|n| n.op_as::<Const>())
        .map(|c| {
            let t = c.val();
            match t.as_plain_ram_storage() {
                Some(p) => p.as_bytes().len() as u64,
                None => t
                    .exotic_fact()
                    .ok()
                    .flatten()
                    .and_then(|f| f.mem_size().as_i64())
                    .and_then(|b| u64::try_from(b).ok())
                    .unwrap_or(0),
            }
        })
        .sum()
}

/// `op×count` for each op of the optimized model, most frequent first: which kernels run.
pub(super) fn op_summary(model: &TypedModel) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for node in model.nodes() {
        // A matmul's name is the same for every datum type; its info names the kernel
        // tract picked (e.g. an i32-accumulating int8 kernel versus an f32 one).
        let kernel = node.op.info().ok().and_then(|lines| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix("Mult: ").map(|m| m.rsplit(" with ").next().unwrap_or(m).to_string()))
        });
        let name = match kernel {
            Some(k) => format!("{}{k}", node.op.name()),
            None => node.op.name().to_string(),
        };
        *counts.entry(name).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.iter().map(|(op, n)| format!("{op}×{n}")).collect::<Vec<_>>().join(", ")
}

struct TractSession {
    state: TypedSimpleState,
    plan: Arc<TypedRunnableModel>,
    stateful: bool,
    inputs: Inputs,
    input: Option<TVec<TValue>>,
    output: Option<TValue>,
}

impl Session for TractSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        self.input = Some(self.inputs.tensors(input).map_err(|e| BackendError::engine(ID, "copying the input", e))?);
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let input = self.input.clone().ok_or_else(|| BackendError::engine(ID, "running", "no input was set"))?;
        if self.stateful {
            self.state = self.plan.spawn().map_err(|e| BackendError::engine(ID, "creating the run state", e))?;
        }
        let mut outputs = self.state.run(input).map_err(|e| BackendError::engine(ID, "running", e))?;
        self.output = Some(outputs.remove(0));
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        tract_output(ID, self.output.as_ref())
    }
}

/// The last run's output tensor of a tract session as f32 values.
pub(super) fn tract_output(backend: BackendId, out: Option<&TValue>) -> Result<Vec<f32>, BackendError> {
    let out = out.ok_or_else(|| BackendError::engine(backend, "reading the output", "the model has not run"))?;
    out.to_plain_array_view::<f32>()
        .map(|v| v.iter().copied().collect())
        .map_err(|e| BackendError::engine(backend, "reading the output", e))
}
