//! Seeded training of the zoo models (used by `examples/train_zoo.rs`).
//!
//! Initialisation and shuffling come from one `StdRng` seed, so a run is
//! reproducible for a given seed and thread count (parallel reductions may
//! round differently with another thread count).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{loss, AdamW, Module, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::Net;
use crate::data::Dataset;
use crate::zoo::ZooModelId;

/// Training hyper-parameters.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// What one epoch achieved.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub test_accuracy: f64,
}

/// PyTorch's default initialisation: weights and biases `U(-1/√fan_in, 1/√fan_in)`.
pub fn init_parameters(id: ZooModelId, rng: &mut StdRng) -> candle_core::Result<HashMap<String, Var>> {
    let mut params = HashMap::new();
    for (name, shape) in id.parameters() {
        let fan_in: usize = if name.ends_with(".weight") {
            shape[1..].iter().product()
        } else {
            // bias: fan_in of its layer's weight
            let w = id
                .parameters()
                .into_iter()
                .find(|(n, _)| *n == name.replace(".bias", ".weight"))
                .map(|(_, s)| s[1..].iter().product())
                .unwrap_or(1);
            w
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        params.insert(name, Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)?);
    }
    Ok(params)
}

/// Trains `id` on `train`, reporting test accuracy after each epoch; returns the weights.
pub fn train(
    id: ZooModelId,
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochReport),
) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let params = init_parameters(id, &mut rng)?;
    let tensors: HashMap<String, Tensor> = params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    let net = Net::new(id, &tensors)?;
    let mut vars: Vec<(String, Var)> = params.into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        ParamsAdamW { lr: cfg.learning_rate, weight_decay: 0.0, ..Default::default() },
    )?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0;
        for chunk in order.chunks(cfg.batch_size) {
            let (x, y) = minibatch(train, chunk, id.input_shape())?;
            let loss = loss::cross_entropy(&net.forward(&x)?, &y)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            batches += 1;
        }
        let test_accuracy = accuracy(&net, id, test)?;
        on_epoch(&EpochReport { epoch, train_loss: loss_sum / batches as f64, test_accuracy });
    }
    Ok(vars.into_iter().map(|(k, v)| (k, v.as_tensor().detach())).collect())
}

/// The items `chunk` of `data` as one input batch and its labels.
fn minibatch(data: &Dataset, chunk: &[usize], [c, h, w]: [usize; 3]) -> candle_core::Result<(Tensor, Tensor)> {
    let mut x = Vec::with_capacity(chunk.len() * c * h * w);
    let mut y = Vec::with_capacity(chunk.len());
    for &i in chunk {
        x.extend(data.batch_f32(i, 1, 1));
        y.push(data.labels()[i]);
    }
    Ok((Tensor::from_vec(x, (chunk.len(), c, h, w), &Device::Cpu)?, Tensor::from_vec(y, chunk.len(), &Device::Cpu)?))
}

/// `tensors` with each weighted layer's weight as its scheme in `layers` stores it: with the
/// straight-through gradient (`ste`, for training) or plainly (to score PTQ).
pub fn fake_quantized(
    id: ZooModelId,
    tensors: &[(String, Tensor)],
    layers: &[(String, crate::quant::SchemeId)],
    ste: bool,
) -> candle_core::Result<HashMap<String, Tensor>> {
    use crate::zoo::Layer;
    let linear = |layer: &str| id.layers().iter().any(|l| matches!(l, Layer::Linear { name, .. } if *name == layer));
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let layer = name.trim_end_matches(".weight");
        let scheme = layers.iter().find(|(l, _)| l == layer).map(|(_, s)| *s);
        let t = match (name.ends_with(".weight"), scheme) {
            (true, Some(s)) if ste => crate::quant::fake::straight_through(s, linear(layer), t)?,
            (true, Some(s)) => crate::quant::fake::fake_quantize(s, linear(layer), t)?,
            _ => t.clone(),
        };
        out.insert(name.clone(), t);
    }
    Ok(out)
}

/// Top-1 accuracy of a candle network on a dataset, in batches of 500.
pub fn accuracy(net: &Net, id: ZooModelId, data: &Dataset) -> candle_core::Result<f64> {
    let [c, h, w] = id.input_shape();
    let mut correct = 0usize;
    let mut start = 0;
    while start < data.len() {
        let n = 500.min(data.len() - start);
        let x = Tensor::from_vec(data.batch_f32(start, n, n), (n, c, h, w), &Device::Cpu)?;
        let pred = net.forward(&x)?.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        correct += pred.iter().zip(&data.labels()[start..start + n]).filter(|(p, l)| **p == **l).count();
        start += n;
    }
    Ok(correct as f64 / data.len() as f64)
}

/// What one epoch of quantization-aware training achieved.
#[derive(Debug, Clone)]
pub struct QatEpoch {
    pub epoch: usize,
    pub train_loss: f64,
    /// Top-1 of the fake-quantized network on the validation items (held out of the training
    /// set, never the test set).
    pub validation_accuracy: f64,
}

/// Quantization-aware fine-tuning of `id` from `init` (its trained f32 weights): every forward
/// pass runs each weighted layer with its weight fake-quantized to its scheme in `layers`
/// (`quant::fake`), and the gradient passes straight through the rounding to the f32 weights,
/// which AdamW updates. `validation` is scored after each epoch. Returns the f32 weights, which
/// the scheme then quantizes as it does any weights.
pub fn train_qat(
    id: ZooModelId,
    init: &HashMap<String, Tensor>,
    layers: &[(String, crate::quant::SchemeId)],
    train: &Dataset,
    validation: &Dataset,
    cfg: &TrainConfig,
    mut on_epoch: impl FnMut(&QatEpoch),
) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut vars: Vec<(String, Var)> = Vec::new();
    for (name, _) in id.parameters() {
        let t = init.get(&name).ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {name}")))?;
        vars.push((name, Var::from_tensor(t)?));
    }
    let mut opt = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        ParamsAdamW { lr: cfg.learning_rate, weight_decay: 0.0, ..Default::default() },
    )?;
    // The network as the scheme stores it, with the gradient reaching the f32 weights.
    let fake_net = |vars: &[(String, Var)]| -> candle_core::Result<Net> {
        let tensors: Vec<(String, Tensor)> = vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        Net::new(id, &fake_quantized(id, &tensors, layers, true)?)
    };
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut batches) = (0.0, 0);
        for chunk in order.chunks(cfg.batch_size) {
            let (x, y) = minibatch(train, chunk, id.input_shape())?;
            let loss = loss::cross_entropy(&fake_net(&vars)?.forward(&x)?, &y)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            batches += 1;
        }
        let validation_accuracy = accuracy(&fake_net(&vars)?, id, validation)?;
        on_epoch(&QatEpoch { epoch, train_loss: loss_sum / batches as f64, validation_accuracy });
    }
    Ok(vars.into_iter().map(|(k, v)| (k, v.as_tensor().detach())).collect())
}
