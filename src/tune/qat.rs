//! `qbench train-qat`: quantization-aware fine-tuning of a zoo model for one scheme of a suite,
//! on the training set (never the test set), from its trained f32 weights. The result is f32
//! weights that the scheme then quantizes like any others, so a suite benchmarks PTQ and QAT
//! by the same schemes, side by side; the file's metadata says how it was trained, and records
//! carry that (`model_training`).

use std::path::{Path, PathBuf};

use super::TuneError;
use crate::backend::candle::train::{train_qat, QatEpoch, TrainConfig};
use crate::model::ModelKind;
use crate::quant::SchemeId;
use crate::suite::Suite;

/// What to train (`qbench train-qat`'s options).
#[derive(Debug, Clone, clap::Args)]
pub struct QatOptions {
    /// The zoo model's name in the suite.
    #[arg(long)]
    pub model: String,
    /// The scheme to train for (a weight scheme: f16, bf16, int8/int4 weights, a GGML type).
    #[arg(long, value_parser = scheme)]
    pub scheme: SchemeId,
    /// The folder with train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (Debian's
    /// dataset-fashion-mnist: /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    pub data: PathBuf,
    /// Passes over the training items.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seed of the shuffling and of the validation items.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Training items held out to score each epoch (stratified by label, from the seed).
    #[arg(long, default_value_t = 5000)]
    pub validation_items: usize,
    /// The .safetensors file to write.
    #[arg(long)]
    pub out: PathBuf,
}

fn scheme(s: &str) -> Result<SchemeId, String> {
    SchemeId::from_name(s)
        .ok_or_else(|| "unknown scheme; `qbench list schemes` names them (e.g. q4_0, int4-g32-sym)".to_string())
}

/// What a training left behind.
#[derive(Debug, Clone)]
pub struct QatOutcome {
    pub out: PathBuf,
    /// Validation top-1 of the fake-quantized start weights (what PTQ gives), then each epoch.
    pub ptq_validation_accuracy: f64,
    pub epochs: Vec<QatEpoch>,
    pub seconds: f64,
    /// What the file's metadata says (`model::TRAINING_METADATA`).
    pub training: String,
}

/// Trains `opts.model` of `suite` for `opts.scheme` (with the suite's overrides for it).
pub fn train(suite: &Suite, opts: &QatOptions, progress: &mut dyn FnMut(&str)) -> Result<QatOutcome, TuneError> {
    let usage = |m: String| TuneError::Usage(m);
    let index = suite.models.iter().position(|m| m.name == opts.model).ok_or_else(|| {
        let known: Vec<&str> = suite.models.iter().map(|m| m.name.as_str()).collect();
        usage(format!("model \"{}\" is not in the suite; its models: {}", opts.model, known.join(", ")))
    })?;
    let ModelKind::Zoo { zoo, weights } = &suite.models[index].kind else {
        return Err(usage(format!(
            "model \"{}\" is not a zoo model: train-qat trains the built-in architectures",
            opts.model
        )));
    };
    if opts.epochs == 0 || opts.batch_size == 0 || !(opts.learning_rate > 0.0 && opts.learning_rate.is_finite()) {
        return Err(usage("--epochs, --batch-size and --learning-rate must be positive".into()));
    }
    if opts.scheme == SchemeId::F32 || opts.scheme.activations() != crate::quant::ActivationQuant::None {
        return Err(usage(format!(
            "--scheme {}: QAT here fake-quantizes weights, so it trains weight schemes (f16, bf16, int8/int4 weights, GGML types); {}",
            opts.scheme.name(),
            if opts.scheme == SchemeId::F32 { "f32 has nothing to quantize" } else { "this scheme also quantizes activations, which training would not see" }
        )));
    }
    // Where the weights go is checked before training, not after.
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TuneError::Write { path: dir.to_path_buf(), source })?;
    }
    let existed = opts.out.exists();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.out)
        .map_err(|source| TuneError::Write { path: opts.out.clone(), source })?;
    if !existed {
        let _ = std::fs::remove_file(&opts.out);
    }
    let reference = crate::model::Reference::load(&opts.model, *zoo, weights)?;
    let layers: Vec<(String, usize)> = zoo.weighted_layers().into_iter().map(|(n, w)| (n.to_string(), w)).collect();
    let plan = suite.plan(index, opts.scheme, &layers);
    plan.check(*zoo).map_err(|e| usage(format!("{} on {}: {e}", opts.scheme.name(), opts.model)))?;
    let file = |n: &str| opts.data.join(n);
    let images = file("train-images-idx3-ubyte.gz");
    let labels = file("train-labels-idx1-ubyte.gz");
    if !images.exists() || !labels.exists() {
        return Err(usage(format!(
            "{} needs train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (Debian: apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb x, then --data x/usr/share/datasets/fashion-mnist)",
            opts.data.display()
        )));
    }
    let all = crate::data::load_idx("fashion-mnist-train", &images, &labels)?;
    let split = crate::data::split::split(
        all.len(),
        opts.validation_items,
        all.labels.as_deref(),
        crate::data::split::Selection::Stratified { seed: opts.seed },
    )
    .map_err(|e| usage(format!("--validation-items {}: {e}", opts.validation_items)))?;
    let (validation, training) = (all.select(&split.held), all.select(&split.rest));
    let cfg = TrainConfig {
        epochs: opts.epochs,
        batch_size: opts.batch_size,
        learning_rate: opts.learning_rate,
        seed: opts.seed,
    };
    let candle = |e: candle_core::Error| usage(format!("training failed: {e}"));
    // PTQ on the same validation items: the weights as they are, fake-quantized.
    let ptq = ptq_accuracy(*zoo, &reference.tensors, &plan.layers, &validation).map_err(candle)?;
    progress(&format!(
        "QAT of {} for {} from {}: {} training items, {} validation items; PTQ validation top-1 {:.2}%",
        opts.model,
        opts.scheme.name(),
        weights.display(),
        training.len(),
        validation.len(),
        100.0 * ptq
    ));
    let started = std::time::Instant::now();
    let mut epochs = Vec::new();
    let tensors = train_qat(*zoo, &reference.tensors, &plan.layers, &training, &validation, &cfg, |e| {
        progress(&format!(
            "  epoch {}: train loss {:.4}, validation top-1 {:.2}% (fake-quantized), {:.0} s",
            e.epoch,
            e.train_loss,
            100.0 * e.validation_accuracy,
            started.elapsed().as_secs_f64()
        ));
        epochs.push(e.clone());
    })
    .map_err(candle)?;
    let seconds = started.elapsed().as_secs_f64();
    let training_text = format!(
        "QAT for {} from {} (sha256 {}): {} epoch(s), AdamW lr {}, batch {}, seed {}, {:.0} s on {} thread(s); Fashion-MNIST train set less {} validation items; validation top-1 {:.2}% (PTQ {:.2}%)",
        opts.scheme.name(),
        weights.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        &reference.sha256[..12.min(reference.sha256.len())],
        opts.epochs,
        opts.learning_rate,
        opts.batch_size,
        opts.seed,
        seconds,
        crate::backend::configured_threads(),
        validation.len(),
        100.0 * epochs.last().map_or(ptq, |e: &QatEpoch| e.validation_accuracy),
        100.0 * ptq
    );
    write(&opts.out, &tensors, &training_text)?;
    Ok(QatOutcome { out: opts.out.clone(), ptq_validation_accuracy: ptq, epochs, seconds, training: training_text })
}

/// Top-1 of the network with its weights fake-quantized by `layers`' schemes.
fn ptq_accuracy(
    zoo: crate::zoo::ZooModelId,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    layers: &[(String, SchemeId)],
    data: &crate::data::Dataset,
) -> candle_core::Result<f64> {
    let tensors: Vec<(String, candle_core::Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
    let fq = crate::backend::candle::train::fake_quantized(zoo, &tensors, layers, false)?;
    let net = crate::backend::candle::Net::new(zoo, &fq)?;
    crate::backend::candle::train::accuracy(&net, zoo, data)
}

/// Writes the weights with how they were trained in the file's metadata.
fn write(
    path: &Path,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    training: &str,
) -> Result<(), TuneError> {
    let mut sorted: Vec<(&String, &candle_core::Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let metadata: std::collections::HashMap<String, String> =
        [(crate::model::TRAINING_METADATA.to_string(), training.to_string())].into_iter().collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TuneError::Write { path: dir.to_path_buf(), source })?;
    }
    safetensors::serialize_to_file(sorted, Some(metadata), path)
        .map_err(|e| TuneError::Write { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })
}
