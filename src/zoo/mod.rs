//! Built-in reference models, written once as a list of layers.
//!
//! The same layer list drives candle's modules (`backend::candle::Net`), the ONNX export
//! (`model::onnx`) and the weight-shape check at load, so the two engines run the same network
//! with the same weights, and cannot drift apart. This module only describes the
//! architectures; the engines build them.

use serde::{Deserialize, Serialize};

/// A built-in architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ZooModelId {
    /// 784-256-128-10 multilayer perceptron.
    Mlp,
    /// Two conv blocks (16 and 32 channels, 3×3, ReLU, 2×2 max-pool), then 1568-128-10.
    Cnn,
}

/// One layer; parameters are named `<name>.weight` and `<name>.bias`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// Square kernel, stride 1, zero padding on every side.
    Conv2d {
        name: &'static str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
    },
    Relu,
    /// Square window with stride equal to its size.
    MaxPool2d {
        size: usize,
    },
    /// NCHW → N×(CHW), row-major (as ONNX `Flatten` with axis 1).
    Flatten,
    /// `y = x Wᵀ + b`, W stored `[out, in]`.
    Linear {
        name: &'static str,
        in_features: usize,
        out_features: usize,
    },
}

impl ZooModelId {
    pub const ALL: &'static [ZooModelId] = &[ZooModelId::Mlp, ZooModelId::Cnn];

    pub fn name(self) -> &'static str {
        match self {
            ZooModelId::Mlp => "mlp",
            ZooModelId::Cnn => "cnn",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.name() == s)
    }

    pub fn names() -> &'static [&'static str] {
        &["mlp", "cnn"]
    }

    pub fn description(self) -> &'static str {
        match self {
            ZooModelId::Mlp => "MLP 784-256-128-10, ReLU; input 1×28×28 in [0,1]; Fashion-MNIST classifier",
            ZooModelId::Cnn => "CNN conv3×3(16)-pool-conv3×3(32)-pool-fc128-fc10, ReLU; input 1×28×28 in [0,1]; Fashion-MNIST classifier",
        }
    }

    /// Input shape of one item, channels first.
    pub fn input_shape(self) -> [usize; 3] {
        [1, 28, 28]
    }

    pub fn num_classes(self) -> usize {
        10
    }

    pub fn layers(self) -> Vec<Layer> {
        use Layer::*;
        match self {
            ZooModelId::Mlp => vec![
                Flatten,
                Linear { name: "fc1", in_features: 784, out_features: 256 },
                Relu,
                Linear { name: "fc2", in_features: 256, out_features: 128 },
                Relu,
                Linear { name: "fc3", in_features: 128, out_features: 10 },
            ],
            ZooModelId::Cnn => vec![
                Conv2d { name: "conv1", in_channels: 1, out_channels: 16, kernel: 3, padding: 1 },
                Relu,
                MaxPool2d { size: 2 },
                Conv2d { name: "conv2", in_channels: 16, out_channels: 32, kernel: 3, padding: 1 },
                Relu,
                MaxPool2d { size: 2 },
                Flatten,
                Linear { name: "fc1", in_features: 32 * 7 * 7, out_features: 128 },
                Relu,
                Linear { name: "fc2", in_features: 128, out_features: 10 },
            ],
        }
    }

    /// The layers with weights, in order: their names and the width of one weight row
    /// (the reduction length: `in_features`, or `in_channels · kernel²`).
    pub fn weighted_layers(self) -> Vec<(&'static str, usize)> {
        self.layers()
            .into_iter()
            .filter_map(|l| match l {
                Layer::Conv2d { name, in_channels, kernel, .. } => Some((name, in_channels * kernel * kernel)),
                Layer::Linear { name, in_features, .. } => Some((name, in_features)),
                _ => None,
            })
            .collect()
    }

    /// Every parameter tensor with its shape, in layer order.
    pub fn parameters(self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for layer in self.layers() {
            match layer {
                Layer::Conv2d { name, in_channels, out_channels, kernel, .. } => {
                    out.push((format!("{name}.weight"), vec![out_channels, in_channels, kernel, kernel]));
                    out.push((format!("{name}.bias"), vec![out_channels]));
                }
                Layer::Linear { name, in_features, out_features } => {
                    out.push((format!("{name}.weight"), vec![out_features, in_features]));
                    out.push((format!("{name}.bias"), vec![out_features]));
                }
                Layer::Relu | Layer::MaxPool2d { .. } | Layer::Flatten => {}
            }
        }
        out
    }

    /// Number of weights (all parameters).
    pub fn parameter_count(self) -> usize {
        self.parameters().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_architecture_by_hand() {
        // 784*256+256 + 256*128+128 + 128*10+10
        assert_eq!(ZooModelId::Mlp.parameter_count(), 235_146);
        // conv1 16*1*9+16, conv2 32*16*9+32, fc1 1568*128+128, fc2 128*10+10
        assert_eq!(ZooModelId::Cnn.parameter_count(), 160 + 4640 + 200_832 + 1290);
    }
}
