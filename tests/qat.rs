//! Quantization-aware training: the shipped QAT weights beat post-training quantization by the
//! same scheme on the test set (measured here, on the real engine), and `qbench train-qat`
//! trains, writes how it trained into the file, and that reaches the records.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use qbench::record::{read_records, Record};

fn qbench(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qbench")).args(args).current_dir(dir).output().unwrap()
}

#[test]
fn shipped_qat_weights_recover_at_least_half_of_what_ptq_loses_with_a_paired_interval_above_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = common::repo().join("suites/qat.toml");
    // tract alone (the schemes' accuracy is the same on candle: the same weights), briefly timed.
    let o = qbench(
        tmp.path(),
        &[
            "run",
            suite.to_str().unwrap(),
            "--filter",
            "backend=tract-cpu",
            "--set",
            "measure.max_time_ms=20",
            "--set",
            "measure.min_samples=3",
            "--out",
            "out",
            "-q",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(tmp.path().join("out/qat")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    let find = |model: &str, scheme: &str| -> &Record {
        records.iter().find(|r| r.model == model && r.scheme == scheme).unwrap_or_else(|| panic!("{model} {scheme}"))
    };
    let f32 = find("mlp", "f32");
    for scheme in ["q4_0", "int4-g32-sym", "q2k"] {
        let ptq = find("mlp", scheme);
        let qat = find(&format!("mlp-qat-{scheme}"), scheme);
        // Every item of the same 10,000, paired.
        let (a, b, c) = (f32.top1_correct().unwrap(), ptq.top1_correct().unwrap(), qat.top1_correct().unwrap());
        let lost = qbench::measure::fidelity::matched_difference(&a, &b).unwrap();
        let recovered = qbench::measure::fidelity::matched_difference(&c, &b).unwrap();
        assert!(lost.0 > 0.0, "{scheme}: PTQ lost nothing ({lost:?}); the comparison would say nothing");
        assert!(recovered.0 >= lost.0 / 2.0, "{scheme}: lost {lost:?}, recovered {recovered:?}");
        assert!(recovered.1 > 0.0, "{scheme}: the recovery's interval reaches zero: {recovered:?}");
        // The file says how it was trained, and the record carries it.
        let how = qat.model_training.as_deref().unwrap();
        assert!(how.starts_with(&format!("QAT for {scheme} from mlp.safetensors")), "{how}");
        assert!(how.contains("3 epoch(s)") && how.contains("seed 42"), "{how}");
        assert!(ptq.model_training.is_none());
    }
}

/// An IDX pair of `n` 28×28 images and labels, gzipped, named as Fashion-MNIST's training set.
fn write_idx(dir: &Path, n: usize) {
    let gz = |name: &str, bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        std::fs::write(dir.join(name), e.finish().unwrap()).unwrap();
    };
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let label = (i % 10) as u8;
        // Each class a bright band at its own rows: learnable, and nothing like the test set.
        images.extend((0..784).map(|p| if p / 28 / 3 == label as usize { 200 } else { (p * 7 + i) as u8 % 40 }));
        labels.push(label);
    }
    gz("train-images-idx3-ubyte.gz", &images);
    gz("train-labels-idx1-ubyte.gz", &labels);
}

#[test]
fn train_qat_writes_weights_that_say_how_they_were_trained_and_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("train");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 400);
    let suite = common::write_suite(dir, "[\"tract-cpu\"]", "[50]", &["mlp"], "");
    let s = suite.to_str().unwrap();
    let o = qbench(
        dir,
        &[
            "train-qat",
            s,
            "--model",
            "mlp",
            "--scheme",
            "q4_0",
            "--data",
            "train",
            "--epochs",
            "1",
            "--validation-items",
            "100",
            "--out",
            "w/mlp.qat.safetensors",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("300 training items, 100 validation items"), "{err}");
    // The weights load as the zoo model, differ from the start, and carry their training.
    let r =
        qbench::model::Reference::load("q", qbench::zoo::ZooModelId::Mlp, &dir.join("w/mlp.qat.safetensors")).unwrap();
    let start = qbench::model::Reference::load("m", qbench::zoo::ZooModelId::Mlp, &common::weights("mlp")).unwrap();
    let diff = (r.tensors["fc1.weight"].clone() - start.tensors["fc1.weight"].clone())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 0.0, "one epoch changed nothing");
    let how = r.training.unwrap();
    assert!(how.starts_with("QAT for q4_0 from mlp.safetensors") && how.contains("1 epoch(s)"), "{how}");
    for (args, needle) in [
        (&["--scheme", "q4_0", "--data", "nowhere"][..], "train-images-idx3-ubyte.gz"),
        (&["--scheme", "int4-g32-sym", "--data", "train"][..], "group size 32 does not divide"),
        (&["--scheme", "q4_0", "--data", "train", "--epochs", "0"][..], "must be positive"),
        (&["--scheme", "int8-static-minmax", "--data", "train"][..], "also quantizes activations"),
        (&["--scheme", "f32", "--data", "train"][..], "f32 has nothing to quantize"),
    ] {
        let mut all = vec!["train-qat", s, "--model", "mlp", "--out", "w/x.safetensors"];
        all.extend_from_slice(args);
        let o = qbench(dir, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
