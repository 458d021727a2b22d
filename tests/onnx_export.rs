//! ONNX export round trip: the exported file holds the reference's exact weights,
//! and tract running it agrees with candle running the safetensors.

mod common;

use prost::Message;
use qbench::backend::BackendId;
use qbench::data::load_idx;
use qbench::measure::eval;
use qbench::model::{onnx, Reference};
use qbench::quant::Variant;
use qbench::zoo::ZooModelId;

fn logits(backend: BackendId, variant: &Variant, input: &[f32], batch: usize) -> Vec<f32> {
    let mut p = backend.create(0).prepare(variant, batch).unwrap();
    p.session.set_input(input).unwrap();
    p.session.run().unwrap();
    p.session.output().unwrap()
}

#[test]
fn exported_onnx_has_identical_weights_and_tract_matches_candle_on_100_images() {
    let data = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for zoo in ZooModelId::ALL.iter().copied() {
        let reference = Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let bytes = onnx::export(zoo.name(), zoo, &reference.tensors).unwrap();

        // Decode with prost and compare every initializer bit for bit.
        let model = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = model.graph.unwrap();
        assert_eq!(graph.initializer.len(), zoo.parameters().len());
        for init in &graph.initializer {
            let t = &reference.tensors[&init.name];
            let want: Vec<u8> =
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(init.raw_data, want, "{} {}", zoo.name(), init.name);
            assert_eq!(init.dims, t.dims().iter().map(|&d| d as i64).collect::<Vec<_>>());
        }

        let path = dir.path().join(format!("{}.onnx", zoo.name()));
        std::fs::write(&path, &bytes).unwrap();
        let reference = qbench::model::Reference::load(zoo.name(), zoo, &common::weights(zoo.name())).unwrap();
        let variant = Variant::f32_reference(&reference, path);
        let input = data.batch_f32(0, 100, 100);
        let a = logits(BackendId::CANDLE_CPU, &variant, &input, 100);
        let b = logits(BackendId::TRACT_CPU, &variant, &input, 100);
        assert_eq!(a.len(), 100 * 10);
        let ag = eval::agreement(&a, &b, 10);
        assert!(ag.max_abs_diff < 1e-4, "{}: max |Δ| {}", zoo.name(), ag.max_abs_diff);
        assert_eq!(ag.top1, 1.0, "{}", zoo.name());
        // And the logits are not trivially equal (e.g. all zero): predictions mostly match labels.
        let acc = eval::accuracy(&eval::top1(&a, 10), &data.labels()[..100]);
        assert!(acc > 0.8, "{}: accuracy on 100 images {acc}", zoo.name());
    }
}
