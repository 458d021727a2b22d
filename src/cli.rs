//! Command-line interface: clap definitions only. `main` calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Benchmark and validate quantized neural-network models on candle and tract.
#[derive(Debug, Parser)]
#[command(name = "qbench", version, about, long_about = None, after_help = "Exit codes: 0 success, 1 error (bad input, or a case failed; measured cases are still written), 2 a gate failed, 3 gates inconclusive (too noisy to judge, nothing checked, or cases missing).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a suite: every model × scheme × backend × batch size.
    ///
    /// Records go to <out>/<suite name>/<run id>/records.jsonl (one JSON object per case,
    /// written as each case ends), with environment.json and report.md beside them.
    Run {
        /// The suite file, e.g. suites/quickstart.toml.
        #[arg(required_unless_present = "resume")]
        suite: Option<PathBuf>,
        /// Go on with an interrupted run: measure only the cases its folder has no record of,
        /// adding them to its records.jsonl. The suite, its options and the files it reads come
        /// from the run's run.json; it refuses if any of them changed since.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["suite", "out", "shard", "filter", "sets", "only_case", "threads", "isolate"])]
        resume: Option<PathBuf>,
        /// Output folder (default: the suite's [output] dir, else ./reports).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print only the final table.
        #[arg(long, short)]
        quiet: bool,
        /// A baseline run (its folder or records.jsonl) for the suite's latency-regression gates.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Run only shard k of n (1-based), for CI matrices; `qbench merge` joins the shards.
        /// Cases are dealt out by (model, backend, batch) group, the same way on every machine.
        #[arg(long, value_name = "K/N", value_parser = qbench::suite::Shard::parse)]
        shard: Option<qbench::suite::Shard>,
        /// Run only the cases whose fields match: `field=glob[,glob…]`, fields joined by commas,
        /// e.g. 'model=cnn,scheme=int8-*,q4k,batch=1' (fields: model, scheme, backend, device,
        /// batch, threads). Case indices stay the suite's; `check` judges the run on the cases it
        /// selected, and `--resume` selects them again.
        #[arg(long, value_name = "FILTER", value_parser = qbench::suite::CaseFilter::parse)]
        filter: Option<qbench::suite::CaseFilter>,
        /// Change a suite setting for this run, as if the file said so (repeatable; later ones
        /// win): a dotted key and a TOML value, e.g. --set measure.threads=2,
        /// --set 'batch_sizes=[1, 8]', --set models.cnn.schemes='["f32", "q4k"]'. Entries of
        /// [[models]], [[datasets]] and [[gates]] are named by name or position. The run keeps
        /// the changed suite, headed by its --set lines, as its suite.toml.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run each case in a fresh process: its memory figures are its own (with the process's
        /// peak resident set), and a case that crashes its process fails alone.
        #[arg(long)]
        isolate: bool,
        /// Run only the case with this index (0-based, as in records' case_index).
        #[arg(long, value_name = "INDEX")]
        only_case: Option<usize>,
        /// Set by a run on the process it starts for another thread count of a sweep: run only
        /// these cases (comma-separated indices), writing their records only.
        #[arg(long, hide = true, value_delimiter = ',', requires = "case_process")]
        only_cases: Option<Vec<usize>>,
        /// Threads for every backend, instead of the suite's `[measure] threads` (engines read
        /// it once per process: with --isolate, once per case).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Set by `--isolate` on the process it starts for a case: write the record only (no
        /// reports, no gates: the parent run does those over every case).
        #[arg(long, hide = true)]
        case_process: bool,
        /// List the cases the run would measure (with --filter/--shard/--only-case, those they select),
        /// each with what its backend expects to make of it, and the reason of each it would skip
        /// or refuse; reads the model files, measures nothing, writes nothing.
        #[arg(long, conflicts_with_all = ["resume", "isolate", "baseline"])]
        dry_run: bool,
    },
    /// Join run folders (the shards of one suite) into one run folder, and write its reports.
    ///
    /// Refuses runs of different suites, or of different versions of the suite file, and a
    /// case present in two runs; a missing shard is an error unless --partial.
    Merge {
        /// The run folders, e.g. the artifacts of each CI matrix job.
        #[arg(required = true, num_args = 1..)]
        runs: Vec<PathBuf>,
        /// The merged run folder to create (default: <the first run's parent>/merged-<time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Merge even when some shards are missing.
        #[arg(long)]
        partial: bool,
    },
    /// Check a finished run against its suite's [[gates]] (the copy kept in the run folder).
    ///
    /// Writes gates.xml (JUnit) and gates.md beside the records, and appends the summary to
    /// $GITHUB_STEP_SUMMARY when set. Exit codes: 0 pass, 1 error, 2 a gate failed,
    /// 3 inconclusive (too noisy to judge, or nothing to compare with).
    Check {
        /// The run folder, e.g. reports/quickstart/20261127T085038Z.
        run_dir: PathBuf,
        /// A baseline run (its folder or records.jsonl) for latency-regression gates.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Print the verdict and every check as JSON instead of the Markdown summary (the exit
        /// code is the same).
        #[arg(long)]
        json: bool,
    },
    /// Localize a measured case's error layer by layer, and suggest the override that keeps
    /// its worst layer in float.
    ///
    /// Rebuilds the case from the run's records and its suite (which must not have changed),
    /// then compares every weighted layer's output with fp32: cumulative (the whole plan
    /// quantized) and isolated (only that layer quantized). Writes explain.md beside the records.
    Explain {
        /// The run folder `qbench run` printed, e.g. reports/schemes/20261127T082600Z.
        run_dir: PathBuf,
        /// The case's `case_index` in records.jsonl.
        case: usize,
        /// Evaluation images to compare on (default: the whole evaluation split, so the
        /// suggested override's top-1 is the one a run would measure).
        #[arg(long)]
        items: Option<usize>,
    },
    /// Pack measured cases for a target device: each variant's artifact exactly as measured,
    /// evaluation inputs, the workstation's and the fp32 reference's outputs on them, the
    /// tolerances the device must meet, the records and the environment, all hashed in a
    /// manifest. Writes the folder and a .tar of it; verify it there with `qbench-device verify`.
    Bundle {
        /// The run folder `qbench run` printed, e.g. reports/schemes/20261127T082600Z.
        run_dir: PathBuf,
        /// Which measured cases: `field=glob[,glob…]` over model, scheme, backend, device,
        /// batch, threads, e.g. 'scheme=int8-*,q4k' or 'model=cnn,backend=tract-cpu'
        /// (default: every measured case).
        #[arg(long)]
        cases: Option<String>,
        /// Evaluation items per model (the first of the run's evaluation split).
        #[arg(long, default_value_t = 256)]
        items: usize,
        /// The bundle folder to write (and <out>.tar beside it).
        #[arg(short, long)]
        out: PathBuf,
        /// Tolerance: share of the largest workstation output any output may differ by
        /// (default: the suite's [bundle] floor_rel, else 1e-3).
        #[arg(long)]
        floor_rel: Option<f64>,
        /// Tolerance: share of the variant's own error against fp32 a device may add
        /// (default: the suite's [bundle] factor, else 0.5).
        #[arg(long)]
        factor: Option<f64>,
        /// Share of items whose top class must match the workstation's (default: the suite's
        /// [bundle] min_top1_agreement, else 0.99).
        #[arg(long)]
        min_top1_agreement: Option<f64>,
    },
    /// Regenerate a run's outputs from its records alone: report.md, records.parquet,
    /// records.csv and records.json.
    Report {
        /// Run folders.
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
    },
    /// Compare runs case by case: ratio of medians with a bootstrap CI, a verdict (faster,
    /// slower, same within noise), accuracy deltas, and the environment differences (a hardware
    /// comparison when the runs come from different machines). Writes compare.md, compare.json
    /// and compare.html (beside the first run, or in --out).
    Compare {
        /// Run folders; every later run is compared with the first.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
        /// Changes smaller than this (percent) count as the same even when significant.
        #[arg(long, default_value_t = 2.0, value_parser = threshold_pct)]
        threshold_pct: f64,
        /// Compare cases whose model or dataset files differ (refused by default).
        #[arg(long)]
        allow_different_inputs: bool,
        /// Where compare.md, compare.json and compare.html go (default: a folder
        /// compare-<run 1>-vs-<run 2> beside the first run).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print compare.json instead of the Markdown.
        #[arg(long)]
        json: bool,
    },
    /// Find the variant that ships: the smallest (or fastest) per-layer mixed precision of one
    /// model on one backend whose top-1 drop against f32 stays within a budget.
    ///
    /// From the start scheme, the layers explain ranks most sensitive are promoted to wider
    /// types until the budget holds on the tuning split, then the least sensitive are demoted
    /// while it still holds; every candidate is a measured case. The chosen variant and the
    /// Pareto set are then measured on the disjoint test split. Writes tune.md, tune.json,
    /// overrides.toml and a chart under <out>/<suite>-tune/. Exit 0: the chosen variant holds
    /// the budget on the test split; 2: no candidate meets it (the closest is named), or the
    /// chosen one does not hold on the test split; 1: bad input.
    Tune {
        /// The suite whose model, dataset and measurement settings to use.
        suite: PathBuf,
        /// The model's name in the suite.
        #[arg(long)]
        model: String,
        /// The backend, e.g. tract-cpu (`qbench list backends`).
        #[arg(long, value_parser = backend_name)]
        backend: qbench::backend::BackendId,
        /// The budget, e.g. 'max_delta_top1_pts=0.5': top-1 points lost against f32, judged on
        /// the paired 95% interval.
        #[arg(long, value_parser = budget)]
        budget: f64,
        #[arg(long, value_enum, default_value = "size")]
        objective: qbench::tune::Objective,
        /// The start scheme (default: the most aggressive of the model's schemes the backend
        /// runs natively).
        #[arg(long, value_parser = scheme_name)]
        start: Option<qbench::quant::SchemeId>,
        /// The wider types a layer is promoted through, in order (default: q3k, q4k, q8_0
        /// from a GGML start, int8-pc-sym otherwise, each only if wider than the start; then
        /// f32).
        #[arg(long, value_delimiter = ',', value_parser = scheme_name)]
        ladder: Vec<qbench::quant::SchemeId>,
        /// Items of the tuning split (default: the suite's [tuning], else half of the
        /// evaluation items, stratified by label, seed 0).
        #[arg(long)]
        tune_items: Option<usize>,
        /// The batch size latency is measured at (default: the suite's first).
        #[arg(long)]
        batch: Option<usize>,
        /// The uniform scheme the chosen variant is compared with on the test split.
        #[arg(long, default_value = "int8-pc-sym", value_parser = scheme_name)]
        compare_to: qbench::quant::SchemeId,
        /// Change the suite as `run --set` does.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Where the tune folder goes (default: the suite's output folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Quantization-aware training: fine-tune a zoo model of a suite for one of its schemes on
    /// Fashion-MNIST's training set (never the test set), from its trained f32 weights, with
    /// the weights fake-quantized in the forward pass and the gradient passed straight through.
    ///
    /// Writes f32 safetensors the scheme then quantizes like any weights, with how they were
    /// trained in their metadata (records show it as model_training). Add them to a suite as
    /// another [[models]] entry to benchmark PTQ and QAT side by side.
    TrainQat {
        /// The suite naming the model and the scheme (its overrides for the scheme apply).
        suite: PathBuf,
        #[command(flatten)]
        options: qbench::tune::qat::QatOptions,
        /// Threads candle trains on (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Time a measured case op by op (layer by layer on candle's zoo models) on its own
    /// backend, batch and threads: a table and a chart, with explain's per-layer error beside
    /// each layer's time where `qbench explain` ran on the case.
    ///
    /// Writes profile-case-N.md and charts/profile-case-N.{svg,png,json}; report.html shows it.
    Profile {
        /// The run folder, e.g. reports/quickstart/20261127T085038Z.
        run_dir: PathBuf,
        /// The case's index (case_index in records.jsonl; `run --dry-run` lists them).
        case: usize,
        /// Profiled runs (each op's time is its median over them).
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Print a shell's completion script for qbench, e.g.
    /// `qbench completions bash > ~/.local/share/bash-completion/completions/qbench`.
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// List what qbench knows: backends, models, schemes, dataset formats.
    List {
        /// What to list (default: everything).
        what: Option<ListWhat>,
        /// Print JSON: each section a list of {name, description}.
        #[arg(long)]
        json: bool,
    },
    /// Check suite files without running them.
    Validate {
        /// Suite files.
        #[arg(required = true)]
        suites: Vec<PathBuf>,
        /// Validate each suite as `run --set KEY=VALUE` would change it.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Print one JSON object per suite (a list): ok or its error, its case count, and what
        /// the backends expect to skip or refuse.
        #[arg(long)]
        json: bool,
    },
    /// Export a zoo model's weights to ONNX (the same file tract runs).
    Export {
        /// Zoo architecture: mlp or cnn.
        #[arg(long)]
        zoo: String,
        /// The safetensors weights, e.g. suites/models/cnn.safetensors.
        #[arg(long)]
        weights: PathBuf,
        /// Where to write the .onnx file.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListWhat {
    Backends,
    Models,
    Schemes,
    Datasets,
}

/// `--threshold-pct`: a percentage from 0 to 100 (a practical threshold), not NaN.
fn threshold_pct(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{text:?} is not a percentage from 0 to 100, e.g. 2")),
    }
}

fn backend_name(s: &str) -> Result<qbench::backend::BackendId, String> {
    qbench::backend::BackendId::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = qbench::backend::BackendId::all().map(|b| b.name()).collect();
        format!("unknown backend; use one of {}", names.join(", "))
    })
}

fn scheme_name(s: &str) -> Result<qbench::quant::SchemeId, String> {
    qbench::quant::SchemeId::from_name(s).ok_or_else(|| {
        "unknown scheme; `qbench list schemes` names them (e.g. int4-g32-sym, q2k, int8-pc-sym)".to_string()
    })
}

fn budget(s: &str) -> Result<f64, String> {
    qbench::tune::parse_budget(s).map_err(|e| e.to_string())
}
