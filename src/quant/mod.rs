//! Quantization schemes: the closed set of ways a reference model is turned into a variant.
//! (How each backend realizes a scheme is the backend's to say: `backend/<engine>/`.)
//!
//! A scheme names what a model's weighted layers become; a [`Plan`] assigns one scheme to
//! each layer (the suite's scheme, or an override's), and [`apply`] turns the fp32 reference
//! into the artifacts each backend loads.

pub mod budget;
pub mod calibrate;
pub mod checkpoint;
pub mod fake;
pub mod ggml;
pub mod gguf_lm;
pub mod int;
pub mod onnx_graph;
pub mod onnx_opset;
mod plan;

pub use plan::{Calibration, LayerInputs, LayerWidths, Plan, PlanError};

use std::path::{Path, PathBuf};

use crate::model::{Content, LoadedModel, ModelError, ModelKind};

/// Why a variant could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("cannot quantize or export {model}: {reason}")]
    Quantize { model: String, reason: String },
    #[error("cannot write the {model} variant as safetensors")]
    Serialize {
        model: String,
        #[source]
        source: crate::model::stored::SerializeError,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Confined(#[from] crate::files::FileError),
    #[error("cannot write {path}; check that the run folder is writable, or choose another with --out <dir>")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A scheme is written as its name (`int8-pc-sym`), as suites and records name it.
impl serde::Serialize for SchemeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for SchemeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        SchemeId::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown scheme \"{name}\" (known: {})", SchemeId::names().join(", ")))
        })
    }
}

/// A quantization scheme, as named in suites and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemeId {
    /// The fp32 reference, unchanged.
    F32,
    /// Every parameter rounded to IEEE half precision.
    F16,
    /// Every parameter rounded to bfloat16.
    Bf16,
    /// Weight-only int8, round to nearest with onnxruntime's scale/zero-point rules;
    /// biases and activations stay f32.
    Int8Weights { per_channel: bool, symmetric: bool },
    /// A GGML block format on the linear layers (quantized with candle-core's GGML quantizer).
    Ggml(ggml::GgmlType),
    /// Dynamic int8 (onnxruntime's `quantize_dynamic`): weights int8 per-channel symmetric;
    /// layer inputs u8 with a per-tensor scale computed from each batch at run time.
    Int8Dynamic,
    /// Static int8 W8A8: weights int8 per-channel symmetric; layer inputs u8 with a fixed
    /// per-tensor scale and zero point calibrated on the calibration split.
    Int8Static(calibrate::Calibrator),
    /// Weight-only int4 in groups of `group` consecutive weights along each row (the reduction
    /// axis), one scale (and zero point when asymmetric) per group; packed two per byte.
    Int4Group { group: u32, symmetric: bool },
}

/// How a layer's input is quantized, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationQuant {
    /// Float inputs.
    None,
    /// u8, range from each batch at run time.
    Dynamic,
    /// u8, range fixed by a calibrator.
    Static(calibrate::Calibrator),
}

const INT8: [(bool, bool, &str); 4] = [
    (false, true, "int8-pt-sym"),
    (false, false, "int8-pt-asym"),
    (true, true, "int8-pc-sym"),
    (true, false, "int8-pc-asym"),
];

impl SchemeId {
    pub const ALL: &'static [SchemeId] = &[
        SchemeId::F32,
        SchemeId::F16,
        SchemeId::Bf16,
        SchemeId::Int8Weights { per_channel: false, symmetric: true },
        SchemeId::Int8Weights { per_channel: false, symmetric: false },
        SchemeId::Int8Weights { per_channel: true, symmetric: true },
        SchemeId::Int8Weights { per_channel: true, symmetric: false },
        SchemeId::Int8Dynamic,
        SchemeId::Int8Static(calibrate::Calibrator::MinMax),
        SchemeId::Int8Static(calibrate::Calibrator::Percentile),
        SchemeId::Int8Static(calibrate::Calibrator::Entropy),
        SchemeId::Int8Static(calibrate::Calibrator::Mse),
        SchemeId::Int4Group { group: 32, symmetric: true },
        SchemeId::Int4Group { group: 32, symmetric: false },
        SchemeId::Int4Group { group: 64, symmetric: true },
        SchemeId::Int4Group { group: 64, symmetric: false },
        SchemeId::Int4Group { group: 128, symmetric: true },
        SchemeId::Int4Group { group: 128, symmetric: false },
        SchemeId::Ggml(ggml::GgmlType::Q4_0),
        SchemeId::Ggml(ggml::GgmlType::Q4_1),
        SchemeId::Ggml(ggml::GgmlType::Q5_0),
        SchemeId::Ggml(ggml::GgmlType::Q5_1),
        SchemeId::Ggml(ggml::GgmlType::Q8_0),
        SchemeId::Ggml(ggml::GgmlType::Q2K),
        SchemeId::Ggml(ggml::GgmlType::Q3K),
        SchemeId::Ggml(ggml::GgmlType::Q4K),
        SchemeId::Ggml(ggml::GgmlType::Q5K),
        SchemeId::Ggml(ggml::GgmlType::Q6K),
    ];

    pub fn name(self) -> String {
        match self {
            SchemeId::F32 => "f32".into(),
            SchemeId::F16 => "f16".into(),
            SchemeId::Bf16 => "bf16".into(),
            SchemeId::Int8Weights { per_channel, symmetric } => {
                INT8.iter().find(|(pc, sym, _)| *pc == per_channel && *sym == symmetric).map_or("int8", |x| x.2).into()
            }
            SchemeId::Ggml(t) => t.name().into(),
            SchemeId::Int8Dynamic => "int8-dynamic".into(),
            SchemeId::Int8Static(c) => format!("int8-static-{}", c.name()),
            SchemeId::Int4Group { group, symmetric } => {
                format!("int4-g{group}-{}", if symmetric { "sym" } else { "asym" })
            }
        }
    }

    /// Parses a scheme name; int4 accepts any group size `int4-g<N>-sym|asym` (N ≥ 2, even, so
    /// groups pack into whole bytes), not only the listed 32, 64 and 128.
    pub fn from_name(s: &str) -> Option<SchemeId> {
        if let Some(rest) = s.strip_prefix("int4-g") {
            let (g, sym) = rest.split_once('-')?;
            let symmetric = match sym {
                "sym" => true,
                "asym" => false,
                _ => return None,
            };
            let group: u32 = g.parse().ok().filter(|g: &u32| *g >= 2 && g.is_multiple_of(2))?;
            return (g == group.to_string()).then_some(SchemeId::Int4Group { group, symmetric });
        }
        Self::ALL.iter().copied().find(|x| x.name() == s)
    }

    pub fn names() -> Vec<String> {
        Self::ALL.iter().map(|s| s.name()).collect()
    }

    /// What the layer's input becomes.
    pub fn activations(self) -> ActivationQuant {
        match self {
            SchemeId::Int8Dynamic => ActivationQuant::Dynamic,
            SchemeId::Int8Static(c) => ActivationQuant::Static(c),
            _ => ActivationQuant::None,
        }
    }

    /// The integer form of the scheme's weights: type, symmetry, granularity (`None` for float
    /// and GGML schemes). Activation schemes store symmetric per-channel i8 weights.
    pub fn weight_format(self) -> Option<(int::IntType, bool, int::Granularity)> {
        match self {
            SchemeId::Int8Weights { per_channel, symmetric } => {
                let g = if per_channel { int::Granularity::PerChannel } else { int::Granularity::PerTensor };
                Some((int::IntType::I8, symmetric, g))
            }
            SchemeId::Int4Group { group, symmetric } => {
                let ty = if symmetric { int::IntType::I4 } else { int::IntType::U4 };
                Some((ty, symmetric, int::Granularity::Group(group as usize)))
            }
            SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => {
                Some((int::IntType::I8, true, int::Granularity::PerChannel))
            }
            SchemeId::F32 | SchemeId::F16 | SchemeId::Bf16 | SchemeId::Ggml(_) => None,
        }
    }

    /// Whether the scheme's layers live in a GGUF file (GGML types; f32 fits both kinds).
    pub fn is_ggml(self) -> bool {
        matches!(self, SchemeId::Ggml(_))
    }

    /// What is quantized, at which granularity, with which bits and calibration.
    pub fn description(self) -> String {
        match self {
            SchemeId::F32 => {
                "reference: weights and activations in IEEE fp32, nothing quantized (32 bits per weight)".into()
            }
            SchemeId::Int8Weights { per_channel, symmetric } => format!(
                "weight-only int8, {}, {} ({}), round to nearest even; biases and activations f32; no calibration",
                if per_channel {
                    "one scale per output channel"
                } else {
                    "one scale per tensor"
                },
                if symmetric { "symmetric" } else { "asymmetric" },
                if symmetric {
                    "range [-127, 127], zero point 0"
                } else {
                    "range [-128, 127], zero point per block"
                },
            ),
            SchemeId::Ggml(t) => t.description(),
            SchemeId::F16 => "every parameter rounded to IEEE f16 (round to nearest even, 16 bits per weight); which type each engine computes in is observed per run (compute in the layer evidence)".into(),
            SchemeId::Bf16 => "every parameter rounded to bfloat16 (round to nearest even, 16 bits per weight); which type each engine computes in is observed per run (compute in the layer evidence)".into(),
            SchemeId::Int8Dynamic => "dynamic int8 W8A8 (onnxruntime quantize_dynamic): weights int8 per-channel symmetric; layer inputs u8 asymmetric, one scale per tensor computed from each batch at run time; no calibration".into(),
            SchemeId::Int8Static(c) => format!(
                "static int8 W8A8 (onnxruntime quantize_static, QDQ): weights int8 per-channel symmetric, biases int32 at input scale × weight scale; each layer's input and output u8 asymmetric, one scale and zero point per tensor fixed by calibration on the [calibration] split (an output read only by a Relu after the Relu; an input that is another static layer's output through Relu/MaxPool/Flatten/Reshape/Identity/Squeeze/Unsqueeze takes its parameters): {} ({})",
                c.name(),
                c.description()
            ),
            SchemeId::Int4Group { group, symmetric } => format!(
                "weight-only int4, one scale per group of {group} weights along each row{}, round to nearest even; packed two per byte; biases and activations f32; the group must divide every quantized layer's row width; no calibration",
                if symmetric { ", symmetric (range [-8, 7], zero point 0)" } else { " and a zero point, asymmetric (u4 range [0, 15])" }
            ),
        }
    }

    /// How precisely the scheme stores a weight, for picking a language model's reference
    /// variant: the format's bits per weight (f16 ranks above bf16, whose mantissa is shorter;
    /// GGML types count their block scales). `None` for activation schemes.
    pub fn weight_precision(self) -> Option<f64> {
        match self {
            SchemeId::F32 => Some(32.0),
            SchemeId::F16 => Some(16.0),
            SchemeId::Bf16 => Some(15.9),
            SchemeId::Int8Weights { per_channel, .. } => Some(if per_channel { 8.0 } else { 7.9 }),
            SchemeId::Ggml(ty) => Some(ty.format_bits()),
            SchemeId::Int4Group { group, .. } => Some(4.0 + 32.0 / group as f64),
            SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => None,
        }
    }
}

/// A reference model after a plan: the artifact each backend loads.
/// Serializable with its paths, which a bundle writes relative to itself
/// ([`crate::bundle`]): what a target device builds the variant from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    pub model: String,
    /// What the model is: what the backends build from the artifact.
    pub kind: ModelKind,
    /// Shape of one input item (the batch axis excluded), e.g. `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    pub plan: Plan,
    /// Each weighted layer's scheme as the artifact holds it: the plan's, except where the
    /// variant keeps a layer in f32 (a zoo conv under a GGML scheme: candle's conv has no GGML
    /// kernel). What backends classify each layer's realization against.
    pub layer_schemes: Vec<(String, SchemeId)>,
    /// What candle loads: safetensors (float or integer weights) or GGUF (GGML types).
    pub candle_artifact: std::path::PathBuf,
    /// ONNX model: what tract loads.
    pub onnx: std::path::PathBuf,
    /// The same variant with its static int8 layers in the QDQ form onnxruntime's own
    /// `quantize_static` writes ([`crate::model::onnx::IntegerForm::Qdq`]), which ONNX Runtime
    /// fuses into its int8 kernels; `None` when no layer is static (ONNX Runtime loads `onnx`).
    pub onnx_qdq: Option<std::path::PathBuf>,
    /// How each parameter is stored (`name=storage, ...`).
    pub weight_storage: String,
    /// How each quantized layer input is quantized (`layer=u8 dynamic`, or the calibrated
    /// range, scale and zero point); empty when no input is.
    pub activation_quant: String,
    /// Effective bits per parameter, scales and zero points included.
    pub bits_per_weight: f64,
}

impl Variant {
    /// The zoo architecture, for zoo models.
    pub fn zoo(&self) -> Option<crate::zoo::ZooModelId> {
        self.kind.zoo()
    }

    /// The ONNX file ONNX Runtime loads: the QDQ form where there is one.
    pub fn ort_onnx(&self) -> &std::path::Path {
        self.onnx_qdq.as_deref().unwrap_or(&self.onnx)
    }

    /// The scheme the artifact holds layer `layer` in (f32 for a layer the plan does not name).
    pub fn layer_scheme(&self, layer: &str) -> SchemeId {
        self.layer_schemes.iter().find(|(l, _)| l == layer).map_or(SchemeId::F32, |(_, s)| *s)
    }

    /// The reference itself, unquantized: its safetensors for candle, `onnx` for tract.
    pub fn f32_reference(reference: &crate::model::Reference, onnx: std::path::PathBuf) -> Variant {
        let plan = Plan::uniform(reference.zoo, SchemeId::F32);
        Variant {
            model: reference.name.clone(),
            kind: ModelKind::Zoo { zoo: reference.zoo, weights: reference.weights_path.clone() },
            input_shape: reference.zoo.input_shape().to_vec(),
            layer_schemes: plan.layers.clone(),
            plan,
            candle_artifact: reference.weights_path.clone(),
            onnx,
            onnx_qdq: None,
            weight_storage: "f32".into(),
            activation_quant: String::new(),
            bits_per_weight: 32.0,
        }
    }
}

/// Where a static layer's input comes from, for its quantization parameters.
#[derive(Debug, Clone)]
pub(crate) struct StaticSource {
    /// The statically quantized layer whose output reaches this input through ops that keep
    /// values on its quantization grid (`Relu`, `MaxPool`, `Flatten`, `Reshape`, `Identity`,
    /// `Squeeze`, `Unsqueeze`), and that
    /// output's parameters: the input reuses them, as onnxruntime's QDQ quantizer shares one
    /// scale along such a chain (the requantization is then lossless).
    pub layer: String,
    pub output: int::QParams,
}

/// A static layer's input and output quantization, and how the record describes it. The output
/// range is calibrated on the layer's fp32 outputs, after the `Relu` when one is the output's only
/// reader (`relu_follows`): its zero point is then 0 and the quantization clamps at zero, as
/// onnxruntime fuses Conv, Relu and QuantizeLinear. The input reuses `source`'s parameters, or
/// is calibrated on the layer's own fp32 inputs.
pub(crate) fn static_quant(
    layer: &str,
    c: calibrate::Calibrator,
    cal: &Calibration,
    relu_follows: bool,
    source: Option<&StaticSource>,
) -> Result<(crate::model::stored::InputQuant, String), String> {
    let how = match c {
        calibrate::Calibrator::Percentile => format!("percentile {}", cal.percentile),
        _ => c.name().to_string(),
    };
    let side = |range: (f32, f32), p: int::QParams| {
        format!("[{:.5}, {:.5}] scale {:.6e} zp {}", range.0, range.1, p.scale, p.zero_point)
    };
    let outputs = cal.outputs.get(layer).ok_or_else(|| format!("{layer}: no calibration outputs were collected"))?;
    let out_range = if relu_follows {
        let clipped: Vec<f32> = outputs.iter().map(|v| v.max(0.0)).collect();
        c.range(&clipped, cal.percentile)
    } else {
        c.range(outputs, cal.percentile)
    };
    let output = calibrate::activation_params(out_range);
    let (input, in_text) = match source {
        Some(s) => (s.output, format!("{}'s output", s.layer)),
        None => {
            let inputs =
                cal.inputs.get(layer).ok_or_else(|| format!("{layer}: no calibration inputs were collected"))?;
            let range = c.range(inputs, cal.percentile);
            let p = calibrate::activation_params(range);
            (p, side(range, p))
        }
    };
    let text = format!(
        "{layer}=u8 static in {in_text}, out{} {} ({how}, {} calibration items)",
        if relu_follows { " (after relu)" } else { "" },
        side(out_range, output),
        cal.items
    );
    Ok((crate::model::stored::InputQuant::Static { input, output }, text))
}

/// For a zoo layer under a static scheme: whether its output's only reader is a `Relu`, and
/// the statically quantized layer (already in `inputs`) whose output reaches its input through
/// `Relu`, `MaxPool2d` and `Flatten` only.
fn zoo_static_context(
    zoo: crate::zoo::ZooModelId,
    layer: &str,
    inputs: &crate::model::stored::InputQuants,
) -> (bool, Option<StaticSource>) {
    use crate::zoo::Layer;
    let layers = zoo.layers();
    let name = |l: &Layer| match *l {
        Layer::Conv2d { name, .. } | Layer::Linear { name, .. } => Some(name),
        _ => None,
    };
    let Some(at) = layers.iter().position(|l| name(l) == Some(layer)) else { return (false, None) };
    let relu_follows = matches!(layers.get(at + 1), Some(Layer::Relu));
    let source = layers[..at].iter().rev().find_map(|l| match *l {
        Layer::Relu | Layer::MaxPool2d { .. } | Layer::Flatten => None,
        _ => Some(name(l)),
    });
    let source = source.flatten().and_then(|s| match inputs.get(s) {
        Some(crate::model::stored::InputQuant::Static { output, .. }) => {
            Some(StaticSource { layer: s.to_string(), output: *output })
        }
        _ => None,
    });
    (relu_follows, source)
}

/// Writes the artifact `file` (a plain file name: [`crate::files::file_stem`] of the model's name
/// plus the scheme and an extension) directly under `dir`, mapping failure to an error naming it.
pub(crate) fn write_artifact(
    dir: &std::path::Path,
    file: String,
    bytes: &[u8],
) -> Result<std::path::PathBuf, VariantError> {
    let path = crate::files::join(dir, &file)?;
    std::fs::write(&path, bytes).map_err(|source| VariantError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Applies `plan` to `reference`, writing its artifacts under `artifacts_dir`. Static layers
/// take their input ranges from `calibration`.
pub fn apply(
    plan: &Plan,
    reference: &crate::model::Reference,
    artifacts_dir: &std::path::Path,
    calibration: Option<&Calibration>,
) -> Result<Variant, VariantError> {
    use crate::model::stored::{self, InputQuant, InputQuants, Stored, StoredParams};
    let export_err = |reason: String| VariantError::Quantize { model: reference.name.clone(), reason };
    plan.check(reference.zoo).map_err(|e| export_err(e.to_string()))?;
    let stem = format!("{}.{}", crate::files::file_stem(&reference.name), plan.scheme.name());
    if plan.is_ggml() {
        return ggml::apply(plan, reference, artifacts_dir, &stem);
    }
    let mut params = StoredParams::new();
    let mut inputs = InputQuants::new();
    let mut activation_quant = Vec::new();
    for (layer, scheme) in &plan.layers {
        for suffix in ["weight", "bias"] {
            let key = format!("{layer}.{suffix}");
            let t = reference.tensors.get(&key).ok_or_else(|| export_err(format!("missing tensor {key}")))?;
            let f = Stored::from_tensor(t).map_err(|e| export_err(e.to_string()))?;
            let Stored::F32 { shape, values } = &f else { unreachable!("from_tensor gives f32") };
            let int = |ty, symmetric, g| {
                int::quantize_weight(values, shape, ty, symmetric, g)
                    .map(Stored::Int)
                    .map_err(|e| export_err(format!("{key}: {e}")))
            };
            let is_weight = suffix == "weight";
            let stored = match *scheme {
                SchemeId::F16 | SchemeId::Bf16 => {
                    Stored::half(t, *scheme == SchemeId::Bf16).map_err(|e| export_err(e.to_string()))?
                }
                _ if !is_weight => f,
                SchemeId::F32 => f,
                SchemeId::Int8Weights { per_channel, symmetric } => {
                    let g = if per_channel { int::Granularity::PerChannel } else { int::Granularity::PerTensor };
                    int(int::IntType::I8, symmetric, g)?
                }
                SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => {
                    int(int::IntType::I8, true, int::Granularity::PerChannel)?
                }
                SchemeId::Int4Group { group, symmetric } => {
                    let ty = if symmetric { int::IntType::I4 } else { int::IntType::U4 };
                    int(ty, symmetric, int::Granularity::Group(group as usize))?
                }
                SchemeId::Ggml(_) => return Err(export_err(format!("{key}: GGML layer outside a GGUF plan"))),
            };
            params.insert(key, stored);
        }
        match scheme.activations() {
            ActivationQuant::None => {}
            ActivationQuant::Dynamic => {
                inputs.insert(layer.clone(), InputQuant::Dynamic);
                activation_quant.push(format!("{layer}=u8 dynamic"));
            }
            ActivationQuant::Static(c) => {
                let cal = calibration
                    .ok_or_else(|| export_err(format!("{}: static scheme without calibration data", scheme.name())))?;
                let (relu_follows, source) = zoo_static_context(reference.zoo, layer, &inputs);
                let (iq, text) = static_quant(layer, c, cal, relu_follows, source.as_ref()).map_err(export_err)?;
                let InputQuant::Static { input, .. } = iq else { unreachable!("static_quant gives static") };
                let bias_key = format!("{layer}.bias");
                if let (Some(Stored::Int(q)), Some(Stored::F32 { values, .. })) =
                    (params.get(&format!("{layer}.weight")), params.get(&bias_key))
                {
                    let scales: Vec<f32> = q.params.iter().map(|p| p.scale).collect();
                    let rounded = crate::model::qformat::static_bias(values, input, &scales).1;
                    if let Some(Stored::F32 { values, .. }) = params.get_mut(&bias_key) {
                        *values = rounded;
                    }
                }
                inputs.insert(layer.clone(), iq);
                activation_quant.push(text);
            }
        }
    }
    use crate::model::onnx::{export_stored, IntegerForm};
    let onnx = write_artifact(
        artifacts_dir,
        format!("{stem}.onnx"),
        &export_stored(&reference.name, reference.zoo, &params, &inputs, IntegerForm::Integer)?,
    )?;
    let onnx_qdq = if inputs.values().any(|q| matches!(q, InputQuant::Static { .. })) {
        let bytes = export_stored(&reference.name, reference.zoo, &params, &inputs, IntegerForm::Qdq)?;
        Some(write_artifact(artifacts_dir, format!("{stem}.qdq.onnx"), &bytes)?)
    } else {
        None
    };
    let candle_artifact = if plan.layers.iter().all(|(_, s)| *s == SchemeId::F32) {
        reference.weights_path.clone()
    } else {
        write_artifact(
            artifacts_dir,
            format!("{stem}.safetensors"),
            &stored::to_safetensors(&params, &inputs, &plan.scheme.name())
                .map_err(|source| VariantError::Serialize { model: reference.name.clone(), source })?,
        )?
    };
    Ok(Variant {
        model: reference.name.clone(),
        kind: ModelKind::Zoo { zoo: reference.zoo, weights: reference.weights_path.clone() },
        input_shape: reference.zoo.input_shape().to_vec(),
        layer_schemes: plan.layers.clone(),
        plan: plan.clone(),
        candle_artifact,
        onnx,
        onnx_qdq,
        weight_storage: stored::describe_storage(&params),
        activation_quant: activation_quant.join(", "),
        bits_per_weight: stored::bits_per_weight(&params),
    })
}

/// Applies `plan` to a loaded model, whatever its kind, writing the variant's artifacts under
/// `artifacts`. Static layers take their input ranges from `calibration`.
pub fn apply_model(
    model: &LoadedModel,
    plan: &Plan,
    artifacts: &Path,
    calibration: Option<&Calibration>,
) -> Result<Variant, VariantError> {
    let all_f32 = plan.layers.iter().all(|(_, s)| *s == SchemeId::F32);
    let variant = match &model.content {
        Content::Zoo(r) => apply(plan, r, artifacts, calibration),
        Content::GgufLm(g) => gguf_lm::apply(plan, g, &model.name, artifacts),
        Content::Onnx { .. } | Content::Bert(_) if all_f32 => Ok(Variant { plan: plan.clone(), ..f32_variant(model) }),
        Content::Onnx { model: m, .. } => onnx_graph::apply(plan, m, &model.name, artifacts, calibration),
        Content::Bert(b) => checkpoint::apply(plan, b, &model.name, artifacts),
    }?;
    // The model as the suite declared it (a variant of a file keeps its declaration).
    Ok(Variant { kind: model.kind.clone(), ..variant })
}

/// The loaded model itself, unquantized, as a variant: what its f32 cases and its reference run.
/// A GGUF language model's is its file as stored (its cases run requantized variants).
pub fn f32_variant(model: &LoadedModel) -> Variant {
    let plan = Plan::uniform(model.layers.as_slice(), SchemeId::F32);
    let base = |artifact: PathBuf, onnx: PathBuf, input_shape: Vec<usize>, storage: String| Variant {
        model: model.name.clone(),
        kind: model.kind.clone(),
        input_shape,
        layer_schemes: plan.layers.clone(),
        plan: plan.clone(),
        candle_artifact: artifact,
        onnx,
        onnx_qdq: None,
        weight_storage: storage,
        activation_quant: String::new(),
        bits_per_weight: 32.0,
    };
    match &model.content {
        Content::Zoo(r) => Variant::f32_reference(r, PathBuf::new()),
        Content::Onnx { model: m, f32_file } => {
            let mut v = base(f32_file.clone(), f32_file.clone(), m.inputs[0].item_shape.clone(), "f32".into());
            v.layer_schemes.extend(m.prequantized.iter().map(|n| (n.clone(), SchemeId::F32)));
            v
        }
        Content::Bert(b) => base(b.path.clone(), PathBuf::new(), Vec::new(), "f32".into()),
        Content::GgufLm(g) => {
            base(g.path.clone(), PathBuf::new(), Vec::new(), format!("{} as stored", g.source_precision()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(SchemeId::names().len(), SchemeId::ALL.len());
        for s in SchemeId::ALL {
            assert_eq!(SchemeId::from_name(&s.name()), Some(*s));
        }
        assert_eq!(SchemeId::from_name("int3"), None);
        assert_eq!(SchemeId::from_name("int4-g16-asym"), Some(SchemeId::Int4Group { group: 16, symmetric: false }));
        for bad in ["int4-g0-sym", "int4-g7-sym", "int4-g032-sym", "int4-g32", "int4-g32-sim", "int4-gx-sym"] {
            assert_eq!(SchemeId::from_name(bad), None, "{bad}");
        }
        assert_eq!(
            SchemeId::from_name("int8-static-entropy"),
            Some(SchemeId::Int8Static(calibrate::Calibrator::Entropy))
        );
        assert_eq!(
            SchemeId::from_name("int8-pc-asym"),
            Some(SchemeId::Int8Weights { per_channel: true, symmetric: false })
        );
    }
}
