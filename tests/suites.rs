//! Every suite shipped in suites/ parses, validates, and its datasets fit its models.

mod common;

use qbench::run::load_datasets;
use qbench::suite::{expand, suite_files, Suite};

#[test]
fn every_shipped_suite_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let files = suite_files(&dir).unwrap();
    assert!(!files.is_empty(), "no suites found in {}", dir.display());
    // Suites that name a backend behind a cargo feature this build leaves out.
    let mut need_cuda = Vec::new();
    let mut need_ort = Vec::new();
    for f in files {
        let suite = match Suite::load(&f) {
            Ok(s) => s,
            // A build without CUDA (or ONNX Runtime) refuses the suite naming its backends,
            // saying how to build one that runs it. Everything else in it must still hold: it is
            // checked without those backends.
            Err(e) if !cfg!(feature = "cuda") && e.to_string().contains("--features cuda") => {
                need_cuda.push(f.file_name().unwrap().to_string_lossy().into_owned());
                without(&f, &["\"candle-cuda\", ", "\"tract-cuda\", "])
            }
            Err(e) if !cfg!(feature = "ort") && e.to_string().contains("--features ort") => {
                need_ort.push(f.file_name().unwrap().to_string_lossy().into_owned());
                without(&f, &[", \"ort-cpu\""])
            }
            Err(e) => panic!("{e}"),
        };
        load_datasets(&suite).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let cases = expand(&suite);
        // Each model's own matrix, less what the exclude rules left out (no shipped suite has
        // an include), and no case twice.
        let matrix: usize = suite.models.iter().map(|m| m.schemes.len() * m.backends.len() * m.batch_sizes.len()).sum();
        assert!(suite.include.is_empty());
        assert_eq!(cases.len() + qbench::suite::excluded(&suite).len(), matrix, "{}", f.display());
        for (i, c) in cases.iter().enumerate() {
            assert!(!cases[..i].contains(c), "{}: {c:?} twice", f.display());
        }
        // Model-major: each model's cases are contiguous, so it is loaded once.
        let mut seen = Vec::new();
        for c in &cases {
            if seen.last() != Some(&c.model) {
                assert!(!seen.contains(&c.model), "{}: model {} appears in two runs of cases", f.display(), c.model);
                seen.push(c.model);
            }
        }
    }
    let expected: &[&str] = if cfg!(feature = "cuda") { &[] } else { &["cuda-lm.toml", "cuda-smoke.toml"] };
    assert_eq!(need_cuda, expected);
    let expected: &[&str] = if cfg!(feature = "ort") { &[] } else { &["engines.toml"] };
    assert_eq!(need_ort, expected);
}

/// The suite in `file` with the `backends` entries removed, which must be there.
fn without(file: &std::path::Path, backends: &[&str]) -> Suite {
    let text = std::fs::read_to_string(file).unwrap();
    let mut rest = text.clone();
    for b in backends {
        rest = rest.replace(b, "");
    }
    assert_ne!(rest, text, "{}: the backends {backends:?} are not listed so", file.display());
    Suite::from_str(file, &rest).unwrap_or_else(|e| panic!("{} without {backends:?}: {e}", file.display()))
}

/// A suite of the shipped zoo models with `body` after the models (per-model keys go in
/// `mlp_keys`, inside mlp's [[models]] entry).
fn matrix_suite(dir: &std::path::Path, mlp_keys: &str, body: &str) -> std::path::PathBuf {
    let text = format!(
        "name = \"t\"\nschemes = [\"f32\", \"int8-pc-sym\"]\nbackends = [\"tract-cpu\", \"candle-cpu\"]\nbatch_sizes = [1, 32]\n\n[[datasets]]\nname = \"fm\"\nformat = \"idx\"\nimages = {:?}\nlabels = {:?}\n\n[[models]]\nname = \"mlp\"\nzoo = \"mlp\"\nweights = {:?}\n{mlp_keys}\n[[models]]\nname = \"cnn\"\nzoo = \"cnn\"\nweights = {:?}\n{body}",
        common::fashion_images(),
        common::fashion_labels(),
        common::weights("mlp"),
        common::weights("cnn"),
    );
    let path = dir.join("suite.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The cases as `model scheme backend batch` strings, in order.
fn names(suite: &Suite) -> Vec<String> {
    expand(suite)
        .iter()
        .map(|c| format!("{} {} {} {}", suite.models[c.model].name, c.scheme.name(), c.backend.name(), c.batch))
        .collect()
}

#[test]
fn per_model_lists_and_matrix_rules_generate_exactly_the_cases_they_name() {
    let dir = tempfile::tempdir().unwrap();
    // mlp: its own lists (q4k only on candle, at batch 1); cnn: the suite's, less candle at
    // batch 32, plus f16 on tract at batch 8.
    let path = matrix_suite(
        dir.path(),
        "schemes = [\"f32\", \"q4k\"]\nbackends = [\"candle-cpu\"]\nbatch_sizes = [1]\n",
        "\n[[exclude]]\nmodels = [\"cnn\"]\nbackends = [\"candle-*\"]\nbatch_sizes = [32]\nreason = \"slow\"\n\n[[include]]\nmodels = [\"cnn\"]\nschemes = [\"f16\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [8]\n\n[[gates]]\nschemes = [\"q4k\"]\nmax_size_bytes = 1000000\n",
    );
    let suite = Suite::load(&path).unwrap();
    // Written out by hand: model-major, then the suite's scheme, backend and batch orders.
    let want = [
        "mlp f32 candle-cpu 1",
        "mlp q4k candle-cpu 1",
        "cnn f32 tract-cpu 1",
        "cnn f32 tract-cpu 32",
        "cnn f32 candle-cpu 1",
        "cnn int8-pc-sym tract-cpu 1",
        "cnn int8-pc-sym tract-cpu 32",
        "cnn int8-pc-sym candle-cpu 1",
        "cnn f16 tract-cpu 8",
    ];
    assert_eq!(names(&suite), want);
    let excluded: Vec<String> = qbench::suite::excluded(&suite)
        .iter()
        .map(|(c, rule)| {
            format!("{} {} {} {} rule {rule}", suite.models[c.model].name, c.scheme.name(), c.backend.name(), c.batch)
        })
        .collect();
    assert_eq!(excluded, ["cnn f32 candle-cpu 32 rule 0", "cnn int8-pc-sym candle-cpu 32 rule 0"]);
    assert_eq!(suite.schemes_of(0).iter().map(|s| s.name()).collect::<Vec<_>>(), ["f32", "q4k"]);
    assert_eq!(suite.batch_sizes_of(1), [1, 32, 8]);
    // The gate's scheme exists only in mlp's own list: accepted.
    assert_eq!(suite.gates.len(), 1);
}

#[test]
fn matrix_rules_that_do_nothing_or_cannot_work_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (mlp_keys, body, needles) in [
        ("", "\n[[exclude]]\nreason = \"x\"\n", &["suite.toml:", "would leave out every case"][..]),
        (
            "",
            "\n[[exclude]]\nmodels = [\"cnnn\"]\n",
            &["exclude models pattern \"cnnn\" matches none of the suite's models (mlp, cnn)"],
        ),
        (
            "",
            "\n[[exclude]]\nbatch_sizes = [8]\n",
            &["exclude batch size 8 is none of the suite's batch sizes (1, 32)"],
        ),
        (
            "backends = [\"tract-cpu\"]\n",
            "\n[[exclude]]\nmodels = [\"mlp\"]\nbackends = [\"candle-cpu\"]\n",
            &["this [[exclude]] matches no case"],
        ),
        ("", "\n[[include]]\nmodels = [\"mlp\"]\nschemes = [\"f32\"]\n", &["this [[include]] adds no case"]),
        ("", "\n[[include]]\nmodels = [\"mlp\"]\n", &["give it schemes, backends or batch_sizes"]),
        ("", "\n[[exclude]]\nmodels = [\"cnn\"]\nschemes = [\"*\"]\n", &["model \"cnn\" has no case left"]),
        (
            "",
            "\n[[exclude]]\nmodels = [\"cnn\"]\nschemes = [\"int8*\"]\n\n[[include]]\nmodels = [\"cnn\"]\nschemes = [\"int8-pc-sym\"]\n",
            &["this [[exclude]] leaves out nothing"],
        ),
        ("schemes = [\"int8-pc-sim\"]\n", "", &["unknown scheme \"int8-pc-sim\"", "int8-pc-sym"]),
        ("batch_sizes = []\n", "", &["batch_sizes is empty"]),
        (
            "",
            "\n[[exclude]]\nmodels = [\"cnn\"]\ncolour = \"red\"\n",
            &["exclude[0].colour: unknown key \"colour\"; allowed here: models, schemes"],
        ),
    ] {
        let path = matrix_suite(dir.path(), mlp_keys, body);
        let e = Suite::load(&path).expect_err(body).to_string();
        for n in needles {
            assert!(e.contains(n), "{mlp_keys}{body}: expected {n:?} in {e}");
        }
    }
}

#[test]
fn a_measure_list_sweeps_every_combination_and_bad_lists_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let with = |measure: &str| {
        let path = matrix_suite(dir.path(), "", "");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("batch_sizes = [1, 32]\n", &format!("batch_sizes = [1, 32]\n\n[measure]\n{measure}\n"));
        std::fs::write(&path, text).unwrap();
        Suite::load(&path)
    };
    let suite = with("threads = [1, 2]\nmin_samples = [5, 50]\nmax_samples = 100").unwrap();
    // 2 threads × 2 min_samples, threads varying slowest; each case at every point.
    let labels: Vec<&str> = suite.points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        ["threads=1,min_samples=5", "threads=1,min_samples=50", "threads=2,min_samples=5", "threads=2,min_samples=50"]
    );
    assert_eq!(suite.points[3].threads, 2);
    assert_eq!(suite.points[1].sampler.min_samples, 50);
    assert!(suite.points.iter().all(|p| p.sampler.max_samples == 100));
    let cases = expand(&suite);
    assert_eq!(cases.len(), 2 * 2 * 2 * 2 * 4);
    assert_eq!(cases.iter().take(4).map(|c| c.point).collect::<Vec<_>>(), [0, 1, 2, 3], "the point varies fastest");
    // One value: one point, no label.
    let one = with("threads = 2").unwrap();
    assert_eq!((one.points.len(), one.points[0].threads, one.points[0].label.as_str()), (1, 2, ""));
    for (measure, needle) in [
        ("threads = []", "measure.threads is an empty list"),
        ("threads = [1, 1]", "measure.threads lists 1 twice"),
        ("threads = [1, 0]", "measure.threads = 0 is out of range; use 1 to 1024"),
        ("threads = \"two\"", "or a list of them to sweep"),
        ("threads = [1, \"2\"]", "in the list"),
        ("min_samples = [5, 500]\nmax_samples = 100", "measure.min_samples (500) is larger than measure.max_samples (100)"),
        ("paired = [true, false]\nthreads = [1, 2, 3, 4]\nmin_samples = [1, 2, 3, 4]\nmax_samples = [10, 20, 30, 40]\nwarmup_ms = [1, 2, 3, 4, 5]", "keep it to 256 or fewer"),
    ] {
        let e = with(measure).expect_err(measure).to_string();
        assert!(e.contains(needle) && e.contains("suite.toml:"), "{measure}: expected {needle:?} in {e}");
    }
}

#[test]
fn scenarios_resolve_per_model_and_settings_that_cannot_work_are_refused() {
    use qbench::suite::scenario::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let with = |mlp_keys: &str, body: &str| Suite::load(&matrix_suite(dir.path(), mlp_keys, body));
    let server = "\n[scenario]\nkind = \"server\"\ntarget_qps = 100\nlatency_bound_ms = 20\nmin_queries = 64\nmin_duration_ms = 300\nseed = 5\n";
    // The suite's kind for cnn; mlp's own kind, with the suite's parameters.
    let suite = with("scenario = \"single-stream\"\n", server).unwrap();
    assert_eq!(suite.models[0].scenario, Scenario::SingleStream);
    let Scenario::Server(s) = &suite.models[1].scenario else { panic!("{:?}", suite.models[1].scenario) };
    assert_eq!((s.target_qps, s.bound.as_millis(), s.percentile, s.span.min_queries, s.seed), (100.0, 20, 99.0, 64, 5));
    assert_eq!(s.span.min_duration.as_millis(), 300);
    let offline = with("", "\n[scenario]\nkind = \"offline\"\nstreams = 2\n").unwrap();
    assert_eq!(
        offline.models[0].scenario,
        Scenario::Offline { streams: 2, duration: std::time::Duration::from_millis(1000) }
    );
    for (mlp_keys, body, needle) in [
        ("", "\n[scenario]\nkind = \"servre\"\n", "unknown scenario \"servre\" — did you mean \"server\"?"),
        (
            "",
            "\n[scenario]\nkind = \"server\"\nlatency_bound_ms = 5\n",
            "the server scenario needs scenario.target_qps",
        ),
        (
            "",
            "\n[scenario]\nkind = \"server\"\ntarget_qps = 0\nlatency_bound_ms = 5\n",
            "scenario.target_qps = 0 must be a positive number",
        ),
        (
            "",
            "\n[scenario]\nkind = \"offline\"\ntarget_qps = 10\n",
            "scenario.target_qps applies to the server scenario, which no model runs here",
        ),
        ("", "\n[scenario]\nkind = \"offline\"\nstreams = 0\n", "scenario.streams = 0 is out of range"),
        (
            "",
            "\n[scenario]\nkind = \"server\"\ntarget_qps = 10\nlatency_bound_ms = 5\npercentile = 101\n",
            "scenario.percentile = 101 is out of range",
        ),
        ("scenario = \"offline\"\n", "", "scenario \"offline\" needs a [scenario] table"),
        (
            "",
            "\n[[gates]]\nmax_p99_ms_at_rate = 5\n",
            "max_p99_ms_at_rate gates the server scenario's latency, and no model runs it",
        ),
        (
            "",
            "\n[scenario]\nkind = \"server\"\ntarget_qps = 1e-300\nlatency_bound_ms = 5\n",
            "is out of range; use 0.001 to 1000000",
        ),
        (
            "",
            "\n[scenario]\nkind = \"server\"\ntarget_qps = 1e300\nlatency_bound_ms = 5\n",
            "is out of range; use 0.001 to 1000000",
        ),
    ] {
        let e = with(mlp_keys, body).expect_err(body).to_string();
        assert!(e.contains(needle) && e.contains("suite.toml:"), "{mlp_keys}{body}: expected {needle:?} in {e}");
    }
}

#[test]
fn tuning_and_calibration_repeats_resolve_and_bad_values_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = matrix_suite(
        dir.path(),
        "",
        "\n[tuning]\nitems = 4000\nselect = \"stratified\"\nseed = 3\nevaluate = \"tune\"\n",
    );
    let suite = Suite::load(&path).unwrap();
    let t = suite.tuning.as_ref().unwrap();
    assert_eq!(t.items, 4000);
    assert_eq!(t.evaluate, qbench::suite::SplitPart::Tune);
    // The split the cases are scored on: 4,000 of the 10,000 items (nothing calibrates here).
    let data = load_datasets(&suite).unwrap();
    let (held, eval) = qbench::run::calibration_split(&suite, 0, &data[0]).unwrap();
    assert_eq!((held.len(), eval.len()), (0, 4000));
    let (tune, test) = qbench::run::tuning_split(&suite, &data[0]).unwrap();
    assert_eq!((tune.len(), test.len()), (4000, 6000));
    // Stratified: each of the 10 classes (1,000 items each) gives 400.
    for class in 0..10u32 {
        assert_eq!(tune.labels().iter().filter(|&&l| l == class).count(), 400);
    }
    for (body, needles) in [
        ("\n[tuning]\nitems = 0\n", &["suite.toml:", "tuning.items = 0"][..]),
        ("\n[tuning]\nitems = 10\nevaluate = \"train\"\n", &["tuning.evaluate = \"train\""]),
        ("\n[tuning]\nitems = 10\nselect = \"first\"\nseed = 2\n", &["tuning.seed has no effect"]),
        ("\n[tuning]\nitems = 10\nfolds = 2\n", &["unknown key \"folds\""]),
        ("\n[calibration]\nitems = 10\nrepeats = 0\n", &["calibration.repeats = 0"]),
        ("\n[calibration]\nitems = 10\nrepeats = 50\n", &["calibration.repeats = 50"]),
    ] {
        let path = matrix_suite(dir.path(), "", body);
        let e = Suite::load(&path).expect_err(body).to_string();
        for n in needles {
            assert!(e.contains(n), "{body}: expected {n:?} in {e}");
        }
    }
    // A tuning split that leaves nothing to test on is refused once the dataset is known.
    let path = matrix_suite(dir.path(), "", "\n[tuning]\nitems = 10000\n");
    let e = load_datasets(&Suite::load(&path).unwrap()).unwrap_err().to_string();
    assert!(e.contains("tuning.items = 10000 leaves no item"), "{e}");
}

#[test]
fn calibration_repeats_cut_the_held_out_items_into_disjoint_subsets_apart_from_the_evaluation_items() {
    let dir = tempfile::tempdir().unwrap();
    let body = "\n[calibration]\nitems = 300\nselect = \"stratified\"\nrepeats = 4\n";
    let path = matrix_suite(dir.path(), "schemes = [\"f32\", \"int8-static-minmax\"]\n", body);
    let suite = Suite::load(&path).unwrap();
    let data = load_datasets(&suite).unwrap();
    let (held, eval) = qbench::run::calibration_split(&suite, 0, &data[0]).unwrap();
    assert_eq!((held.len(), eval.len()), (1200, 8800));
    let subsets = qbench::run::calibration_subsets(&suite, &held);
    assert_eq!(subsets.iter().map(|s| s.len()).collect::<Vec<_>>(), [300, 300, 300, 300]);
    // Items by their pixels (Fashion-MNIST's test images are distinct but for a handful of
    // duplicates): no item in two subsets, none in the evaluation split, all 10,000 covered.
    let key =
        |d: &qbench::data::Dataset, i: usize| d.batch_f32(i, 1, 1).iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let mut seen = std::collections::HashMap::new();
    for (k, s) in subsets.iter().enumerate() {
        for i in 0..s.len() {
            *seen.entry(key(s, i)).or_insert(0usize) += 1;
        }
        // Stratified: 30 of each class in every subset.
        for class in 0..10u32 {
            assert_eq!(s.labels().iter().filter(|&&l| l == class).count(), 30, "subset {k}");
        }
    }
    let all: std::collections::HashMap<Vec<u32>, usize> = (0..data[0].len()).fold(Default::default(), |mut m, i| {
        *m.entry(key(&data[0], i)).or_insert(0) += 1;
        m
    });
    for (item, n) in &seen {
        assert!(*n <= all[item], "an item is in more subsets than the dataset has copies of it");
    }
    for i in 0..eval.len() {
        let k = key(&eval, i);
        assert!(seen.get(&k).is_none_or(|n| *n < all[&k]), "evaluation item {i} is also a calibration item");
    }
    // Too many repeats for the dataset: refused once it is known.
    let path = matrix_suite(
        dir.path(),
        "schemes = [\"f32\", \"int8-static-minmax\"]\n",
        "\n[calibration]\nitems = 2000\nrepeats = 5\n",
    );
    let e = load_datasets(&Suite::load(&path).unwrap()).unwrap_err().to_string();
    assert!(e.contains("calibration.items = 2000 × repeats = 5 (10000 held out) leaves no image"), "{e}");
}
