//! `qbench-device`: verifies a bundle written by `qbench bundle` on the machine it runs on.
//!
//! Exit codes: 0 every case passed; 2 a case failed its tolerance, cannot run on this device or
//! failed to run, or no case was verified; 1 the bundle is bad (a changed or missing file, a link,
//! a newer format, a damaged manifest), the output folder is not new or empty, or the arguments
//! are bad.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qbench-device",
    version,
    about = "Verify a qbench bundle on this device: outputs against the workstation's golden outputs, latency with the run's sampler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verifies every case of a bundle (its folder, or the .tar beside it).
    Verify {
        /// The bundle folder or .tar `qbench bundle` wrote.
        bundle: PathBuf,
        /// Where records.jsonl, environment.json and any diff-<case>.json go.
        #[arg(short, long, default_value = "device-run")]
        out: PathBuf,
        /// Sampling time budget per case in milliseconds (default: the run's).
        #[arg(long)]
        max_time_ms: Option<u64>,
        /// Only the cases whose id contains this text.
        #[arg(long)]
        only: Option<String>,
        /// The CUDA device for CUDA cases.
        #[arg(long, default_value_t = 0)]
        cuda_device: usize,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let Command::Verify { bundle, out, max_time_ms, only, cuda_device } = cli.command;
    let options = qbench::bundle::verify::VerifyOptions { out_dir: out, cuda_device, max_time_ms, only };
    let verified = match qbench::bundle::verify::verify(&bundle, &options) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(1);
        }
    };
    for r in &verified.records {
        let verdict = r.device_verdict.as_deref().unwrap_or("error");
        let deviation = match (r.device_max_abs_diff, r.device_tolerance_abs) {
            (Some(d), Some(t)) => {
                format!(", max |Δ| {d:.3e} (tolerance {t:.3e}) on {}", r.device_worst_output.as_deref().unwrap_or("?"))
            }
            _ => String::new(),
        };
        let agreement =
            r.device_top1_agreement.map_or(String::new(), |a| format!(", top-1 agreement {:.2}%", 100.0 * a));
        let latency = r.latency_median_ns.map_or(String::new(), |ns| format!(", median {:.1} µs", ns / 1e3));
        println!("{verdict:<11} {}{deviation}{agreement}{latency}", r.bundle_case.as_deref().unwrap_or("?"));
        if verdict != "pass" {
            if let Some(e) = &r.error {
                println!("            {e}");
            }
        }
    }
    if let Some(why) = &verified.emulated {
        println!("timing: emulated ({why}); latencies are the emulator's, recorded and never gated");
    }
    println!(
        "{} passed, {} failed, {} unsupported, {} errors; records: {}",
        verified.count("pass"),
        verified.count("fail"),
        verified.count("unsupported"),
        verified.count("error"),
        verified.out_dir.join("records.jsonl").display()
    );
    if verified.records.is_empty() {
        eprintln!("Error: no case was verified (the bundle has none, or --only matched none)");
        return ExitCode::from(2);
    }
    if verified.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
