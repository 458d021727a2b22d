//! ONNX export of zoo models, written with tract's public protobuf types.
//!
//! The graph mirrors [`ZooModelId::layers`] one node per layer; weights are the
//! reference's f32 tensors, stored as `raw_data` (little-endian). The batch
//! dimension is symbolic (`N`) so any runtime can bind it.

use std::collections::HashMap;

use candle_core::Tensor;
use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::ModelError;
use crate::zoo::{Layer, ZooModelId};

/// Name of the graph's input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph's output (logits).
pub const OUTPUT_NAME: &str = "logits";
/// ONNX opset the export targets; every op used exists unchanged since opset 13.
pub const OPSET: i64 = 13;

/// Serializes `zoo` with `tensors` as an ONNX model.
pub fn export(model_name: &str, zoo: ZooModelId, tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>, ModelError> {
    let err = |reason: String| ModelError::Export {
        model: model_name.to_string(),
        reason,
    };
    // `<layer>.weight` and `<layer>.bias` become initializers and the node's 2nd and 3rd inputs.
    let add_parameters =
        |layer: &str, inputs: &mut Vec<String>, inits: &mut Vec<TensorProto>| -> Result<(), ModelError> {
            for p in ["weight", "bias"] {
                let key = format!("{layer}.{p}");
                let t = tensors.get(&key).ok_or_else(|| err(format!("missing tensor {key}")))?;
                inits.push(initializer(&key, t).map_err(|e| err(e.to_string()))?);
                inputs.push(key);
            }
            Ok(())
        };
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut current = INPUT_NAME.to_string();
    let layers = zoo.layers();
    for (i, layer) in layers.iter().enumerate() {
        let out = if i + 1 == layers.len() {
            OUTPUT_NAME.to_string()
        } else {
            format!("t{i}")
        };
        let mut inputs = vec![current.clone()];
        let (op, attrs, node_name) = match *layer {
            Layer::Conv2d {
                name, kernel, padding, ..
            } => {
                add_parameters(name, &mut inputs, &mut initializers)?;
                let k = kernel as i64;
                let p = padding as i64;
                (
                    "Conv",
                    vec![
                        ints("kernel_shape", &[k, k]),
                        ints("pads", &[p, p, p, p]),
                        ints("strides", &[1, 1]),
                        ints("dilations", &[1, 1]),
                        int("group", 1),
                    ],
                    name.to_string(),
                )
            }
            Layer::Linear { name, .. } => {
                add_parameters(name, &mut inputs, &mut initializers)?;
                ("Gemm", vec![int("transB", 1)], name.to_string())
            }
            Layer::Relu => ("Relu", vec![], format!("relu{i}")),
            Layer::MaxPool2d { size } => {
                let s = size as i64;
                (
                    "MaxPool",
                    vec![ints("kernel_shape", &[s, s]), ints("strides", &[s, s])],
                    format!("pool{i}"),
                )
            }
            Layer::Flatten => ("Flatten", vec![int("axis", 1)], format!("flatten{i}")),
        };
        nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: node_name,
            op_type: op.to_string(),
            attribute: attrs,
            ..Default::default()
        });
        current = out;
    }
    let [c, h, w] = zoo.input_shape();
    let graph = GraphProto {
        name: model_name.to_string(),
        node: nodes,
        initializer: initializers,
        input: vec![value_info(
            INPUT_NAME,
            &[None, Some(c as i64), Some(h as i64), Some(w as i64)],
        )],
        output: vec![value_info(OUTPUT_NAME, &[None, Some(zoo.num_classes() as i64)])],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "qbench".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("{} ({}), exported by qbench", model_name, zoo.description()),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

fn initializer(name: &str, t: &Tensor) -> candle_core::Result<TensorProto> {
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(TensorProto {
        name: name.to_string(),
        dims: t.dims().iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    })
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => Dim::DimValue(*v),
                None => Dim::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}
