//! Accuracy once per variant and engine: the cases of a (scheme, backend) at every batch size
//! share one evaluation of the whole split, unless the engine's outputs depend on the batch,
//! which each case checks on a slice. Checked against evaluations run here, apart from the run.

mod common;

use qbench::backend::BackendId;
use qbench::record::CaseStatus;

#[test]
fn cases_share_one_evaluation_unless_their_outputs_depend_on_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (run, records) =
        common::run_fm1k(dir.path(), r#"["f32", "int8-dynamic"]"#, r#"["tract-cpu"]"#, "[1, 16]", "mlp");
    let path = dir.path().join("suite.toml");
    assert_eq!(records.len(), 4);

    // Independent evaluations of each variant at each batch, through the library.
    let s = qbench::suite::Suite::load(&path).unwrap();
    let data = &qbench::run::load_datasets(&s).unwrap()[0];
    let model = qbench::model::LoadedModel::load("mlp", &s.models[0].kind, dir.path()).unwrap();
    let tract = BackendId::TRACT_CPU;
    let top1 = |scheme: qbench::quant::SchemeId, batch: usize| {
        let plan = s.plan(0, scheme, &model.layers);
        let variant = qbench::quant::apply_model(&model, &plan, dir.path(), None).unwrap();
        let mut p = tract.create(0).prepare(&variant, batch).unwrap();
        let logits = qbench::measure::eval::run_dataset(p.session.as_mut(), tract, data, batch, 10).unwrap();
        let t = qbench::measure::fidelity::task_metrics(&logits, data.labels(), 10);
        (t.top1, logits)
    };
    for r in &records {
        let what = format!("{} batch {}", r.scheme, r.batch);
        assert_eq!(r.status, CaseStatus::Ok, "{what}: {:?}", r.error);
        // A built-in model's one output: classes, with no engine's name for it.
        assert_eq!((r.output_kind.as_str(), r.output_name.as_str()), ("classes", ""), "{what}");
        let scheme = qbench::quant::SchemeId::from_name(&r.scheme).unwrap();
        let (own_top1, own) = top1(scheme, r.batch);
        // The shared evaluation's batch: 64 items (the most a pass takes; 3 KiB items, 1,000 of them).
        let (shared_top1, shared) = top1(scheme, 64);
        let worst = own.iter().zip(&shared).fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        let range = shared.iter().fold(0f32, |a, v| a.max(v.abs()));
        let note = r.eval_note.as_deref().unwrap_or_default();
        if worst / range > 1e-4 {
            // Dynamic int8's scale is the batch's range: batch 1 computes other numbers, and the
            // case says so and reports its own batch's accuracy.
            assert!(note.starts_with("outputs depend on the batch"), "{what}: {note} (worst {worst})");
            assert_eq!(r.eval_batch, Some(r.batch), "{what}");
            assert_eq!(r.top1_accuracy, Some(own_top1), "{what}");
        } else {
            // The same numbers at either batch: one evaluation at 64 serves both cases.
            assert_eq!(r.eval_batch, Some(64), "{what}: {note}");
            assert_eq!(r.top1_accuracy, Some(shared_top1), "{what}");
            assert!(note.contains("evaluation at batch 64"), "{what}: {note}");
        }
    }
    // f32 on tract is the same at either batch; dynamic int8 is not (its per-tensor scale).
    let note = |scheme: &str| {
        records.iter().find(|r| r.scheme == scheme && r.batch == 1).unwrap().eval_note.clone().unwrap_or_default()
    };
    assert!(note("f32").starts_with("shared:"), "{}", note("f32"));
    assert!(note("int8-dynamic").starts_with("outputs depend on the batch"), "{}", note("int8-dynamic"));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("one evaluation per variant and backend") && md.contains("depend on the batch"), "{md}");
}
