//! Every suite shipped in suites/ parses, validates, and its datasets fit its models.

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
        assert_eq!(
            cases.len(),
            suite.models.len() * suite.schemes.len() * suite.backends.len() * suite.batch_sizes.len()
        );
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
