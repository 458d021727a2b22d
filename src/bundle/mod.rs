//! Bundles: variants chosen on a workstation, with the inputs and golden outputs a target device
//! must reproduce, and the tolerances it must meet.
//!
//! A bundle is one folder (and a `.tar` of it, `qbench bundle` writes both):
//! ```text
//! manifest.json              format, version, tolerances, every case, every file's sha256
//! environment.json           the workstation's
//! records.jsonl              the workstation's records of the bundled cases
//! inputs/<model>.npy         the evaluation items fed to every case of that model
//! reference/<model>.<k>.npy  the fp32 reference's outputs on them (output k)
//! cases/<id>/output.<k>.npy  the variant's outputs on the workstation (output k)
//! files/…                    each variant's artifacts, byte for byte as measured
//! ```
//! This module is the format and its checks, which the device runner (`qbench-device verify`,
//! [`verify`]) and the writer (`qbench bundle`, the harness's `pack`) share. It sits below the
//! reporting stack so that a device binary carries none of it.

pub mod emulation;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::quant::Variant;

/// What `manifest.json`'s `format` says.
pub const FORMAT: &str = "qbench-bundle";
/// The format this qbench writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
/// A manifest larger than this is not one qbench wrote.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The rule every bundled output is held to, as the manifest and the README state it.
pub const TOLERANCE_RULE: &str = "per output, over the bundled items: max |device − workstation| ≤ floor_rel × max |workstation output| + factor × max |workstation − fp32 reference|; and, for class outputs, top-1 agreement with the workstation ≥ min_top1_agreement";

/// The tolerances a device must meet, relative to what the workstation measured
/// ([`TOLERANCE_RULE`]). The defaults are documented in the README; a suite's `[bundle]` table
/// overrides them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerances {
    /// Share of the largest workstation output value every output may differ by, whatever the
    /// variant: float arithmetic in another order (another ISA's kernels) differs in the last
    /// bits. 1e-3 by default.
    pub floor_rel: f64,
    /// Share of the variant's own error against fp32 (on the workstation) the device may add:
    /// a quantized kernel that rounds differently moves outputs by at most about that. 0.5 by
    /// default.
    pub factor: f64,
    /// Share of items whose top class must equal the workstation's. 0.99 by default.
    pub min_top1_agreement: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { floor_rel: 1e-3, factor: 0.5, min_top1_agreement: 0.99 }
    }
}

impl Tolerances {
    /// The largest |device − workstation| an output may show: `floor_rel × output_scale + factor
    /// × own_error`, where `output_scale` is the largest |value| of the workstation's output and
    /// `own_error` its largest |workstation − fp32|.
    pub fn max_abs(&self, output_scale: f64, own_error: f64) -> f64 {
        self.floor_rel * output_scale + self.factor * own_error
    }

    /// Why these tolerances cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(self.floor_rel) || !ok(self.factor) {
            return Err(format!(
                "floor_rel ({}) and factor ({}) must be finite and not negative",
                self.floor_rel, self.factor
            ));
        }
        if !(0.0..=1.0).contains(&self.min_top1_agreement) {
            return Err(format!("min_top1_agreement ({}) must lie in 0..=1", self.min_top1_agreement));
        }
        Ok(())
    }
}

/// The latency sampler's settings the run used, which the device samples with too.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub warmup_iters: u32,
    pub min_samples: usize,
    pub max_samples: usize,
    pub max_time_ms: u64,
    pub target_ci_pct: f64,
}

impl Sampling {
    pub fn settings(&self) -> crate::measure::latency::SamplerSettings {
        crate::measure::latency::SamplerSettings {
            warmup_iters: self.warmup_iters,
            warmup_time: std::time::Duration::ZERO,
            target_rel_ci: self.target_ci_pct / 100.0,
            min_samples: self.min_samples,
            max_samples: self.max_samples.max(self.min_samples),
            max_time: std::time::Duration::from_millis(self.max_time_ms),
        }
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the qbench that wrote it.
    pub format_version: u32,
    /// When, and by which qbench (version and commit).
    pub created: String,
    pub created_by: String,
    /// The run folder the cases were measured in, its id and its suite.
    pub source_run: String,
    pub run_id: String,
    pub suite: String,
    pub tolerances: Tolerances,
    /// [`TOLERANCE_RULE`], for a reader of the file.
    pub tolerance_rule: String,
    pub sampling: Sampling,
    /// The run's thread count, which the device's engines get too.
    pub threads: usize,
    pub inputs: Vec<BundleInputs>,
    pub cases: Vec<BundleCase>,
    /// Every file of the bundle but the manifest (paths relative to the bundle, `/`-separated)
    /// with its sha256.
    pub files: BTreeMap<String, String>,
}

/// The evaluation items fed to every bundled case of one model, and the fp32 reference's
/// outputs on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInputs {
    pub model: String,
    /// `.npy`, `[items, item…]` f32.
    pub file: String,
    pub items: usize,
    pub item_shape: Vec<usize>,
    /// The items' classes, when the dataset has labels.
    pub labels: Option<Vec<u32>>,
    /// Which items of the run's evaluation split these are (the first `items`).
    pub selection: String,
    /// The engine that computed the reference outputs.
    pub reference_backend: String,
    pub reference: Vec<BundleOutput>,
}

/// One output of a model as a file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleOutput {
    /// The graph's name for it (empty for a built-in model's one output).
    pub name: String,
    /// `.npy`, `[items, item…]` f32.
    pub file: String,
    pub item_shape: Vec<usize>,
}

/// One bundled case: a variant on a backend at a batch size, as measured on the workstation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleCase {
    /// Unique in the bundle: `<model>.<scheme>.<backend>.b<batch>`.
    pub id: String,
    /// The case's index in the source run.
    pub case_index: usize,
    pub model: String,
    pub scheme: String,
    pub backend: String,
    pub device: String,
    pub threads: usize,
    pub batch: usize,
    /// What the backend builds, its paths relative to the bundle.
    pub variant: Variant,
    /// The file the engine loaded on the workstation (relative to the bundle) and its sha256,
    /// which the record of the measured case carries too.
    pub artifact: String,
    pub artifact_sha256: String,
    /// The workstation's outputs and each one's tolerance.
    pub outputs: Vec<CaseOutput>,
    /// The top-1 agreement the device's first output must reach with the workstation's; `None`
    /// when that output is not classes.
    pub min_top1_agreement: Option<f64>,
    /// The case's median latency on the workstation (the run's record).
    pub workstation_latency_median_ns: Option<f64>,
}

/// One output of a case on the workstation, and how far a device may be from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseOutput {
    pub name: String,
    pub file: String,
    pub item_shape: Vec<usize>,
    /// max |workstation output|: the scale of `floor_rel`.
    pub output_scale: f64,
    /// max |workstation − fp32 reference| over the items: the variant's own error.
    pub own_error: f64,
    /// [`Tolerances::max_abs`] of the two.
    pub max_abs: f64,
}

/// A bundle that cannot be used: the message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path} is not a bundle: {reason}; pass the folder (or .tar) `qbench bundle` wrote")]
    NotABundle { path: PathBuf, reason: String },
    #[error("{path}: the bundle is format version {found}, newer than this qbench reads ({FORMAT_VERSION}); verify it with a qbench-device built from the qbench that wrote it, or newer")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{path}: {reason}; the manifest is damaged or was edited: write the bundle again with `qbench bundle`")]
    Manifest { path: PathBuf, reason: String },
    #[error("{file} is missing from the bundle {bundle}; copy the whole bundle folder (or its .tar) to the device")]
    MissingFile { bundle: PathBuf, file: String },
    #[error("{file} in {bundle} does not match the manifest (sha256 {found}, the manifest says {expected}): the file changed after `qbench bundle` wrote it; copy the bundle again")]
    HashMismatch { bundle: PathBuf, file: String, expected: String, found: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "{path} is not empty; verify into a new (or empty) folder, so that nothing there is mixed with or written over"
    )]
    OutputNotEmpty { path: PathBuf },
    #[error("cannot write {path}: {source}; choose an output folder that is writable")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A bundle opened and checked: its folder and its manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    /// Reads `dir/manifest.json`, refusing a newer format and a manifest that does not parse,
    /// then checks every file the manifest lists (present, a regular file, its sha256) and that
    /// every file a case or input names is among them.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(BundleError::NotABundle { path: dir.to_path_buf(), reason: "no such folder".into() });
        }
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(BundleError::NotABundle { path: dir.to_path_buf(), reason: format!("it has no {MANIFEST}") });
        }
        let text = crate::files::read_text_bounded(&path, MAX_MANIFEST_BYTES, "a bundle manifest")
            .map_err(|e| BundleError::Read { path: path.clone(), reason: e.to_string() })?;
        let manifest = parse_manifest(&path, &text)?;
        let bundle = Bundle { dir: dir.to_path_buf(), manifest };
        bundle.check_files()?;
        bundle.check_arrays()?;
        Ok(bundle)
    }

    /// The path of a file the manifest names.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn check_files(&self) -> Result<(), BundleError> {
        let m = &self.manifest;
        let manifest_err = |reason: String| BundleError::Manifest { path: self.dir.join(MANIFEST), reason };
        for file in m.files.keys() {
            safe_relative(file).map_err(|why| manifest_err(format!("files: \"{file}\" {why}")))?;
        }
        let mut named: Vec<(String, &str)> = Vec::new();
        for i in &m.inputs {
            named.push((format!("inputs of {}", i.model), &i.file));
            named.extend(i.reference.iter().map(|o| (format!("the reference of {}", i.model), o.file.as_str())));
        }
        for c in &m.cases {
            named.push((format!("case {}", c.id), &c.artifact));
            named.extend(c.outputs.iter().map(|o| (format!("case {}", c.id), o.file.as_str())));
            for p in variant_paths(&c.variant) {
                named.push((format!("case {}'s variant", c.id), p));
            }
            if !m.inputs.iter().any(|i| i.model == c.model) {
                return Err(manifest_err(format!("case {} has no inputs entry for model {}", c.id, c.model)));
            }
        }
        for c in &m.cases {
            if m.files.get(&c.artifact).is_some_and(|sha| sha != &c.artifact_sha256) {
                return Err(manifest_err(format!(
                    "case {}'s artifact_sha256 {} is not the sha256 `files` lists for {}",
                    c.id, c.artifact_sha256, c.artifact
                )));
            }
        }
        for (who, file) in &named {
            if !m.files.contains_key(*file) {
                return Err(manifest_err(format!("{who} names {file}, which `files` does not list (with its sha256)")));
            }
        }
        let root =
            self.dir.canonicalize().map_err(|e| BundleError::Read { path: self.dir.clone(), reason: e.to_string() })?;
        for (file, expected) in &m.files {
            let path = self.path(file);
            // A link anywhere on the way (a folder of the bundle linked elsewhere) would feed the
            // engine files from outside the bundle.
            if path.canonicalize().is_ok_and(|real| real != root.join(file)) {
                return Err(BundleError::Read {
                    path,
                    reason:
                        "it is reached through a symbolic link; a bundle holds plain files only: copy the bundle again"
                            .into(),
                });
            }
            match std::fs::symlink_metadata(&path) {
                Err(_) => return Err(BundleError::MissingFile { bundle: self.dir.clone(), file: file.clone() }),
                Ok(meta) if !meta.is_file() => {
                    return Err(BundleError::Read {
                        path,
                        reason: "it is not a regular file (a link or a folder); copy the bundle again".into(),
                    })
                }
                Ok(_) => {}
            }
            let found = crate::hash::sha256_file(&path)
                .map_err(|e| BundleError::Read { path: path.clone(), reason: e.to_string() })?;
            if &found != expected {
                return Err(BundleError::HashMismatch {
                    bundle: self.dir.clone(),
                    file: file.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
        }
        Ok(())
    }

    /// Every array the manifest names has the shape it says and only finite values, the
    /// workstation's outputs the scale their tolerances were computed from, the labels one per item.
    fn check_arrays(&self) -> Result<(), BundleError> {
        let m = &self.manifest;
        let bad = |file: &str, reason: String| BundleError::Manifest { path: self.path(file), reason };
        let check = |file: &str, items: usize, item_shape: &[usize]| -> Result<Vec<f32>, BundleError> {
            let (shape, values) = self.read_npy(file)?;
            let expected: Vec<usize> = std::iter::once(items).chain(item_shape.iter().copied()).collect();
            if shape != expected {
                return Err(bad(file, format!("its shape is {shape:?}, the manifest says {expected:?}")));
            }
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(file, format!("value {i} is {}, not a finite number", values[i])));
            }
            Ok(values)
        };
        for i in &m.inputs {
            check(&i.file, i.items, &i.item_shape)?;
            if let Some(labels) = i.labels.as_ref().filter(|l| l.len() != i.items) {
                return Err(bad(&i.file, format!("the manifest has {} labels for {} items", labels.len(), i.items)));
            }
            for r in &i.reference {
                check(&r.file, i.items, &r.item_shape)?;
            }
        }
        for c in &m.cases {
            let Some(items) = m.inputs.iter().find(|i| i.model == c.model).map(|i| i.items) else { continue };
            for o in &c.outputs {
                let values = check(&o.file, items, &o.item_shape)?;
                let scale = values.iter().fold(0.0f64, |a, v| a.max(v.abs() as f64));
                if (scale - o.output_scale).abs() > 1e-9 * scale.max(1e-30) {
                    return Err(bad(
                        &o.file,
                        format!("its largest |value| is {scale}, the manifest's output_scale {}", o.output_scale),
                    ));
                }
            }
        }
        Ok(())
    }

    /// An `.npy` file of the bundle as `(shape, values)`.
    pub fn read_npy(&self, file: &str) -> Result<(Vec<usize>, Vec<f32>), BundleError> {
        let path = self.path(file);
        let bytes =
            std::fs::read(&path).map_err(|e| BundleError::Read { path: path.clone(), reason: e.to_string() })?;
        crate::data::npy::read_f32(&bytes).map_err(|reason| BundleError::Read { path, reason })
    }
}

/// Parses a manifest: the format and version first (a newer bundle is refused as such, not for
/// the fields it adds), then every field, a missing or malformed one named by its path
/// (`cases[0].outputs[1].max_abs`).
pub fn parse_manifest(path: &Path, text: &str) -> Result<Manifest, BundleError> {
    #[derive(Deserialize)]
    struct Head {
        format: Option<String>,
        format_version: Option<u32>,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| BundleError::NotABundle {
        path: path.to_path_buf(),
        reason: format!("its manifest is not JSON ({e})"),
    })?;
    if head.format.as_deref() != Some(FORMAT) {
        return Err(BundleError::NotABundle {
            path: path.to_path_buf(),
            reason: format!("its manifest's format is {:?}, not \"{FORMAT}\"", head.format.unwrap_or_default()),
        });
    }
    match head.format_version {
        Some(v) if v > FORMAT_VERSION => return Err(BundleError::NewerFormat { path: path.to_path_buf(), found: v }),
        Some(0) | None => {
            return Err(BundleError::Manifest {
                path: path.to_path_buf(),
                reason: "format_version is missing or 0".into(),
            })
        }
        Some(_) => {}
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| BundleError::Manifest {
        path: path.to_path_buf(),
        reason: format!("{}: {}", e.path(), e.inner()),
    })?;
    let bad = |reason: String| BundleError::Manifest { path: path.to_path_buf(), reason };
    let t = manifest.tolerances;
    t.check().map_err(bad)?;
    // Settings a device would otherwise spend hours on: the suite's own limits.
    let s = manifest.sampling;
    if !(1..=1024).contains(&manifest.threads) {
        return Err(bad(format!("threads = {} is not in 1..=1024", manifest.threads)));
    }
    if s.warmup_iters > 100_000
        || s.min_samples > 1_000_000
        || s.max_samples > 1_000_000
        || s.max_time_ms > 3_600_000
        || !(s.target_ci_pct.is_finite() && s.target_ci_pct >= 0.0)
    {
        return Err(bad(format!("sampling {s:?} is beyond the suite's limits")));
    }
    let mut ids = std::collections::BTreeSet::new();
    for c in &manifest.cases {
        // An id names files in the output folder: a plain file name, once.
        if c.id != crate::files::file_stem(&c.id) || !ids.insert(c.id.as_str()) {
            return Err(bad(format!("case id {:?} is not a plain file name, or is not unique", c.id)));
        }
        if !(1..=1 << 20).contains(&c.batch) {
            return Err(bad(format!("case {}: batch {} is not in 1..=1048576", c.id, c.batch)));
        }
        if c.outputs.is_empty() {
            return Err(bad(format!("case {} has no outputs to compare", c.id)));
        }
        for o in &c.outputs {
            // The tolerance must be the stated rule's, from the workstation's figures.
            let finite = |v: f64| v.is_finite() && v >= 0.0;
            if !finite(o.max_abs) || !finite(o.output_scale) || !finite(o.own_error) {
                return Err(bad(format!(
                    "case {} output {:?}: a tolerance figure is not a finite number",
                    c.id, o.name
                )));
            }
            let rule = t.max_abs(o.output_scale, o.own_error);
            if (o.max_abs - rule).abs() > 1e-9 * rule.max(1e-30) {
                return Err(bad(format!(
                    "case {} output {:?}: max_abs {} is not the rule's {rule} ({TOLERANCE_RULE})",
                    c.id, o.name, o.max_abs
                )));
            }
        }
        if let Some(a) = c.min_top1_agreement {
            if a != t.min_top1_agreement {
                return Err(bad(format!(
                    "case {}: min_top1_agreement {a} is not the bundle's {}",
                    c.id, t.min_top1_agreement
                )));
            }
        }
    }
    Ok(manifest)
}

/// Every file path a variant holds (empty paths, which a variant uses for "none", left out).
pub fn variant_paths(v: &Variant) -> Vec<&str> {
    use crate::model::ModelKind;
    let mut paths: Vec<&Path> = vec![&v.candle_artifact, &v.onnx];
    paths.extend(v.onnx_qdq.as_deref());
    match &v.kind {
        ModelKind::Zoo { weights, .. } => paths.push(weights),
        ModelKind::Onnx { path, .. } | ModelKind::GgufLm { path } => paths.push(path),
        ModelKind::Bert { path, config } => paths.extend([path.as_path(), config.as_path()]),
    }
    let mut out: Vec<&str> =
        paths.into_iter().filter(|p| !p.as_os_str().is_empty()).filter_map(|p| p.to_str()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The variant with each of its paths mapped by `f` (empty paths stay empty).
pub fn map_variant_paths(v: &Variant, f: &mut dyn FnMut(&Path) -> PathBuf) -> Variant {
    use crate::model::ModelKind;
    let mut map = |p: &Path| if p.as_os_str().is_empty() { PathBuf::new() } else { f(p) };
    let kind = match &v.kind {
        ModelKind::Zoo { zoo, weights } => ModelKind::Zoo { zoo: *zoo, weights: map(weights) },
        ModelKind::Onnx { path, inputs, outputs } => {
            ModelKind::Onnx { path: map(path), inputs: inputs.clone(), outputs: outputs.clone() }
        }
        ModelKind::Bert { path, config } => ModelKind::Bert { path: map(path), config: map(config) },
        ModelKind::GgufLm { path } => ModelKind::GgufLm { path: map(path) },
    };
    Variant {
        kind,
        candle_artifact: map(&v.candle_artifact),
        onnx: map(&v.onnx),
        onnx_qdq: v.onnx_qdq.as_deref().map(&mut map),
        ..v.clone()
    }
}

/// Why `file` is not a plain relative path inside the bundle (absolute, `..`, empty), if not.
pub fn safe_relative(file: &str) -> Result<(), &'static str> {
    let p = Path::new(file);
    if file.is_empty() || file.contains('\\') {
        return Err("is not a /-separated relative path");
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err("leaves the bundle folder (absolute, or with `..` or `.`)");
    }
    Ok(())
}

/// The id of a case in a bundle.
pub fn case_id(model: &str, scheme: &str, backend: &str, batch: usize) -> String {
    crate::files::file_stem(&format!("{model}.{scheme}.{backend}.b{batch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tolerance_is_the_stated_formula() {
        let t = Tolerances { floor_rel: 1e-3, factor: 0.5, min_top1_agreement: 0.99 };
        // 1e-3 × 12 + 0.5 × 0.4 = 0.012 + 0.2.
        assert!((t.max_abs(12.0, 0.4) - 0.212).abs() < 1e-12);
        assert!(Tolerances { factor: -1.0, ..t }.check().is_err());
        assert!(Tolerances { floor_rel: f64::NAN, ..t }.check().is_err());
        assert!(Tolerances { min_top1_agreement: 1.5, ..t }.check().is_err());
        assert!(t.check().is_ok());
    }

    #[test]
    fn paths_that_leave_the_bundle_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "files/../../x", "./x", "a\\b"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
        assert!(safe_relative("files/mlp.int8.onnx").is_ok());
    }

    #[test]
    fn a_newer_format_is_refused_as_such_and_a_missing_tolerance_is_named() {
        let p = Path::new("b/manifest.json");
        let newer = r#"{"format": "qbench-bundle", "format_version": 99, "something_new": 1}"#;
        assert!(matches!(parse_manifest(p, newer), Err(BundleError::NewerFormat { found: 99, .. })));
        let other = r#"{"format": "zip", "format_version": 1}"#;
        assert!(matches!(parse_manifest(p, other), Err(BundleError::NotABundle { .. })));
        let partial = r#"{"format": "qbench-bundle", "format_version": 1, "created": "", "created_by": "", "source_run": "", "run_id": "", "suite": ""}"#;
        let e = parse_manifest(p, partial).unwrap_err().to_string();
        assert!(e.contains("tolerances"), "{e}");
    }
}
