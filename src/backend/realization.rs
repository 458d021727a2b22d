//! Realization: how an engine runs a variant's quantized layers.
//!
//! Two answers exist for every case, and records keep both:
//! - the **expectation** ([`super::Backend::capability`]), asked before anything runs: it decides
//!   skipping and `require_native`'s early refusal;
//! - the **observation**: after prepare, each backend reads from its own objects what it made of
//!   every weighted layer ([`LayerEvidence`]: the type the weight is stored in, the type the
//!   engine computes in, the kernel or op it chose, the device). A layer's realization follows
//!   from those facts alone ([`LayerEvidence::classify`]), and the record's realization is the
//!   weakest layer's ([`observed`]).

use serde::{Deserialize, Serialize};

use crate::quant::SchemeId;

/// How a backend runs a variant: expected before running (any of these), or observed after
/// prepare (never `Unsupported`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Realization {
    /// The engine's own kernels for every quantized layer's type run, on the backend's device.
    Native,
    /// The types' own kernels run, but on the host CPU of a GPU backend: the GPU engine has no
    /// kernel for them. Not native for `require_native`.
    CpuFallback,
    /// Some layer's weights are stored quantized but computed in a wider type (dequantized at
    /// load or on every call).
    Emulated,
    /// The engine did not say what some layer computes in; nothing is claimed.
    NotObserved,
    /// The backend cannot run this at all; the case is skipped with this reason.
    Unsupported(String),
}

impl Realization {
    pub fn name(&self) -> &'static str {
        match self {
            Realization::Native => "native",
            Realization::CpuFallback => "cpu-fallback",
            Realization::Emulated => "emulated",
            Realization::NotObserved => "not-observed",
            Realization::Unsupported(_) => "unsupported",
        }
    }

    /// Strongest first: native, cpu-fallback, emulated, not-observed, unsupported.
    fn rank(&self) -> u8 {
        match self {
            Realization::Native => 0,
            Realization::CpuFallback => 1,
            Realization::Emulated => 2,
            Realization::NotObserved => 3,
            Realization::Unsupported(_) => 4,
        }
    }

    /// The weaker of two.
    pub fn weaker(self, other: Realization) -> Realization {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// The type an engine computes a layer in, as it reports it. Records write it as `f32`, `f16`,
/// `bf16`, `int8`, `ggml:<type>` or `not-observable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Compute {
    F32,
    F16,
    Bf16,
    /// Integer kernels: u8/i8 operands, i32 accumulation.
    Int8,
    /// GGML blocks of this type (`q4k`, as suites name it), dotted with quantized activations.
    Ggml(String),
    /// The engine does not say.
    NotObservable,
}

impl From<Compute> for String {
    fn from(c: Compute) -> String {
        match c {
            Compute::F32 => "f32".into(),
            Compute::F16 => "f16".into(),
            Compute::Bf16 => "bf16".into(),
            Compute::Int8 => "int8".into(),
            Compute::Ggml(t) => format!("ggml:{t}"),
            Compute::NotObservable => "not-observable".into(),
        }
    }
}

impl TryFrom<String> for Compute {
    type Error = String;

    fn try_from(s: String) -> Result<Compute, String> {
        Ok(match s.as_str() {
            "f32" => Compute::F32,
            "f16" => Compute::F16,
            "bf16" => Compute::Bf16,
            "int8" => Compute::Int8,
            "not-observable" => Compute::NotObservable,
            other => match other.strip_prefix("ggml:") {
                Some(t) => Compute::Ggml(t.to_string()),
                None => return Err(format!("\"{other}\" is not a compute type")),
            },
        })
    }
}

impl std::fmt::Display for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compute::F32 => f.write_str("f32"),
            Compute::F16 => f.write_str("f16"),
            Compute::Bf16 => f.write_str("bf16"),
            Compute::Int8 => f.write_str("int8 (i32 accumulation)"),
            Compute::Ggml(t) => write!(f, "{t} blocks"),
            Compute::NotObservable => f.write_str("not observable"),
        }
    }
}

/// The type a weight is stored in, as the engine found it in the artifact it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    Bf16,
    I8,
    U8,
    I4,
    U4,
    /// GGML blocks of this type (`q4k`).
    Ggml(String),
    /// The artifact holds no such weight where the engine looked.
    NotFound,
    /// Something else, as the engine names it.
    Other(String),
}

impl WeightType {
    /// From a type's short name (`i8`, `q4k`, `f16`), as artifacts and records write it.
    pub fn from_name(name: &str) -> WeightType {
        match name {
            "f32" => WeightType::F32,
            "f16" => WeightType::F16,
            "bf16" => WeightType::Bf16,
            "i8" => WeightType::I8,
            "u8" => WeightType::U8,
            "i4" => WeightType::I4,
            "u4" => WeightType::U4,
            "not found" => WeightType::NotFound,
            t if crate::quant::ggml::GgmlType::ALL.iter().any(|g| g.name() == t) => WeightType::Ggml(t.to_string()),
            other => WeightType::Other(other.to_string()),
        }
    }

    fn name(&self) -> &str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Bf16 => "bf16",
            WeightType::I8 => "i8",
            WeightType::U8 => "u8",
            WeightType::I4 => "i4",
            WeightType::U4 => "u4",
            WeightType::NotFound => "not found",
            WeightType::Ggml(t) | WeightType::Other(t) => t,
        }
    }

    /// For a quantized type, the compute type of its own kernels (`Some(None)`: none exists);
    /// `None` for a float or unknown type.
    fn quantized(&self) -> Option<Option<Compute>> {
        match self {
            WeightType::I8 | WeightType::U8 => Some(Some(Compute::Int8)),
            WeightType::I4 | WeightType::U4 => Some(None),
            WeightType::Ggml(t) => Some(Some(Compute::Ggml(t.clone()))),
            _ => None,
        }
    }
}

/// A weight as stored: its type, and the ops the artifact applies to it on its way to the
/// layer (`i8 → DequantizeLinear`). Records write it as that text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct StoredWeight {
    pub ty: WeightType,
    pub via: Vec<String>,
}

impl StoredWeight {
    pub fn new(ty: WeightType) -> StoredWeight {
        StoredWeight { ty, via: Vec::new() }
    }

    pub fn named(name: &str) -> StoredWeight {
        StoredWeight::new(WeightType::from_name(name))
    }
}

impl std::fmt::Display for StoredWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ty.name())?;
        for op in &self.via {
            write!(f, " → {op}")?;
        }
        Ok(())
    }
}

impl From<StoredWeight> for String {
    fn from(s: StoredWeight) -> String {
        s.to_string()
    }
}

impl From<String> for StoredWeight {
    fn from(s: String) -> StoredWeight {
        let mut parts = s.split(" → ");
        let ty = WeightType::from_name(parts.next().unwrap_or(""));
        StoredWeight { ty, via: parts.map(str::to_string).collect() }
    }
}

/// One weighted layer's realization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerRealization {
    /// The variant keeps the layer in f32: nothing to realize (it runs in float, natively).
    KeptFloat,
    Native,
    CpuFallback,
    Emulated,
    NotObserved,
}

impl LayerRealization {
    pub fn name(self) -> &'static str {
        match self {
            LayerRealization::KeptFloat => "kept-float",
            LayerRealization::Native => "native",
            LayerRealization::CpuFallback => "cpu-fallback",
            LayerRealization::Emulated => "emulated",
            LayerRealization::NotObserved => "not-observed",
        }
    }
}

/// What an engine made of one weighted layer, read from its own objects after prepare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEvidence {
    pub layer: String,
    /// The layer's scheme as the variant holds it (the plan's, or f32 where the variant keeps
    /// the layer in float, like a conv under a GGML scheme).
    pub scheme: String,
    /// The weight's type as the engine found it in the artifact, e.g. `q4k`, `i8`, `f16`.
    pub stored: StoredWeight,
    /// The type the engine computes the layer in.
    pub compute: Compute,
    /// The op or kernel the engine chose, in its own words (or `not observable`).
    pub kernel: String,
    /// Where the layer runs: `cpu`, `cuda:0`.
    pub device: String,
    /// Work the engine repeats on the weights at every run (dequantization ops it did not fold
    /// into constants), if any.
    #[serde(default)]
    pub per_call: Option<String>,
    /// Where the observation was read, e.g. `QMatMul of the built model`, `optimized plan`.
    pub source: String,
    pub realization: LayerRealization,
}

impl LayerEvidence {
    /// A layer's realization from what the engine reported. The layer's type is its scheme's,
    /// or, for a layer the variant keeps in f32, the type the artifact stores it in (a model
    /// file that arrives quantized: its int8 weights are quantized whatever the scheme). A
    /// float layer is kept float on the backend's device (`cpu-fallback` when a GPU backend runs
    /// it on the CPU); a quantized one is native when the engine computes in that type's own
    /// kernels on the backend's device (`cpu-fallback` on the CPU of a GPU backend), emulated
    /// when it computes in another (wider) type. Any layer is not observed when the engine does
    /// not say what it computes in, or the weight was not found where the engine looked.
    pub fn classify(
        scheme: SchemeId,
        stored: &StoredWeight,
        compute: &Compute,
        on_backend_device: bool,
    ) -> LayerRealization {
        // Nothing observed is nothing claimed, for a float layer too.
        if *compute == Compute::NotObservable || stored.ty == WeightType::NotFound {
            return LayerRealization::NotObserved;
        }
        let native = match (scheme, stored.ty.quantized()) {
            (SchemeId::F32, None) if on_backend_device => return LayerRealization::KeptFloat,
            (SchemeId::F32, None) => return LayerRealization::CpuFallback,
            (SchemeId::F32, Some(native)) => native,
            // A weight-only scheme defines no compute type; an engine that runs the stored
            // integer weights in their own integer kernels (ONNX Runtime's 8-bit MatMulNBits,
            // which then quantizes the activation too: the fidelity columns measure what that
            // costs) runs them natively.
            (scheme, stored) => native_compute(scheme).or(stored.flatten()),
        };
        match native {
            Some(native) if native == *compute && on_backend_device => LayerRealization::Native,
            Some(native) if native == *compute => LayerRealization::CpuFallback,
            _ => LayerRealization::Emulated,
        }
    }

    /// Builds the evidence and classifies it. `scheme` is the layer's scheme in the variant.
    #[allow(clippy::too_many_arguments)]
    pub fn observed(
        layer: &str,
        scheme: SchemeId,
        stored: StoredWeight,
        compute: Compute,
        kernel: impl Into<String>,
        device: impl Into<String>,
        on_backend_device: bool,
        per_call: Option<String>,
        source: &str,
    ) -> LayerEvidence {
        let realization = Self::classify(scheme, &stored, &compute, on_backend_device);
        LayerEvidence {
            layer: layer.to_string(),
            scheme: scheme.name(),
            stored,
            compute,
            kernel: kernel.into(),
            device: device.into(),
            per_call,
            source: source.to_string(),
            realization,
        }
    }

    /// One line for messages: `fc1: stored q4_0, computed in f32 by QMatMul dequantized to f32
    /// on cpu (emulated)`.
    pub fn describe(&self) -> String {
        let per_call = self.per_call.as_ref().map_or(String::new(), |p| format!(", on every call: {p}"));
        format!(
            "{}: {} stored {}, computed in {} by {} on {}{per_call} ({})",
            self.layer,
            self.scheme,
            self.stored,
            self.compute,
            self.kernel,
            self.device,
            self.realization.name()
        )
    }
}

/// The type whose own kernels running means a scheme is realized natively: `None` for schemes
/// no engine has a kernel for (weight-only int8 and int4, whose weights are always computed in
/// float).
pub fn native_compute(scheme: SchemeId) -> Option<Compute> {
    match scheme {
        SchemeId::F32 => Some(Compute::F32),
        SchemeId::F16 => Some(Compute::F16),
        SchemeId::Bf16 => Some(Compute::Bf16),
        SchemeId::Ggml(t) => Some(Compute::Ggml(t.name().to_string())),
        SchemeId::Int8Dynamic | SchemeId::Int8Static(_) => Some(Compute::Int8),
        SchemeId::Int8Weights { .. } | SchemeId::Int4Group { .. } => None,
    }
}

/// The record's realization: the weakest of the layers' (kept-float layers run in float and
/// count as native). `NotObserved` when the engine reported nothing on one of the plan's layers.
pub fn observed(layers: &[LayerEvidence], planned: &[&str]) -> Realization {
    if planned.iter().any(|p| !layers.iter().any(|l| l.layer == *p)) {
        return Realization::NotObserved;
    }
    layers.iter().fold(Realization::Native, |acc, l| {
        acc.weaker(match l.realization {
            LayerRealization::KeptFloat | LayerRealization::Native => Realization::Native,
            LayerRealization::CpuFallback => Realization::CpuFallback,
            LayerRealization::Emulated => Realization::Emulated,
            LayerRealization::NotObserved => Realization::NotObserved,
        })
    })
}

/// The layer that keeps the record from being native, as the progress line, the report and
/// `require_native` name it: the first of the weakest layers, so that it is the one the
/// record's realization comes from (an emulated layer before a not-observed one is not why the
/// record is not-observed).
pub fn first_not_native(layers: &[LayerEvidence]) -> Option<&LayerEvidence> {
    let rank = |r: LayerRealization| match r {
        LayerRealization::KeptFloat | LayerRealization::Native => 0,
        LayerRealization::CpuFallback => 1,
        LayerRealization::Emulated => 2,
        LayerRealization::NotObserved => 3,
    };
    let weakest = layers.iter().map(|l| rank(l.realization)).max().filter(|&r| r > 0)?;
    layers.iter().find(|l| rank(l.realization) == weakest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::ggml::GgmlType;

    fn layer(r: LayerRealization) -> LayerEvidence {
        LayerEvidence {
            layer: "l".into(),
            scheme: "x".into(),
            stored: StoredWeight::named("x"),
            compute: Compute::F32,
            kernel: "k".into(),
            device: "cpu".into(),
            per_call: None,
            source: "test".into(),
            realization: r,
        }
    }

    #[test]
    fn a_layer_is_native_only_in_its_own_type_on_the_backends_device() {
        let q4k = SchemeId::Ggml(GgmlType::Q4K);
        let c = |scheme, stored: &str, compute: &Compute, on: bool| {
            LayerEvidence::classify(scheme, &StoredWeight::from(stored.to_string()), compute, on)
        };
        assert_eq!(c(q4k, "q4k", &Compute::Ggml("q4k".into()), true), LayerRealization::Native);
        assert_eq!(c(q4k, "q4k", &Compute::Ggml("q4k".into()), false), LayerRealization::CpuFallback);
        assert_eq!(c(q4k, "q4k", &Compute::F32, true), LayerRealization::Emulated);
        // The ONNX file tract reads holds the q4k values dequantized: still a q4k layer.
        assert_eq!(c(q4k, "f32", &Compute::F32, true), LayerRealization::Emulated);
        assert_eq!(c(q4k, "q4k", &Compute::NotObservable, true), LayerRealization::NotObserved);
        // A float layer the engine said nothing about, or whose weight it did not find, is not
        // kept float: it was not observed.
        assert_eq!(c(SchemeId::F32, "f32", &Compute::NotObservable, true), LayerRealization::NotObserved);
        assert_eq!(c(SchemeId::F32, "not found", &Compute::F32, true), LayerRealization::NotObserved);
        // Weight-only int8 is emulated when computed in float (candle, tract), native where the
        // engine's int8 kernels take the int8 weights (ONNX Runtime's 8-bit MatMulNBits).
        let w8 = SchemeId::Int8Weights { per_channel: true, symmetric: true };
        assert_eq!(c(w8, "i8", &Compute::F32, true), LayerRealization::Emulated);
        assert_eq!(c(w8, "i8 → DequantizeLinear", &Compute::F32, true), LayerRealization::Emulated);
        assert_eq!(c(w8, "i8", &Compute::Int8, true), LayerRealization::Native);
        // int4 has no compute type of its own: an int8 dot product on it is emulation.
        let w4 = SchemeId::Int4Group { group: 16, symmetric: true };
        assert_eq!(c(w4, "i4", &Compute::Int8, true), LayerRealization::Emulated);
        assert_eq!(c(SchemeId::Int8Dynamic, "i8", &Compute::Int8, true), LayerRealization::Native);
        assert_eq!(c(SchemeId::F16, "f16", &Compute::F32, true), LayerRealization::Emulated);
        // Kept in float by the variant: float storage is kept float on the backend's device...
        assert_eq!(c(SchemeId::F32, "f32", &Compute::F16, true), LayerRealization::KeptFloat);
        // ...and falls back when a GPU backend runs it on the CPU (tract-cuda's CPU ops).
        assert_eq!(c(SchemeId::F32, "f32", &Compute::F32, false), LayerRealization::CpuFallback);
        // A file that arrives quantized is judged by what it stores.
        assert_eq!(c(SchemeId::F32, "i8 → DequantizeLinear", &Compute::F32, true), LayerRealization::Emulated);
        assert_eq!(c(SchemeId::F32, "i8", &Compute::Int8, true), LayerRealization::Native);
        assert_eq!(c(SchemeId::F32, "u4", &Compute::F32, true), LayerRealization::Emulated);
    }

    #[test]
    fn a_stored_weight_reads_back_as_written() {
        let w = StoredWeight { ty: WeightType::I8, via: vec!["DequantizeLinear".into(), "Transpose".into()] };
        assert_eq!(w.to_string(), "i8 → DequantizeLinear → Transpose");
        assert_eq!(StoredWeight::from(w.to_string()), w);
        assert_eq!(StoredWeight::named("q4k").ty, WeightType::Ggml("q4k".into()));
        assert_eq!(StoredWeight::named("computed in the graph").ty, WeightType::Other("computed in the graph".into()));
    }

    #[test]
    fn the_record_takes_the_weakest_layer() {
        use LayerRealization::*;
        let two =
            |a, b| [LayerEvidence { layer: "a".into(), ..layer(a) }, LayerEvidence { layer: "b".into(), ..layer(b) }];
        let planned = ["a", "b"];
        assert_eq!(observed(&two(KeptFloat, Native), &planned), Realization::Native);
        assert_eq!(observed(&two(Native, CpuFallback), &planned), Realization::CpuFallback);
        assert_eq!(observed(&two(Emulated, CpuFallback), &planned), Realization::Emulated);
        assert_eq!(observed(&two(Emulated, NotObserved), &planned), Realization::NotObserved);
        // A planned layer the engine reported nothing on leaves the record unobserved.
        assert_eq!(observed(&two(Native, Native), &["a", "b", "c"]), Realization::NotObserved);
        assert_eq!(observed(&[], &planned), Realization::NotObserved);
        assert_eq!(observed(&[], &[]), Realization::Native);
        assert_eq!(first_not_native(&[layer(KeptFloat), layer(Emulated)]).map(|l| l.realization), Some(Emulated));
        // The layer named is the one the record's realization comes from.
        let named = first_not_native(&two(Emulated, NotObserved)).map(|l| (l.layer.clone(), l.realization));
        assert_eq!(named, Some(("b".to_string(), NotObserved)));
        let named = first_not_native(&two(CpuFallback, Emulated)).map(|l| l.layer.clone());
        assert_eq!(named.as_deref(), Some("b"));
        assert_eq!(first_not_native(&two(Native, KeptFloat)).map(|l| l.layer.clone()), None);
    }
}
