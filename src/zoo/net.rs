//! The zoo models as candle-nn modules.

use std::collections::HashMap;

use candle_core::{Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module};

use super::{Layer, ZooModelId};

enum Step {
    Conv(Conv2d),
    Linear(Linear),
    Relu,
    MaxPool(usize),
    Flatten,
}

/// A zoo model bound to its weights. Input `[N, 1, 28, 28]` f32, output `[N, 10]` logits.
pub struct Net {
    steps: Vec<Step>,
}

impl Net {
    /// Builds the network from named tensors (shapes are checked by `model::load`;
    /// here a missing tensor is a candle error). Tensors that are candle `Var`s keep
    /// their identity, so the same constructor serves training.
    pub fn new(id: ZooModelId, tensors: &HashMap<String, Tensor>) -> Result<Net> {
        let get = |name: &str, suffix: &str| -> Result<Tensor> {
            let key = format!("{name}.{suffix}");
            tensors
                .get(&key)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))
        };
        let steps = id
            .layers()
            .into_iter()
            .map(|layer| {
                Ok(match layer {
                    Layer::Conv2d { name, padding, .. } => {
                        let cfg = Conv2dConfig {
                            padding,
                            ..Default::default()
                        };
                        Step::Conv(Conv2d::new(get(name, "weight")?, Some(get(name, "bias")?), cfg))
                    }
                    Layer::Linear { name, .. } => {
                        Step::Linear(Linear::new(get(name, "weight")?, Some(get(name, "bias")?)))
                    }
                    Layer::Relu => Step::Relu,
                    Layer::MaxPool2d { size } => Step::MaxPool(size),
                    Layer::Flatten => Step::Flatten,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Net { steps })
    }
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for step in &self.steps {
            x = match step {
                Step::Conv(c) => c.forward(&x)?,
                Step::Linear(l) => l.forward(&x)?,
                Step::Relu => x.relu()?,
                Step::MaxPool(s) => x.max_pool2d(*s)?,
                Step::Flatten => x.flatten_from(1)?,
            };
        }
        Ok(x)
    }
}
