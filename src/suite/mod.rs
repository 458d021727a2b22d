//! Suites: the TOML file a user writes, validated once into a typed [`Suite`],
//! then expanded into [`Case`]s.
//!
//! `spec` holds the raw serde types; [`Suite::load`] resolves them: names become
//! enums, paths are resolved against the suite file and checked to exist, and
//! defaults are applied. Every rejection names the file and the line.

mod case;
mod diagnostic;
pub mod spec;

pub use case::{expand, Case};
pub use diagnostic::SuiteError;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::backend::BackendId;
use crate::data::DatasetFormat;
use crate::measure::latency::SamplerSettings;
use crate::quant::SchemeId;
use crate::zoo::ZooModelId;
use diagnostic::{improve_serde_message, unknown, Locator};
use spec::{MeasureSpec, SuiteSpec};

/// A validated suite. Built only by [`Suite::load`] / [`Suite::from_str`].
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub description: Option<String>,
    /// The suite file, as given.
    pub file: PathBuf,
    /// sha256 of the suite file's bytes, hex.
    pub sha256: String,
    pub schemes: Vec<SchemeId>,
    pub backends: Vec<BackendId>,
    pub batch_sizes: Vec<usize>,
    /// Cases that a backend would only emulate fail instead of running.
    pub require_native: bool,
    pub measure: SamplerSettings,
    /// Threads each backend may use; applied once per process.
    pub threads: usize,
    /// Runs go to `<output_dir>/<suite name>/<run id>/`.
    pub output_dir: PathBuf,
    pub datasets: Vec<DatasetEntry>,
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone)]
pub struct DatasetEntry {
    pub name: String,
    pub format: DatasetFormat,
    pub images: PathBuf,
    pub labels: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    pub zoo: ZooModelId,
    pub weights: PathBuf,
    /// Index into [`Suite::datasets`].
    pub dataset: usize,
}

/// Defaults, chosen so the quickstart finishes in about a minute on 2 cores.
pub const DEFAULT_WARMUP_ITERS: u32 = 10;
pub const DEFAULT_MIN_SAMPLES: usize = 10;
pub const DEFAULT_MAX_SAMPLES: usize = 1000;
pub const DEFAULT_MAX_TIME_MS: u64 = 2000;
pub const DEFAULT_THREADS: usize = 1;
pub const DEFAULT_OUTPUT_DIR: &str = "reports";

impl Suite {
    /// Reads, parses and validates a suite file.
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let source =
            std::fs::read_to_string(path).map_err(|source| SuiteError::Read { path: path.to_path_buf(), source })?;
        Suite::from_str(path, &source)
    }

    /// Validates suite text as if it were read from `path` (paths resolve against its folder).
    pub fn from_str(path: &Path, source: &str) -> Result<Suite, SuiteError> {
        let loc = Locator { file: path, source };
        let spec: SuiteSpec =
            toml::from_str(source).map_err(|e| loc.at(e.span().unwrap_or(0..0), improve_serde_message(e.message())))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        resolve(spec, &loc, &base, Sha256::digest(source.as_bytes()))
    }
}

fn resolve(spec: SuiteSpec, loc: &Locator, base: &Path, digest: impl AsRef<[u8]>) -> Result<Suite, SuiteError> {
    let name = spec.name.get_ref().trim().to_string();
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_name {
        return Err(loc.at(
            spec.name.span(),
            format!("suite name \"{name}\" is used as a folder name: use letters, digits, '-', '_' or '.', e.g. name = \"quickstart\""),
        ));
    }

    let schemes = parse_list(loc, &spec.schemes, "scheme", SchemeId::from_name, &SchemeId::names())?;
    let backends = parse_list(loc, &spec.backends, "backend", BackendId::from_name, BackendId::names())?;

    if spec.batch_sizes.get_ref().is_empty() {
        return Err(
            loc.at(spec.batch_sizes.span(), "batch_sizes is empty; write at least one, e.g. batch_sizes = [1, 32]")
        );
    }
    let mut batch_sizes = Vec::new();
    for b in spec.batch_sizes.get_ref() {
        let v = *b.get_ref();
        if !(1..=65536).contains(&v) {
            return Err(loc.at(b.span(), format!("batch size {v} is out of range; use 1 to 65536")));
        }
        if batch_sizes.contains(&(v as usize)) {
            return Err(loc.at(b.span(), format!("batch size {v} is listed twice; remove one")));
        }
        batch_sizes.push(v as usize);
    }

    let (measure, threads) = resolve_measure(loc, spec.measure.as_ref())?;

    let mut datasets = Vec::new();
    for d in spec.datasets.get_ref() {
        let d_ref = d.get_ref();
        let dname = d_ref.name.get_ref().clone();
        if datasets.iter().any(|x: &DatasetEntry| x.name == dname) {
            return Err(loc.at(
                d_ref.name.span(),
                format!("dataset \"{dname}\" is defined twice; give each [[datasets]] entry its own name"),
            ));
        }
        let format = DatasetFormat::from_name(d_ref.format.get_ref()).ok_or_else(|| {
            loc.at(d_ref.format.span(), unknown("dataset format", d_ref.format.get_ref(), DatasetFormat::names()))
        })?;
        let images = existing_path(loc, base, &d_ref.images, "images file")?;
        let labels = existing_path(loc, base, &d_ref.labels, "labels file")?;
        datasets.push(DatasetEntry { name: dname, format, images, labels });
    }
    if datasets.is_empty() {
        return Err(loc.at(
            spec.datasets.span(),
            "the suite has no dataset; add a [[datasets]] entry (see suites/quickstart.toml)",
        ));
    }

    let mut models = Vec::new();
    for m in spec.models.get_ref() {
        let m_ref = m.get_ref();
        let mname = m_ref.name.get_ref().clone();
        if models.iter().any(|x: &ModelEntry| x.name == mname) {
            return Err(loc.at(
                m_ref.name.span(),
                format!("model \"{mname}\" is defined twice; give each [[models]] entry its own name"),
            ));
        }
        let zoo = ZooModelId::from_name(m_ref.zoo.get_ref())
            .ok_or_else(|| loc.at(m_ref.zoo.span(), unknown("zoo model", m_ref.zoo.get_ref(), ZooModelId::names())))?;
        let weights = existing_path(loc, base, &m_ref.weights, "weights file")?;
        let dataset = match &m_ref.dataset {
            Some(dn) => datasets.iter().position(|d| &d.name == dn.get_ref()).ok_or_else(|| {
                let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
                loc.at(dn.span(), unknown("dataset", dn.get_ref(), &names))
            })?,
            None if datasets.len() == 1 => 0,
            None => {
                return Err(loc.at(
                    m.span(),
                    format!(
                        "model \"{mname}\" must name its dataset: the suite has {} datasets; add dataset = \"{}\"",
                        datasets.len(),
                        datasets[0].name
                    ),
                ));
            }
        };
        models.push(ModelEntry { name: mname, zoo, weights, dataset });
    }
    if models.is_empty() {
        return Err(
            loc.at(spec.models.span(), "the suite has no model; add a [[models]] entry (see suites/quickstart.toml)")
        );
    }

    let output_dir =
        spec.output.and_then(|o| o.dir).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT_DIR));

    Ok(Suite {
        name,
        description: spec.description,
        file: loc.file.to_path_buf(),
        sha256: crate::hash::hex(digest.as_ref()),
        schemes,
        backends,
        batch_sizes,
        require_native: spec.require_native,
        measure,
        threads,
        output_dir,
        datasets,
        models,
    })
}

fn parse_list<T: PartialEq + Copy>(
    loc: &Locator,
    list: &Spanned<Vec<Spanned<String>>>,
    kind: &str,
    parse: impl Fn(&str) -> Option<T>,
    known: &[&str],
) -> Result<Vec<T>, SuiteError> {
    if list.get_ref().is_empty() {
        return Err(
            loc.at(list.span(), format!("the {kind} list is empty; write at least one of: {}", known.join(", ")))
        );
    }
    let mut out = Vec::new();
    for item in list.get_ref() {
        let v = parse(item.get_ref()).ok_or_else(|| loc.at(item.span(), unknown(kind, item.get_ref(), known)))?;
        if out.contains(&v) {
            return Err(loc.at(item.span(), format!("{kind} \"{}\" is listed twice; remove one", item.get_ref())));
        }
        out.push(v);
    }
    Ok(out)
}

fn resolve_measure(loc: &Locator, spec: Option<&Spanned<MeasureSpec>>) -> Result<(SamplerSettings, usize), SuiteError> {
    let empty = MeasureSpec::default();
    let m = spec.map(|s| s.get_ref()).unwrap_or(&empty);
    let int = |v: &Option<Spanned<i64>>, key: &str, lo: i64, hi: i64, default: i64| -> Result<i64, SuiteError> {
        match v {
            None => Ok(default),
            Some(s) if (lo..=hi).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => {
                Err(loc.at(s.span(), format!("measure.{key} = {} is out of range; use {lo} to {hi}", s.get_ref())))
            }
        }
    };
    let warmup_iters = int(&m.warmup_iters, "warmup_iters", 0, 1_000_000, DEFAULT_WARMUP_ITERS as i64)? as u32;
    let min_samples = int(&m.min_samples, "min_samples", 1, 10_000_000, DEFAULT_MIN_SAMPLES as i64)? as usize;
    let max_samples = int(&m.max_samples, "max_samples", 1, 10_000_000, DEFAULT_MAX_SAMPLES as i64)? as usize;
    let max_time_ms = int(&m.max_time_ms, "max_time_ms", 1, 3_600_000, DEFAULT_MAX_TIME_MS as i64)? as u64;
    let threads = int(&m.threads, "threads", 1, 1024, DEFAULT_THREADS as i64)? as usize;
    if min_samples > max_samples {
        let span = m.min_samples.as_ref().map(|s| s.span()).or(spec.map(|s| s.span())).unwrap_or(0..0);
        return Err(loc.at(span, format!("measure.min_samples ({min_samples}) is larger than measure.max_samples ({max_samples}); lower min_samples or raise max_samples")));
    }
    Ok((
        SamplerSettings { warmup_iters, min_samples, max_samples, max_time: Duration::from_millis(max_time_ms) },
        threads,
    ))
}

fn existing_path(loc: &Locator, base: &Path, value: &Spanned<String>, what: &str) -> Result<PathBuf, SuiteError> {
    let path = base.join(value.get_ref());
    if path.is_file() {
        Ok(path)
    } else {
        let why = if path.exists() { "is not a file" } else { "does not exist" };
        Err(loc.at(
            value.span(),
            format!(
                "{what} \"{}\" {why} (looked for {}); paths are relative to the suite file's folder",
                value.get_ref(),
                path.display()
            ),
        ))
    }
}

/// Every `*.toml` directly in a folder, sorted: used by `qbench validate` and the tests.
pub fn suite_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}
