//! The reference pass runs on the fastest engine that computes the model in exact f32, timed in
//! the run; the record says which engines were timed and which computed the reference. Checked
//! against the outputs themselves: the f32 case on the chosen engine, at the same batch, gives
//! the reference's outputs bit for bit.

mod common;

use qbench::record::CaseStatus;

#[test]
fn the_reference_goes_to_the_fastest_exact_engine_and_the_record_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // Every exact engine of this build measures its f32 case, so the chosen one is among them.
    let backends = if cfg!(feature = "ort") {
        r#"["candle-cpu", "tract-cpu", "ort-cpu"]"#
    } else {
        r#"["candle-cpu", "tract-cpu"]"#
    };
    let (_, records) = common::run_fm1k(dir.path(), r#"["f32"]"#, backends, "[16]", "cnn");
    assert_eq!(records.len(), if cfg!(feature = "ort") { 3 } else { 2 });
    let choice = records[0].reference_choice.clone().expect("the record says how the reference engine was chosen");
    // Each candidate's time on one batch: "<engine> <ms> ms", or why it was not available.
    let mut timed = Vec::new();
    for part in choice.split(": ").skip(1).collect::<Vec<_>>().join(": ").split("; ") {
        let words: Vec<&str> = part.split(' ').collect();
        if words.len() == 3 && words[2] == "ms" {
            timed.push((words[0].to_string(), words[1].parse::<f64>().unwrap()));
        }
    }
    let names: Vec<&str> = timed.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"candle-cpu") && names.contains(&"tract-cpu"), "{choice}");
    if cfg!(feature = "ort") {
        assert!(choice.contains("ort-cpu"), "ONNX Runtime runs a zoo model's graph too: {choice}");
    }
    let fastest = timed.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0.clone();
    let mut compared = 0;
    for r in &records {
        assert_eq!(r.status, CaseStatus::Ok, "{}: {:?}", r.backend, r.error);
        assert_eq!(r.reference_backend, fastest, "{choice}");
        assert!(choice.starts_with(&format!("{fastest}, the fastest")), "{choice}");
        // 64 items a batch: the most a pass takes (3 KiB items, 1,000 of them).
        assert_eq!(r.reference_batch, Some(64));
        // The engine that computed the reference gives the same logits in its own f32 case.
        if r.backend == fastest {
            assert_eq!(r.ref_max_abs_logit_diff, Some(0.0), "{}: {choice}", r.backend);
            compared += 1;
        }
    }
    assert_eq!(compared, 1, "no case ran on the reference's engine {fastest}");
}
