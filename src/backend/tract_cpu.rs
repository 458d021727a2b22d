//! tract on the CPU: the variant's ONNX file, with a concrete input shape, optimized.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::{Backend, BackendError, BackendId, LayerSession, Prepared, Session};
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
        let shape = batch_shape(batch, &variant.input_shape);
        // into_optimized() is declutter + optimize; split so the weights can be counted as
        // constants between the two (codegen moves them into the kernels' packed operands).
        let mut weights_bytes = None;
        let mut dt = DatumType::F32;
        let plan = tract_onnx::onnx()
            .model_for_path(&variant.onnx)
            .and_then(|m| {
                dt = input_type(&m)?;
                m.with_input_fact(0, TypedFact::dt_shape(dt, &*shape).into())
            })
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
            session: Box::new(TractSession { state, plan, stateful, shape, dt, input: None, output: None }),
            artifact: variant.onnx.clone(),
            artifact_bytes,
            evidence,
            weights_bytes,
        })
    }

    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        // Float layers' nodes carry the layer's name; zoo integer layers end in `<name>.out`.
        let mut names: Vec<String> = variant.plan.layers.iter().map(|(n, _)| n.clone()).collect();
        let probe = ValueProbe::new(&variant.onnx, &batch_shape(batch, &variant.input_shape), &names, true, true)
            .map_err(|e| BackendError::engine(ID, "capturing layer outputs", e))?;
        names.push(super::MODEL_OUTPUT.to_string());
        Ok(Box::new(TractLayers { names, probe }))
    }
}

/// The element type of the model's input as the file declares it (f32 when it does not say).
fn input_type(model: &InferenceModel) -> TractResult<DatumType> {
    use tract_onnx::tract_hir::infer::Factoid;
    Ok(model.input_fact(0)?.datum_type.concretize().unwrap_or(DatumType::F32))
}

/// One batch of a dataset's f32 values as the input's element type; integer inputs take whole
/// numbers in range only.
fn input_tensor(shape: &[usize], values: &[f32], dt: DatumType) -> TractResult<Tensor> {
    use crate::model::onnx_file::InputDtype;
    let t = Tensor::from_shape(shape, values)?;
    let check = match dt {
        DatumType::I64 => InputDtype::I64,
        DatumType::I32 => InputDtype::I32,
        DatumType::U8 => InputDtype::U8,
        _ => InputDtype::F32,
    };
    check.check(values).map_err(TractError::msg)?;
    if dt == DatumType::F32 {
        return Ok(t);
    }
    Ok(t.cast_to_dt(dt)?.into_owned())
}

fn batch_shape(batch: usize, item: &[usize]) -> Vec<usize> {
    std::iter::once(batch).chain(item.iter().copied()).collect()
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
    shape: Vec<usize>,
    dt: DatumType,
}

impl ValueProbe {
    /// `names` are ONNX value names, or node names (their first output); with `node_first`,
    /// node names are tried first (a layer's node), else value names (a layer's input). With
    /// `with_output`, the model's own output comes last.
    pub(crate) fn new(
        onnx: &std::path::Path,
        shape: &[usize],
        names: &[String],
        node_first: bool,
        with_output: bool,
    ) -> TractResult<Self> {
        let mut model = tract_onnx::onnx().model_for_path(onnx)?;
        let dt = input_type(&model)?;
        model.set_input_fact(0, TypedFact::dt_shape(dt, shape).into())?;
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
        Ok(ValueProbe { plan, shape: shape.to_vec(), dt })
    }

    /// Runs one batch (exactly the prepared shape); one vector per name, in order.
    pub(crate) fn run(&self, input: &[f32]) -> TractResult<Vec<Vec<f32>>> {
        let x = input_tensor(&self.shape, input, self.dt)?;
        let outputs = self.plan.run(tvec![x.into_tvalue()])?;
        outputs.iter().map(|t| Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())).collect()
    }
}

/// Bytes held by a model's constants: plain tensors' bytes, and for packed (exotic) ones the
/// buffer sizes tract reports. Counted on the decluttered model, where weights are still
/// constants (f32 once dequantization graphs are folded; i8 for integer layers).
fn constant_bytes(model: &TypedModel) -> u64 {
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
fn op_summary(model: &TypedModel) -> String {
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
    shape: Vec<usize>,
    dt: DatumType,
    input: Option<TValue>,
    output: Option<TValue>,
}

impl Session for TractSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        let t =
            input_tensor(&self.shape, input, self.dt).map_err(|e| BackendError::engine(ID, "copying the input", e))?;
        self.input = Some(t.into_tvalue());
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let input = self.input.clone().ok_or_else(|| BackendError::engine(ID, "running", "no input was set"))?;
        if self.stateful {
            self.state = self.plan.spawn().map_err(|e| BackendError::engine(ID, "creating the run state", e))?;
        }
        let mut outputs = self.state.run(tvec![input]).map_err(|e| BackendError::engine(ID, "running", e))?;
        self.output = Some(outputs.remove(0));
        Ok(())
    }

    fn output(&self) -> Result<Vec<f32>, BackendError> {
        let out = self
            .output
            .as_ref()
            .ok_or_else(|| BackendError::engine(ID, "reading the output", "the model has not run"))?;
        out.to_plain_array_view::<f32>()
            .map(|v| v.iter().copied().collect())
            .map_err(|e| BackendError::engine(ID, "reading the output", e))
    }
}
