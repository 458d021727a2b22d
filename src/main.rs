//! The `qbench` binary: parse arguments, call the library, map errors to exit codes.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use cli::{Cli, Command, ListWhat};
use qbench::backend::BackendId;
use qbench::data::DatasetFormat;
use qbench::model::ModelKind;
use qbench::quant::SchemeId;
use qbench::run::{self, Event, RunOptions};
use qbench::suite::Suite;
use qbench::zoo::ZooModelId;

fn main() -> ExitCode {
    // Usage errors exit 1 like any bad input (clap's own 2 would read as "a gate failed").
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { suite, dry_run: true, shard, filter, mut sets, only_case, threads, .. } => {
            let path = suite.context("give a suite file (e.g. suites/quickstart.toml)")?;
            // --threads N is --set measure.threads=N, last.
            sets.extend(threads.map(|t| format!("measure.threads={t}")));
            let suite = Suite::load_with_sets(&path, &sets)?;
            print!("{}", dry_run(&suite, shard, filter.as_ref(), only_case)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            suite,
            resume,
            out,
            quiet,
            baseline,
            shard,
            filter,
            sets,
            isolate,
            only_case,
            only_cases,
            threads,
            case_process,
            ..
        } => {
            // Resumed: the suite and the options that chose the cases are the run's own.
            let manifest = resume.as_deref().map(run::RunManifest::read).transpose()?;
            let (suite, shard, filter, sets, only_case, threads, isolate) = match &manifest {
                Some(m) => {
                    let shard =
                        m.shard.as_deref().map(qbench::suite::Shard::parse).transpose().map_err(anyhow::Error::msg)?;
                    let filter = m
                        .filter
                        .as_deref()
                        .map(qbench::suite::CaseFilter::parse)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("the run's filter in run.json does not parse: {e}"))?;
                    (
                        m.suite_file.clone(),
                        shard,
                        filter,
                        m.sets.clone(),
                        m.only_case,
                        // In the sets already when the run was given --threads.
                        None,
                        m.isolate,
                    )
                }
                None => (
                    suite.context("give a suite file (e.g. suites/quickstart.toml), or --resume <run dir>")?,
                    shard,
                    filter,
                    sets,
                    only_case,
                    threads,
                    isolate,
                ),
            };
            // --threads N is --set measure.threads=N, last: the run's copy of the suite, its
            // records and the processes it starts all see it.
            let mut sets = sets;
            sets.extend(threads.map(|t| format!("measure.threads={t}")));
            let suite = Suite::load_with_sets(&suite, &sets)?;
            // A progress bar on a terminal; plain lines otherwise (CI logs, pipes).
            use std::io::IsTerminal;
            let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
                let cases = qbench::suite::expand(&suite);
                let selected = qbench::suite::select(&suite, &cases, filter.as_ref(), shard).unwrap_or_default();
                let total = if only_case.is_some() { 1 } else { selected.iter().filter(|s| **s).count() };
                let bar = indicatif::ProgressBar::new(total as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} cases, {elapsed} elapsed, ~{eta} left",
                ) {
                    bar.set_style(style);
                }
                bar
            });
            let mut progress = |event: &Event| match &bar {
                Some(bar) => {
                    bar.println(event.to_string());
                    if event.ends_case() {
                        bar.inc(1);
                    }
                }
                // Warnings (threads above the cores, a debug build) get through --quiet.
                None if !quiet || event.is_warning() => eprintln!("{event}"),
                None => {}
            };
            let isolate = match isolate {
                true => Some(std::env::current_exe().context("cannot find the qbench executable to run each case in")?),
                false => None,
            };
            let stop = stop_on_signals(quiet)?;
            let options = RunOptions {
                out_dir: out,
                shard,
                filter,
                isolate,
                only_case,
                only_cases: only_cases.unwrap_or_default(),
                exe: std::env::current_exe().ok(),
                resume,
                stop: Some(stop),
                ..RunOptions::default()
            };
            let summary = run::run(&suite, &options, &mut progress)?;
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            if case_process {
                // One case for the parent run, which reports and gates every case itself.
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(signal) = summary.stopped_by {
                return stopped_early(&summary, signal);
            }
            let outputs = qbench::report::write_outputs(&summary.run_dir, &summary.records)?;
            println!("{}", outputs.markdown);
            eprintln!(
                "records: {}\nreport:  {} (charts in {})",
                summary.run_dir.join("records.jsonl").display(),
                summary.run_dir.join("report.html").display(),
                summary.run_dir.join("charts").display()
            );
            let failed = summary.failed();
            if failed > 0 {
                bail!("{failed} of {} cases failed (reasons above and in records.jsonl); the other cases were measured and written", summary.records.len());
            }
            if suite.gates.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            let baseline = baseline.as_deref().map(qbench::gate::read_baseline).transpose()?;
            gate_exit(&summary.run_dir, &suite.name, &suite.gates, &summary.records, baseline.as_deref(), false)
        }
        Command::Merge { runs, out, partial } => {
            let merged = qbench::merge::merge(&runs, out.as_deref(), partial)?;
            let outputs = qbench::report::write_outputs(&merged.run_dir, &merged.records)?;
            println!("{}", outputs.markdown);
            for w in &merged.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "merged {} records from {} run(s) into {}",
                merged.records.len(),
                runs.len(),
                merged.run_dir.display()
            );
            let failed = merged.records.iter().filter(|r| r.status == qbench::record::CaseStatus::Failed).count();
            if failed > 0 {
                bail!("{failed} of {} merged cases had failed in their run", merged.records.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { run_dir, baseline, json } => {
            let copy = run_dir.join("suite.toml");
            let text = qbench::files::read_text_bounded(&copy, qbench::files::MAX_SUITE_BYTES, "a suite")
                .with_context(|| {
                    format!("pass the folder `qbench run` printed ({} is its suite's copy)", copy.display())
                })?;
            let gates = qbench::suite::gates_of(&copy, &text)?;
            if gates.is_empty() {
                bail!("{} has no [[gates]]; add one (see README: Gates) and run again", copy.display());
            }
            let records = read_records_warning(&run_dir.join("records.jsonl"))?;
            let baseline = baseline.as_deref().map(qbench::gate::read_baseline).transpose()?;
            let name = records.first().map_or("run".to_string(), |r| r.suite.clone());
            gate_exit(&run_dir, &name, &gates, &records, baseline.as_deref(), json)
        }
        Command::Explain { run_dir, case, items } => {
            let e = qbench::explain::explain(&run_dir, case, items.unwrap_or(usize::MAX))?;
            write_case_analysis(&run_dir, &run_dir.join(format!("explain-case-{case}.md")), &e.render(), &e.chart())
        }
        Command::Bundle { run_dir, cases, items, out, floor_rel, factor, min_top1_agreement } => {
            let options = qbench::pack::PackOptions { cases, items, out, floor_rel, factor, min_top1_agreement };
            let packed = qbench::pack::pack(&run_dir, &options, &mut |line| eprintln!("packing {line}"))?;
            let m = &packed.manifest;
            for c in &m.cases {
                let tol: Vec<String> = c.outputs.iter().map(|o| format!("{:.3e}", o.max_abs)).collect();
                println!(
                    "{}: {} ({}), tolerance max |Δ| {}{}",
                    c.id,
                    c.artifact,
                    &c.artifact_sha256[..12.min(c.artifact_sha256.len())],
                    tol.join(" / "),
                    c.min_top1_agreement.map_or(String::new(), |a| format!(", top-1 agreement ≥ {a}"))
                );
            }
            eprintln!(
                "bundle: {} ({} cases, {} files) and {} ({} bytes); on the device: qbench-device verify {}",
                packed.dir.display(),
                m.cases.len(),
                m.files.len(),
                packed.tar.display(),
                packed.tar_bytes,
                packed.tar.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run_dirs } => {
            // Device runs (`qbench-device verify`) given beside workstation runs are attached to
            // them: their reports get a target-devices section.
            let mut loaded = Vec::new();
            for dir in &run_dirs {
                loaded.push((dir, read_records_warning(&dir.join("records.jsonl"))?));
            }
            let device_runs: Vec<qbench::report::devices::DeviceRun> = loaded
                .iter()
                .filter(|(_, r)| qbench::report::devices::is_device_run(r))
                .map(|(dir, r)| qbench::report::devices::DeviceRun::new(dir, r.clone()))
                .collect();
            for (dir, records) in &loaded {
                if !device_runs.is_empty() && !qbench::report::devices::is_device_run(records) {
                    qbench::report::attach_devices(dir, &device_runs)?;
                }
            }
            for (dir, records) in loaded {
                let outputs = qbench::report::write_outputs(dir, &records)?;
                println!("{}", outputs.markdown);
                eprintln!("regenerated from {} records in {}:", records.len(), dir.display());
                for f in &outputs.files {
                    eprintln!("  {}", f.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { runs: dirs, threshold_pct, allow_different_inputs, out, json } => {
            let runs = dirs.iter().map(|d| qbench::report::compare::load_run(d)).collect::<Result<Vec<_>, _>>()?;
            let report = qbench::report::compare::report(&runs, threshold_pct / 100.0, allow_different_inputs)?;
            // Kept as files (a CI artifact): beside the first run unless --out says where.
            let name = |d: &PathBuf| d.file_name().map_or("run".to_string(), |n| n.to_string_lossy().into_owned());
            let out = out.unwrap_or_else(|| {
                let parent = dirs[0].parent().map(PathBuf::from).unwrap_or_default();
                parent.join(qbench::files::file_stem(&format!("compare-{}-vs-{}", name(&dirs[0]), name(&dirs[1]))))
            });
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}; choose another --out", out.display()))?;
            let json_text =
                serde_json::to_string_pretty(&report.json).context("the comparison does not serialize")? + "\n";
            for (file, text) in
                [("compare.md", &report.markdown), ("compare.json", &json_text), ("compare.html", &report.html)]
            {
                let path = out.join(file);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}; choose another --out", path.display()))?;
            }
            print!("{}", if json { &json_text } else { &report.markdown });
            eprintln!("written: {}/compare.md, compare.json, compare.html", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Profile { run_dir, case, runs } => {
            let work = std::env::temp_dir().join(format!("qbench-profile-{}", std::process::id()));
            let profiled = qbench::profile::profile(&run_dir, case, runs, &work);
            let _ = std::fs::remove_dir_all(&work);
            let p = profiled?;
            write_case_analysis(&run_dir, &qbench::profile::report_path(&run_dir, case), &p.render(), &p.chart())
        }
        Command::Tune {
            suite,
            model,
            backend,
            budget,
            objective,
            start,
            ladder,
            tune_items,
            batch,
            compare_to,
            sets,
            out,
        } => {
            let suite = Suite::load_with_sets(&suite, &sets)?;
            let options = qbench::tune::TuneOptions {
                model,
                backend,
                budget_pts: budget,
                objective,
                start,
                ladder: (!ladder.is_empty()).then_some(ladder),
                tune_items,
                batch,
                compare_to,
                out_dir: out,
                stop: Some(stop_on_signals(false)?),
            };
            let outcome = match qbench::tune::tune(&suite, &options, &mut |line: &str| eprintln!("{line}")) {
                Ok(o) => o,
                Err(qbench::tune::TuneError::Stopped(signal, dir)) => {
                    eprintln!(
                        "TUNE ENDED EARLY ({}): the candidates measured so far are recorded in {}",
                        signal_name(signal as i32),
                        dir.display()
                    );
                    return Ok(ExitCode::from((128 + signal) as u8));
                }
                Err(e) => return Err(e.into()),
            };
            println!("{}", outcome.render());
            eprintln!("written: {}/tune.md, tune.json, charts/tune-pareto.svg", outcome.dir.display());
            if outcome.search.chosen.is_none() {
                let closest = outcome.search.closest.map(|c| &outcome.search.measured[c]);
                eprintln!(
                    "no candidate meets the budget of {:.2} points; the closest is {}",
                    outcome.budget_pts,
                    closest.map_or("none".into(), |m| format!("{} ({}): {}", m.label, m.step, m.message))
                );
                return Ok(ExitCode::from(2));
            }
            if !outcome.passed() {
                eprintln!("the chosen variant does not hold the budget on the test split (tune.md says by how much)");
                return Ok(ExitCode::from(2));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::TrainQat { suite, options, threads } => {
            let suite = Suite::load(&suite)?;
            qbench::backend::configure_threads(
                threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            );
            let outcome = qbench::tune::qat::train(&suite, &options, &mut |line: &str| eprintln!("{line}"))?;
            eprintln!("wrote {}: {}", outcome.out.display(), outcome.training);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "qbench", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::List { what, json } => {
            print!("{}", list(what, json));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { suites, sets, json } => {
            let mut bad = 0;
            let mut docs = Vec::new();
            for path in &suites {
                match Suite::load_with_sets(path, &sets).map_err(anyhow::Error::from).and_then(|s| {
                    let datasets = run::load_datasets(&s)?;
                    let models = load_models(&s)?;
                    for ((entry, model), data) in
                        s.models.iter().zip(&models).zip(s.models.iter().map(|m| &datasets[m.dataset]))
                    {
                        model.check_dataset(&entry.name, data, s.datasets[entry.dataset].tokenizer.as_deref())?;
                    }
                    Ok((s, models))
                }) {
                    Ok((s, models)) => {
                        let cases = qbench::suite::expand(&s);
                        let expected = expectations(&s, &models, &cases);
                        if json {
                            let expected: Vec<serde_json::Value> = expected
                                .iter()
                                .map(|(what, n)| serde_json::json!({"cases": n, "what": what}))
                                .collect();
                            docs.push(serde_json::json!({"suite": path.display().to_string(), "ok": true, "cases": cases.len(), "expectations": expected}));
                            continue;
                        }
                        println!("ok: {} ({} cases)", path.display(), cases.len());
                        for (what, n) in expected {
                            println!("  {n} {what}");
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        eprintln!("Error: {e:#}");
                        if json {
                            docs.push(serde_json::json!({"suite": path.display().to_string(), "ok": false, "error": format!("{e:#}")}));
                        }
                    }
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&docs).context("the results do not serialize")?);
            }
            if bad > 0 {
                bail!("{bad} of {} suites are invalid", suites.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { zoo, weights, output } => {
            let id = ZooModelId::from_name(&zoo)
                .with_context(|| format!("unknown zoo model \"{zoo}\"; known: {}", ZooModelId::names().join(", ")))?;
            let name = weights.file_stem().map_or(zoo.clone(), |s| s.to_string_lossy().into_owned());
            let reference = qbench::model::Reference::load(&name, id, &weights)?;
            let bytes = qbench::model::onnx::export(&name, id, &reference.tensors)?;
            std::fs::write(&output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("wrote {} ({} bytes)", output.display(), bytes.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Checks the gates, prints the summary, and maps the verdict to the documented exit code.
/// What `explain` and `profile` leave in the run folder: the Markdown at `path` (also printed),
/// the chart as data for `qbench report` and drawn now, and report.html rebuilt to show it.
fn write_case_analysis(
    run_dir: &std::path::Path,
    path: &std::path::Path,
    text: &str,
    chart: &qbench::report::chart::Chart,
) -> anyhow::Result<ExitCode> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let charts = run_dir.join("charts");
    chart.write_data(&charts)?;
    chart.write(&charts)?;
    let records = qbench::report::jsonl::read_records(&run_dir.join("records.jsonl"))?;
    qbench::report::write_html(run_dir, &records)?;
    println!("{text}");
    eprintln!(
        "written: {}, {}/{}.svg and .png; report.html now shows the chart",
        path.display(),
        charts.display(),
        chart.id
    );
    Ok(ExitCode::SUCCESS)
}

fn gate_exit(
    run_dir: &std::path::Path,
    name: &str,
    gates: &[qbench::gate::Gate],
    records: &[qbench::record::Record],
    baseline: Option<&[qbench::record::Record]>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (checks, text) = qbench::gate::check_run(run_dir, name, gates, records, baseline)?;
    // report.html shows the verdicts too.
    qbench::report::write_html(run_dir, records)?;
    if !json {
        println!("{text}");
    }
    let mut verdict = qbench::gate::overall(&checks);
    // A run that did not record every case it planned cannot pass: the gates never saw those.
    let gaps = qbench::run::completeness(run_dir, records).map(|c| c.describe()).unwrap_or_default();
    if !gaps.is_empty() {
        verdict = verdict.max(qbench::gate::Verdict::Inconclusive);
    }
    if json {
        let checks: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| {
                serde_json::json!({"gate": c.gate, "case": c.case, "check": c.metric, "verdict": c.verdict.name().to_lowercase(), "numbers": c.message})
            })
            .collect();
        let doc = serde_json::json!({
            "suite": name,
            "run_dir": run_dir.display().to_string(),
            // pass, fail or inconclusive.
            "verdict": verdict.name().to_lowercase(),
            "exit_code": verdict.exit_code(),
            "checks": checks,
            // Why the run cannot pass whatever its checks say (cases planned and not recorded).
            "incomplete": gaps,
        });
        println!("{}", serde_json::to_string_pretty(&doc).context("the verdict does not serialize")?);
    }
    if !gaps.is_empty() {
        let lines: Vec<String> = gaps.iter().map(|g| format!("- INCOMPLETE RUN: {g}")).collect();
        if !json {
            println!("{}\n", lines.join("\n"));
        }
        if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            use std::io::Write;
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&summary)
                .and_then(|mut f| writeln!(f, "{}\n", lines.join("\n")));
            appended.with_context(|| format!("cannot append to {}", std::path::Path::new(&summary).display()))?;
        }
    }
    eprintln!("gates: {} (JUnit: {})", verdict.name(), run_dir.join("gates.xml").display());
    Ok(ExitCode::from(verdict.exit_code()))
}

/// `list` as text (a section per kind, a row per name), or with `json` as
/// `{"<kind>": {"title": …, "items": [{"name", "description"}]}}`.
fn list(what: Option<ListWhat>, json: bool) -> String {
    // (JSON key, title, (name, description) rows)
    type Section = (&'static str, String, Vec<(String, String)>);
    let mut sections: Vec<Section> = Vec::new();
    let show = |w: ListWhat| what.is_none() || what.is_some_and(|x| x as u8 == w as u8);
    let mut section = |key: &'static str, title: &str, rows: Vec<(String, String)>| {
        sections.push((key, title.to_string(), rows));
    };
    if show(ListWhat::Backends) {
        section(
            "backends",
            "backends",
            BackendId::all().map(|b| (b.name().to_string(), format!("{}{}", b.description(), readiness(b)))).collect(),
        );
    }
    if show(ListWhat::Models) {
        section(
            "models",
            "models (built-in zoo, or a model file by path)",
            ZooModelId::ALL
                .iter()
                .map(|m| (m.name().to_string(), format!("{} ({} parameters)", m.description(), m.parameter_count())))
                .chain([
                    ("path = \"x.onnx\"".to_string(), format!("a user's ONNX file with its [[models.inputs]]: schemes rewrite its MatMul/Gemm/Conv layers; {}", runs_on(&ModelKind::Onnx { path: PathBuf::new(), inputs: Vec::new(), outputs: Vec::new() }))),
                    ("path = \"x.safetensors\"".to_string(), format!("a BERT checkpoint with config.json: schemes apply to its encoder's linear layers; {}", runs_on(&ModelKind::Bert { path: PathBuf::new(), config: PathBuf::new() }))),
                    ("path = \"x.gguf\"".to_string(), format!("a GGUF language model (llama, qwen2, qwen3, phi3; its own tokenizer or a tokenizer.json): schemes requantize its 2-D weights; scored by perplexity on a text dataset; {}", runs_on(&ModelKind::GgufLm { path: PathBuf::new() }))),
                    ("[[models.inputs]]".to_string(), "one per ONNX graph input: name; shape (batch first, other symbols bound in dims = { … }); dtype (default: the file's); value = … to feed a constant instead of dataset values (shape = its whole shape, [] for a scalar; batch_axis = k where the batch sits inside it)".to_string()),
                    ("[[models.outputs]]".to_string(), "one per ONNX graph output to score, in order (default: the first output, its kind inferred): name; kind; an output's kind picks its metrics".to_string()),
                    ("output kinds".to_string(), "classes: top-1/top-5 against class labels, top-k agreement, KL (inferred for one axis per item, e.g. [batch, 10]); sequence: per-position agreement over position_axis = 0|1 (inferred for two axes, e.g. [batch, time, vocab]), with ctc_blank = N and alphabet = \"…\" (or alphabet_file, a symbol a line) CTC greedy decoding: exact match and character error rate against a dataset's text_labels (a text a line); scores: MSE, SQNR and agreement at threshold = t (default 0.5), accuracy at it against 0/1 labels for one score per item (inferred for [batch, 1] and maps of 3+ axes); embedding: cosine and retrieval agreement@k (k = 5; a BERT checkpoint's output); regression: MSE, SQNR, largest error".to_string()),
                    ("GGUF architectures".to_string(), format!(
                        "general.architecture {}; gemma, gemma2, gemma3 refused (candle-transformers 0.11's quantized Gemma uses SiLU where Gemma uses GELU-tanh); the file's own tokenizer: tokenizer.ggml.model {} (gpt2 pre-tokenizers: {})",
                        qbench::model::gguf_lm::LmArch::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
                        qbench::model::gguf_tokenizer::MODELS.join(", "),
                        qbench::model::gguf_tokenizer::PRE_TOKENIZERS.join(", ")
                    )),
                ])
                .collect(),
        );
    }
    if show(ListWhat::Schemes) {
        section(
            "schemes",
            "schemes (each backend's expectation for a zoo MLP in brackets; records hold what the engine did)",
            SchemeId::ALL
                .iter()
                .map(|s| {
                    let how: Vec<String> = BackendId::all().map(|b| format!("{} {}", b.name(), expectation(b, *s))).collect();
                    (s.name(), format!("{} [{}]", s.description(), how.join(", ")))
                })
                .chain(std::iter::once((
                    "int4-g<N>-sym|asym".to_string(),
                    "any even group size N works too, e.g. int4-g16-sym; N must divide every quantized layer's row width".to_string(),
                )))
                .collect(),
        );
    }
    if show(ListWhat::Datasets) {
        let mut rows: Vec<(String, String)> =
            DatasetFormat::ALL.iter().map(|f| (f.name().to_string(), format!("format: {}", f.description()))).collect();
        rows.push((
            "shipped".to_string(),
            "fashion-mnist-test: suites/data/fashion-mnist/t10k-*-idx*-ubyte.gz (10,000 28×28 images, 10 classes, MIT); fashion-mnist-1k.npz (+ labels CSV): its first 1,000; sentences.txt (40 lines, for suites/models/bert-tiny)"
                .into(),
        ));
        rows.push((
            "[calibration] select".to_string(),
            format!(
                "how calibration items are held out: {} (random and stratified take seed = N; every case evaluates on the other items)",
                qbench::data::split::Selection::NAMES.join(", ")
            ),
        ));
        section("datasets", "datasets", rows);
    }
    if json {
        let map: serde_json::Map<String, serde_json::Value> = sections
            .into_iter()
            .map(|(key, title, rows)| {
                let items: Vec<serde_json::Value> =
                    rows.into_iter().map(|(n, d)| serde_json::json!({"name": n, "description": d})).collect();
                (key.to_string(), serde_json::json!({"title": title, "items": items}))
            })
            .collect();
        return serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_default() + "\n";
    }
    let mut out = String::new();
    for (_, title, rows) in sections {
        out.push_str(&format!("{title}:\n"));
        for (name, desc) in rows {
            out.push_str(&format!("  {name:<22} {desc}\n"));
        }
    }
    out
}

/// Which CPU backends of this build say they run a model of this kind in f32 (their capability
/// answer before any file is read; the CUDA backends follow their CPU ones where built).
fn runs_on(kind: &ModelKind) -> String {
    let plan = qbench::quant::Plan::uniform(&[][..], SchemeId::F32);
    let names: Vec<&str> = BackendId::all()
        .filter(|b| !b.is_cuda() && b.built().is_ok())
        .filter(|b| {
            !matches!(
                b.create(0).capability(qbench::backend::ModelQuery::declared(kind), &plan, 1),
                qbench::backend::Realization::Unsupported(_)
            )
        })
        .map(|b| b.name())
        .collect();
    format!("runs on {} (this build's CPU backends)", names.join(", "))
}

/// A backend's expectation for a uniform plan of `scheme` on the zoo MLP (its capability
/// answer; a GPU backend's is asked without a GPU probe's verdict: `list` describes the build).
fn expectation(backend: BackendId, scheme: SchemeId) -> &'static str {
    let kind = ModelKind::Zoo { zoo: ZooModelId::Mlp, weights: PathBuf::new() };
    let plan = qbench::quant::Plan::uniform(ZooModelId::Mlp, scheme);
    if backend.built().is_err() {
        return "not in this build";
    }
    match backend.create(0).capability(qbench::backend::ModelQuery::declared(&kind), &plan, 1) {
        qbench::backend::Realization::Unsupported(_) if backend.is_cuda() => "(needs a GPU)",
        // An engine loaded at run time whose library is not here (ONNX Runtime): `list
        // backends` says why.
        qbench::backend::Realization::Unsupported(_)
            if matches!(
                backend.create(0).capability(
                    qbench::backend::ModelQuery::declared(&kind),
                    &qbench::quant::Plan::uniform(ZooModelId::Mlp, SchemeId::F32),
                    1
                ),
                qbench::backend::Realization::Unsupported(_)
            ) =>
        {
            "(not available here)"
        }
        r => r.name(),
    }
}

/// Every model file the suite names, read and checked as a run reads it (an ONNX file's
/// normalized copy goes to a scratch folder): a file that cannot be used is an error here.
fn load_models(suite: &Suite) -> anyhow::Result<Vec<qbench::model::LoadedModel>> {
    let scratch = std::env::temp_dir().join(format!("qbench-validate-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let models = suite
        .models
        .iter()
        .map(|m| {
            let model = qbench::model::LoadedModel::load(&m.name, &m.kind, &scratch)?;
            check_on_engines(suite, &m.name, &model)?;
            Ok(model)
        })
        .collect::<anyhow::Result<Vec<_>>>();
    let _ = std::fs::remove_dir_all(&scratch);
    models
}

/// Asks each of the suite's engines that can run the model whether it can build it (an ONNX
/// graph's ops and shapes), at the suite's first batch size, without running it.
fn check_on_engines(suite: &Suite, name: &str, model: &qbench::model::LoadedModel) -> anyhow::Result<()> {
    use qbench::backend::{ModelQuery, Realization};
    let index = suite.models.iter().position(|m| m.name == name);
    let batch = index.and_then(|i| suite.batch_sizes_of(i).first().copied()).unwrap_or(1);
    let plan = qbench::quant::Plan::uniform(model.layers.as_slice(), SchemeId::F32);
    // Every case is scored against the f32 outputs of the model's reference engine: without
    // one, every case of the model fails.
    qbench::backend::reference_backend(ModelQuery::loaded(model), &plan, batch).map_err(|reasons| {
        anyhow::anyhow!(
            "model \"{name}\" ({}): no reference engine of this build can run it, so none of its cases could be scored: {reasons}",
            suite.models.iter().find(|m| m.name == name).map_or(String::new(), |m| m.file().display().to_string())
        )
    })?;
    let qbench::model::Content::Onnx { f32_file, model: onnx } = &model.content else { return Ok(()) };
    for id in index.map(|i| suite.backends_of(i)).unwrap_or_default() {
        let backend = id.create(suite.cuda_device);
        if matches!(backend.capability(ModelQuery::loaded(model), &plan, batch), Realization::Unsupported(_)) {
            continue;
        }
        backend
            .check_model(f32_file, batch)
            .with_context(|| format!("model \"{name}\" ({}) cannot be built by {}", onnx.path.display(), id.name()))?;
    }
    Ok(())
}

/// What the run will do with the cases that do not simply run, as the backends answer before
/// anything runs: the reasons cases will be skipped, and the cases `require_native` will refuse,
/// with how many each.
/// `run --dry-run`: every case the run would select, by its case index, with its backend's
/// expectation (what `run` records before measuring), and the reason of each skip or refusal.
fn dry_run(
    suite: &Suite,
    shard: Option<qbench::suite::Shard>,
    filter: Option<&qbench::suite::CaseFilter>,
    only_case: Option<usize>,
) -> anyhow::Result<String> {
    use qbench::backend::{ModelQuery, Realization};
    use std::fmt::Write;
    let cases = qbench::suite::expand(suite);
    let selected = qbench::suite::select(suite, &cases, filter, shard)
        .map_err(|reason| anyhow::anyhow!("--filter {:?}: {reason}", filter.map(|f| f.text()).unwrap_or_default()))?;
    if let Some(i) = only_case.filter(|&i| i >= cases.len()) {
        bail!("the suite has no case {i} (its cases are 0 to {})", cases.len().saturating_sub(1));
    }
    let models = load_models(suite)?;
    let mut out = String::new();
    let (mut measured, mut skipped, mut refused) = (0, 0, 0);
    for (index, case) in cases.iter().enumerate() {
        if only_case.is_some_and(|i| i != index) || !selected[index] {
            continue;
        }
        let model = &models[case.model];
        let (plan, expected) = qbench::run::expectation(suite, case, ModelQuery::loaded(model), &model.layers);
        let what = match &expected {
            Realization::Unsupported(why) => {
                skipped += 1;
                format!("skip: {why}")
            }
            other if suite.require_native && *other != Realization::Native => {
                refused += 1;
                format!("refused by require_native: expected {}", other.name())
            }
            other => {
                measured += 1;
                format!("expected {}", other.name())
            }
        };
        let overrides = plan.describe_overrides();
        let overrides = if overrides.is_empty() { String::new() } else { format!(" [{overrides}]") };
        let label = &case.point(suite).label;
        let point = if label.is_empty() { String::new() } else { format!(" / {label}") };
        let _ = writeln!(
            out,
            "{index:>4}  {} / {}{overrides} / {} / batch {}{point}: {what}",
            suite.models[case.model].name,
            case.scheme.name(),
            case.backend.name(),
            case.batch
        );
    }
    // What the matrix rules left out, rule by rule: not cases, so not counted above.
    let excluded = qbench::suite::excluded(suite);
    for (i, rule) in suite.exclude.iter().enumerate() {
        let n = excluded.iter().filter(|(_, r)| *r == i).count();
        let why = rule.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
        let _ = writeln!(out, "[[exclude]] {}: leaves out {n} combination(s){why}", i + 1);
    }
    let _ = writeln!(
        out,
        "{} case(s) selected: {measured} to measure, {skipped} to skip, {refused} to refuse (dry run: nothing measured or written)",
        measured + skipped + refused
    );
    Ok(out)
}

fn expectations(
    suite: &Suite,
    models: &[qbench::model::LoadedModel],
    cases: &[qbench::suite::Case],
) -> Vec<(String, usize)> {
    use qbench::backend::{ModelQuery, Realization};
    let mut out: Vec<(String, usize)> = Vec::new();
    for case in cases {
        let model = &models[case.model];
        let what = match qbench::run::expectation(suite, case, ModelQuery::loaded(model), &model.layers).1 {
            Realization::Unsupported(why) => format!("will be skipped: {}: {why}", case.backend.name()),
            Realization::Native => continue,
            other if suite.require_native => format!(
                "will fail (require_native): {} expects {} to run {}",
                case.backend.name(),
                case.scheme.name(),
                other.name()
            ),
            _ => continue,
        };
        match out.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => out.push((what, 1)),
        }
    }
    out
}

/// Whether a backend can run here, for `list backends`: not in this build, not on this machine
/// (its reason: no GPU, no ONNX Runtime library), or ready (on the first GPU, by name; an engine
/// loaded at run time, with the version of the library it found). Empty for CPU engines compiled
/// in.
fn readiness(backend: BackendId) -> String {
    use qbench::backend::gpu;
    if let Err(hint) = backend.built() {
        return format!(" [not in this build: {hint}]");
    }
    let plan = qbench::quant::Plan::uniform(ZooModelId::Mlp, SchemeId::F32);
    let kind = ModelKind::Zoo { zoo: ZooModelId::Mlp, weights: PathBuf::new() };
    let unsupported = match backend.create(0).capability(qbench::backend::ModelQuery::declared(&kind), &plan, 1) {
        qbench::backend::Realization::Unsupported(why) => Some(why),
        _ => None,
    };
    let runtime = (backend.registration().runtime_version)();
    match (backend.is_cuda(), unsupported) {
        (true, Some(why)) => format!(" [not available here on cuda:0: {why}]"),
        (true, None) => gpu::probe(0).map(|g| format!(" [ready on cuda:0: {}]", g.name)).unwrap_or_default(),
        (false, Some(why)) => format!(" [not available here: {why}]"),
        // An engine loaded at run time says which library it found.
        (false, None) => runtime.map(|r| format!(" [ready: {r}]")).unwrap_or_default(),
    }
}

/// Turns SIGINT and SIGTERM into a request to stop before the next case (the returned flag
/// holds the signal's number); a second one ends the process at once, with 128 + its number.
/// Records are flushed as each case ends, so neither way loses a finished case.
fn stop_on_signals(quiet: bool) -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, armed.clone())
            .context("cannot install the signal handlers")?;
        signal_hook::flag::register(signal, armed.clone()).context("cannot install the signal handlers")?;
        signal_hook::flag::register_usize(signal, stop.clone(), signal as usize)
            .context("cannot install the signal handlers")?;
    }
    // Says at once that the signal was heard (a handler cannot print safely).
    let watch = stop.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let signal = watch.load(Ordering::SeqCst);
        if signal != 0 {
            if !quiet {
                eprintln!(
                    "{}: stopping after the current case (send it again to stop at once)",
                    signal_name(signal as i32)
                );
            }
            return;
        }
    });
    Ok(stop)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// A run stopped by a signal: reports for what was recorded, what is missing and how to go on,
/// and 128 + the signal's number as the exit code (130 for SIGINT, 143 for SIGTERM).
fn stopped_early(summary: &run::RunSummary, signal: i32) -> anyhow::Result<ExitCode> {
    let outputs = qbench::report::write_outputs(&summary.run_dir, &summary.records)?;
    println!("{}", outputs.markdown);
    let text = format!(
        "RUN ENDED EARLY ({}): {} case(s) recorded, {} not measured. Reports cover what was recorded. Resume with: qbench run --resume {}",
        signal_name(signal),
        summary.records.len(),
        summary.missing,
        summary.run_dir.display()
    );
    eprintln!("{text}");
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "**{text}**\n"));
        appended.with_context(|| format!("cannot append to {}", std::path::Path::new(&path).display()))?;
    }
    Ok(ExitCode::from((128 + signal) as u8))
}

/// A run's records, saying on stderr when an incomplete last line (a run stopped while writing
/// it) was left out.
fn read_records_warning(path: &std::path::Path) -> anyhow::Result<Vec<qbench::record::Record>> {
    let file = qbench::record::read_records_file(path)?;
    if let Some(line) = file.torn_line {
        eprintln!(
            "WARNING: {}, line {line}: incomplete (the run stopped while writing it); left out, the {} complete record(s) before it are used",
            path.display(),
            file.records.len()
        );
    }
    // Cases the run planned (cases.json) but did not record, recorded twice, or not its own.
    if let Some(dir) = path.parent() {
        for gap in qbench::run::completeness(dir, &file.records).map(|c| c.describe()).unwrap_or_default() {
            eprintln!("WARNING: {}: {gap}", dir.display());
        }
    }
    Ok(file.records)
}
