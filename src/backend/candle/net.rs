//! The zoo models as candle-nn modules.

use std::collections::HashMap;

use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{Device, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, Module};

use crate::model::stored::{InputQuant, InputQuants};
use crate::zoo::{Layer, ZooModelId};

enum Step {
    Conv {
        name: &'static str,
        conv: Conv2d,
        input: Option<InputQuant>,
    },
    Linear {
        name: &'static str,
        linear: Linear,
        input: Option<InputQuant>,
    },
    /// GGML weights through candle's quantized matmul; the input is zero-padded by `pad`
    /// columns to the padded width the weights were quantized at.
    QLinear {
        name: &'static str,
        matmul: QMatMul,
        bias: Tensor,
        pad: usize,
        kernel: String,
    },
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
            tensors.get(&key).cloned().ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))
        };
        let steps = id
            .layers()
            .into_iter()
            .map(|layer| {
                Ok(match layer {
                    Layer::Conv2d { name, padding, .. } => {
                        let cfg = Conv2dConfig { padding, ..Default::default() };
                        let conv = Conv2d::new(get(name, "weight")?, Some(get(name, "bias")?), cfg);
                        Step::Conv { name, conv, input: None }
                    }
                    Layer::Linear { name, .. } => {
                        let linear = Linear::new(get(name, "weight")?, Some(get(name, "bias")?));
                        Step::Linear { name, linear, input: None }
                    }
                    Layer::Relu => Step::Relu,
                    Layer::MaxPool2d { size } => Step::MaxPool(size),
                    Layer::Flatten => Step::Flatten,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Net { steps })
    }

    /// Quantize-dequantizes the inputs of the listed layers as the integer graph would
    /// (u8, per tensor): how candle, which has no int8 kernels, emulates W8A8.
    pub fn with_input_quant(mut self, inputs: &InputQuants) -> Net {
        for step in &mut self.steps {
            if let Step::Conv { name, input, .. } | Step::Linear { name, input, .. } = step {
                *input = inputs.get(*name).copied();
            }
        }
        self
    }

    /// Runs the network and returns the input of every weighted layer, in order.
    pub fn layer_inputs(&self, x: &Tensor) -> Result<Vec<(&'static str, Tensor)>> {
        let mut out = Vec::new();
        self.run(x, &mut |name, input, _| out.push((name, input.clone())))?;
        Ok(out)
    }

    /// Runs the network and returns the output of every weighted layer (before activation).
    pub fn layer_outputs(&self, x: &Tensor) -> Result<Vec<(&'static str, Tensor)>> {
        let mut out = Vec::new();
        self.run(x, &mut |name, _, output| out.push((name, output.clone())))?;
        Ok(out)
    }

    /// Runs the network once, timing each step (a weighted layer by its name; the steps
    /// between by what they are), each ended by `sync` so its time is its own on a GPU.
    pub fn profile(&self, x: &Tensor, sync: &dyn Fn() -> Result<()>) -> Result<(Tensor, Vec<crate::backend::OpTime>)> {
        let mut x = x.clone();
        let mut times = Vec::new();
        // A step between weighted layers is named after the layer it follows (`relu@conv1`).
        let mut last = "input";
        for step in &self.steps {
            let started = std::time::Instant::now();
            let (name, op): (String, &'static str) = match step {
                Step::Conv { name, .. } => (name.to_string(), "Conv2d"),
                Step::Linear { name, .. } => (name.to_string(), "Linear"),
                Step::QLinear { name, .. } => (name.to_string(), "QMatMul"),
                Step::Relu => (format!("relu@{last}"), "Relu"),
                Step::MaxPool(_) => (format!("maxpool@{last}"), "MaxPool2d"),
                Step::Flatten => (format!("flatten@{last}"), "Flatten"),
            };
            if let Step::Conv { name, .. } | Step::Linear { name, .. } | Step::QLinear { name, .. } = step {
                last = name;
            }
            x = self.step(step, &x, &mut |_, _, _| {})?;
            sync()?;
            times.push(crate::backend::OpTime { name, op: op.to_string(), ns: started.elapsed().as_nanos() as u64 });
        }
        Ok((x, times))
    }

    fn run(&self, x: &Tensor, seen: &mut dyn FnMut(&'static str, &Tensor, &Tensor)) -> Result<Tensor> {
        let mut x = x.clone();
        for step in &self.steps {
            x = self.step(step, &x, seen)?;
        }
        Ok(x)
    }

    fn step(&self, step: &Step, x: &Tensor, seen: &mut dyn FnMut(&'static str, &Tensor, &Tensor)) -> Result<Tensor> {
        let x = x.clone();
        Ok(match step {
            Step::Conv { name, conv, input } => {
                let y = conv.forward(&prepare_input(&x, conv.weight().dtype(), *input)?)?;
                seen(name, &x, &y);
                quantize_output(y, *input)?
            }
            Step::Linear { name, linear, input } => {
                let y = linear.forward(&prepare_input(&x, linear.weight().dtype(), *input)?)?;
                seen(name, &x, &y);
                quantize_output(y, *input)?
            }
            Step::QLinear { name, matmul, bias, pad, .. } => {
                let xp = if *pad > 0 { x.pad_with_zeros(1, 0, *pad)? } else { x.clone() };
                let y = matmul.forward(&xp)?.broadcast_add(bias)?;
                seen(name, &x, &y);
                y
            }
            Step::Relu => x.relu()?,
            Step::MaxPool(s) => x.max_pool2d(*s)?,
            Step::Flatten => x.flatten_from(1)?,
        })
    }
}

/// The layer's input in its weight's dtype (layers of one model may differ under
/// mixed precision), quantize-dequantized when the layer's input is quantized.
fn prepare_input(x: &Tensor, dtype: candle_core::DType, input: Option<InputQuant>) -> Result<Tensor> {
    let x = match input {
        None => x.clone(),
        Some(iq) => fake_quant_u8(&x.to_dtype(candle_core::DType::F32)?, iq)?,
    };
    if x.dtype() == dtype {
        Ok(x)
    } else {
        x.to_dtype(dtype)
    }
}

/// A static layer's output quantize-dequantized with its calibrated parameters. Where a Relu
/// follows, those were calibrated after it (zero point 0), so this clamps where the Relu does
/// and the Relu then changes nothing, as in the ONNX forms that quantize after the Relu.
fn quantize_output(y: Tensor, input: Option<InputQuant>) -> Result<Tensor> {
    match input {
        Some(InputQuant::Static { output, .. }) => {
            let dtype = y.dtype();
            let q = fake_quant_u8(&y.to_dtype(candle_core::DType::F32)?, InputQuant::Static { input: output, output })?;
            if q.dtype() == dtype {
                Ok(q)
            } else {
                q.to_dtype(dtype)
            }
        }
        _ => Ok(y),
    }
}

/// `QuantizeLinear` then `DequantizeLinear` to u8, round half to even, saturating. Dynamic
/// takes ONNX `DynamicQuantizeLinear`'s parameters from `x` itself: scale =
/// (max(x, 0) − min(x, 0)) / 255, zero point = round(−min / scale).
fn fake_quant_u8(x: &Tensor, input: InputQuant) -> Result<Tensor> {
    use crate::quant::int::{dequantize_linear, quantize_linear, QParams};
    let v = x.flatten_all()?.to_vec1::<f32>()?;
    let p = match input {
        InputQuant::Static { input, .. } => input,
        InputQuant::Dynamic => {
            let lo = v.iter().copied().fold(0f32, f32::min);
            let hi = v.iter().copied().fold(0f32, f32::max);
            let scale = (hi - lo) / 255.0;
            if scale == 0.0 {
                return Ok(x.clone());
            }
            QParams { scale, zero_point: (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32 }
        }
    };
    let dq: Vec<f32> = v.iter().map(|&a| dequantize_linear(quantize_linear(a, p, 0, 255), p)).collect();
    Tensor::from_vec(dq, x.shape(), x.device())
}

impl Net {
    /// Builds the network from a GGUF file written by `quant::ggml::apply`: linear weights
    /// become `QMatMul`s (GGML kernels), everything else f32.
    /// The tensors are read onto `device` (a GPU's `QMatMul` keeps the blocks on the GPU).
    pub fn from_gguf(id: ZooModelId, path: &std::path::Path, device: &Device) -> Result<Net> {
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file)?;
        let mut read = |key: String| content.tensor(&mut file, &key, device);
        let mut steps = Vec::new();
        for layer in id.layers() {
            steps.push(match layer {
                Layer::Conv2d { name, padding, .. } => {
                    let cfg = Conv2dConfig { padding, ..Default::default() };
                    let w = read(format!("{name}.weight"))?.dequantize(device)?;
                    let b = read(format!("{name}.bias"))?.dequantize(device)?;
                    Step::Conv { name, conv: Conv2d::new(w, Some(b), cfg), input: None }
                }
                Layer::Linear { name, in_features, .. } => {
                    let q = read(format!("{name}.weight"))?;
                    let padded = q.shape().dims2()?.1;
                    if padded < in_features {
                        candle_core::bail!(
                            "{name}.weight is {padded} wide, narrower than the layer's {in_features} inputs"
                        );
                    }
                    let bias = read(format!("{name}.bias"))?.dequantize(device)?;
                    let matmul = QMatMul::from_qtensor(q)?;
                    let kernel = match &matmul {
                        QMatMul::QTensor(t) => format!("QMatMul {:?}", t.dtype()),
                        QMatMul::Tensor(_) => "QMatMul dequantized to f32".to_string(),
                        QMatMul::TensorF16(_) => "QMatMul dequantized to f16".to_string(),
                    };
                    Step::QLinear { name, matmul, bias, pad: padded - in_features, kernel: format!("{name}: {kernel}") }
                }
                Layer::Relu => Step::Relu,
                Layer::MaxPool2d { size } => Step::MaxPool(size),
                Layer::Flatten => Step::Flatten,
            });
        }
        Ok(Net { steps })
    }

    /// The dtype the network computes in (that of its first weighted layer).
    pub fn dtype(&self) -> candle_core::DType {
        self.steps
            .iter()
            .find_map(|s| match s {
                Step::Conv { conv, .. } => Some(conv.weight().dtype()),
                Step::Linear { linear, .. } => Some(linear.weight().dtype()),
                _ => None,
            })
            .unwrap_or(candle_core::DType::F32)
    }

    /// Bytes of the weights as held in memory (GGML blocks at their packed size).
    pub fn weights_bytes(&self) -> u64 {
        let t = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        self.steps
            .iter()
            .map(|s| match s {
                Step::Conv { conv, .. } => t(conv.weight()) + conv.bias().map_or(0, t),
                Step::Linear { linear, .. } => t(linear.weight()) + linear.bias().map_or(0, t),
                Step::QLinear { matmul, bias, .. } => {
                    t(bias)
                        + match matmul {
                            QMatMul::QTensor(q) => q.storage_size_in_bytes() as u64,
                            QMatMul::Tensor(w) | QMatMul::TensorF16(w) => t(w),
                        }
                }
                _ => 0,
            })
            .sum()
    }

    /// Which kernel class each weighted layer runs, for the record's evidence.
    pub fn kernels(&self) -> String {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Conv { name, conv, input } => {
                    Some(format!("{name}: Conv2d {:?}{}", conv.weight().dtype(), describe_input(*input)))
                }
                Step::Linear { name, linear, input } => {
                    Some(format!("{name}: Linear {:?}{}", linear.weight().dtype(), describe_input(*input)))
                }
                Step::QLinear { kernel, .. } => Some(kernel.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A weighted layer's module as candle built it: what the evidence reads.
pub enum LayerModule<'a> {
    Conv { weight: &'a Tensor, input: Option<InputQuant> },
    Linear { weight: &'a Tensor, input: Option<InputQuant> },
    QLinear { matmul: &'a QMatMul },
}

impl Net {
    /// Every weighted layer's module, in order.
    pub fn layer_modules(&self) -> Vec<(&'static str, LayerModule<'_>)> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Conv { name, conv, input } => {
                    Some((*name, LayerModule::Conv { weight: conv.weight(), input: *input }))
                }
                Step::Linear { name, linear, input } => {
                    Some((*name, LayerModule::Linear { weight: linear.weight(), input: *input }))
                }
                Step::QLinear { name, matmul, .. } => Some((*name, LayerModule::QLinear { matmul })),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn describe_input(input: Option<InputQuant>) -> &'static str {
    match input {
        None => "",
        Some(InputQuant::Dynamic) => " on u8-fake-quantized input (dynamic)",
        Some(InputQuant::Static { .. }) => " on u8-fake-quantized input and output (static)",
    }
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut |_, _, _| {})
    }
}
