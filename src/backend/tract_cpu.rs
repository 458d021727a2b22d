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
        let [c, h, w] = variant.zoo.input_shape();
        // into_optimized() is declutter + optimize; split so the weights can be counted as
        // constants between the two (codegen moves them into the kernels' packed operands).
        let mut weights_bytes = None;
        let plan = tract_onnx::onnx()
            .model_for_path(&variant.onnx)
            .and_then(|m| m.with_input_fact(0, f32::fact([batch, c, h, w]).into()))
            .and_then(|m| m.into_typed())
            .and_then(|mut m| {
                m.declutter()?;
                weights_bytes = Some(constant_bytes(&m));
                m.optimize()?;
                m.into_runnable()
            })
            .map_err(|e| BackendError::engine(ID, "loading and optimizing the ONNX model", e))?;
        let evidence = op_summary(plan.model());
        let state = plan.spawn().map_err(|e| BackendError::engine(ID, "creating the run state", e))?;
        let artifact_bytes = std::fs::metadata(&variant.onnx)
            .map(|m| m.len())
            .map_err(|e| BackendError::engine(ID, "reading the artifact size", e))?;
        Ok(Prepared {
            session: Box::new(TractSession { state, _plan: plan, shape: [batch, c, h, w], input: None, output: None }),
            artifact: variant.onnx.clone(),
            artifact_bytes,
            evidence,
            weights_bytes,
        })
    }

    fn layer_session(&self, variant: &Variant, batch: usize) -> Result<Box<dyn LayerSession>, BackendError> {
        let (names, plan) =
            Self::layer_plan(variant, batch).map_err(|e| BackendError::engine(ID, "capturing layer outputs", e))?;
        let [c, h, w] = variant.zoo.input_shape();
        Ok(Box::new(TractLayers { names, plan, shape: [batch, c, h, w] }))
    }
}

struct TractLayers {
    names: Vec<String>,
    plan: Arc<TypedRunnableModel>,
    shape: [usize; 4],
}

impl LayerSession for TractLayers {
    fn run(&mut self, input: &[f32]) -> Result<Vec<(String, Vec<f32>)>, BackendError> {
        let err = |e: TractError| BackendError::engine(ID, "capturing layer outputs", e);
        let x = Tensor::from_shape(&self.shape, input).map_err(err)?;
        let outputs = self.plan.run(tvec![x.into_tvalue()]).map_err(err)?;
        self.names
            .iter()
            .zip(outputs)
            .map(|(n, t)| t.to_plain_array_view::<f32>().map(|v| (n.clone(), v.iter().copied().collect())).map_err(err))
            .collect()
    }
}

impl TractCpu {
    /// The variant's ONNX model whose outputs are the weighted layers' outputs, optimized.
    fn layer_plan(variant: &Variant, batch: usize) -> TractResult<(Vec<String>, Arc<TypedRunnableModel>)> {
        let [c, h, w] = variant.zoo.input_shape();
        let mut model = tract_onnx::onnx().model_for_path(&variant.onnx)?;
        model.set_input_fact(0, f32::fact([batch, c, h, w]).into())?;
        let layers = variant.zoo.weighted_layers();
        let mut outlets = Vec::new();
        for (name, _) in &layers {
            // Float layers' nodes carry the layer's name; integer layers end in `<name>.out`.
            let id = match model.node_id_by_name(name).or_else(|_| model.node_id_by_name(&format!("{name}.out"))) {
                Ok(id) => id,
                Err(_) => {
                    return Err(TractError::msg(format!("no node for layer {name} in {}", variant.onnx.display())))
                }
            };
            outlets.push(OutletId::new(id, 0));
        }
        model.select_output_outlets(&outlets)?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok((layers.iter().map(|(n, _)| n.to_string()).collect(), plan))
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
    _plan: Arc<TypedRunnableModel>,
    shape: [usize; 4],
    input: Option<TValue>,
    output: Option<TValue>,
}

impl Session for TractSession {
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        let t = Tensor::from_shape(&self.shape, input).map_err(|e| BackendError::engine(ID, "copying the input", e))?;
        self.input = Some(t.into_tvalue());
        Ok(())
    }

    fn run(&mut self) -> Result<(), BackendError> {
        let input = self.input.clone().ok_or_else(|| BackendError::engine(ID, "running", "no input was set"))?;
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
