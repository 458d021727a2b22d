//! safetensors weights: a zoo model's (MLP) and a BERT checkpoint's (with a valid config).
#![no_main]
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

const CONFIG: &str = r#"{"vocab_size": 30522, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512, "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}"#;

fuzz_target!(|data: &[u8]| {
    let path = common::file("w.safetensors", data);
    let _ = qbench::model::Reference::load("m", qbench::zoo::ZooModelId::Mlp, &path);
    let config = common::file("config.json", CONFIG.as_bytes());
    let _ = qbench::model::bert::BertCheckpoint::load("b", &path, &config);
});
