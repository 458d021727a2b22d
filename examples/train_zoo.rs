//! Trains the zoo models on Fashion-MNIST and writes their weights as safetensors.
//!
//! ```text
//! cargo run --release --example train_zoo -- --data <dir with train-*.gz and t10k-*.gz> [--out suites/models]
//! ```
//! The Debian package `dataset-fashion-mnist` has the training set:
//! `apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb x`,
//! then `--data x/usr/share/datasets/fashion-mnist`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use qbench::backend::candle::train::{train, TrainConfig};
use qbench::data::load_idx;
use qbench::zoo::ZooModelId;

#[derive(Parser)]
struct Args {
    /// Folder with train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz and the t10k pair.
    #[arg(long)]
    data: PathBuf,
    /// Where the .safetensors files go.
    #[arg(long, default_value = "suites/models")]
    out: PathBuf,
    /// Models to train (default: all).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = |n: &str| args.data.join(n);
    let train_set =
        load_idx("fashion-mnist-train", &file("train-images-idx3-ubyte.gz"), &file("train-labels-idx1-ubyte.gz"))?;
    let test_set =
        load_idx("fashion-mnist-test", &file("t10k-images-idx3-ubyte.gz"), &file("t10k-labels-idx1-ubyte.gz"))?;
    let ids: Vec<ZooModelId> = if args.models.is_empty() {
        ZooModelId::ALL.to_vec()
    } else {
        args.models
            .iter()
            .map(|m| {
                ZooModelId::from_name(m)
                    .with_context(|| format!("unknown model {m}; known: {}", ZooModelId::names().join(", ")))
            })
            .collect::<anyhow::Result<_>>()?
    };
    std::fs::create_dir_all(&args.out)?;
    for id in ids {
        let cfg = match id {
            ZooModelId::Mlp => TrainConfig { epochs: 10, batch_size: 64, learning_rate: 1e-3, seed: args.seed },
            ZooModelId::Cnn => TrainConfig { epochs: 8, batch_size: 64, learning_rate: 1e-3, seed: args.seed },
        };
        eprintln!("training {} ({} parameters) with {cfg:?}", id.name(), id.parameter_count());
        let started = std::time::Instant::now();
        let mut last = 0.0;
        let weights = train(id, &train_set, &test_set, &cfg, |r| {
            last = r.test_accuracy;
            eprintln!(
                "  epoch {:>2}: train loss {:.4}, test top-1 {:.2}% ({:.0} s)",
                r.epoch,
                r.train_loss,
                100.0 * r.test_accuracy,
                started.elapsed().as_secs_f64()
            );
        })?;
        let path = args.out.join(format!("{}.safetensors", id.name()));
        candle_core::safetensors::save(&weights, &path)?;
        eprintln!("wrote {} (test top-1 {:.2}%)", path.display(), 100.0 * last);
        if last < 0.85 {
            bail!("{} reached only {:.2}% test top-1; training did not converge", id.name(), 100.0 * last);
        }
    }
    Ok(())
}
