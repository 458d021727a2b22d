//! Every suite shipped in suites/ parses, validates, and its datasets fit its models.

use qbench::run::load_datasets;
use qbench::suite::{expand, suite_files, Suite};

#[test]
fn every_shipped_suite_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let files = suite_files(&dir).unwrap();
    assert!(!files.is_empty(), "no suites found in {}", dir.display());
    let mut need_cuda = Vec::new();
    for f in files {
        let suite = match Suite::load(&f) {
            Ok(s) => s,
            // A build without CUDA refuses the CUDA suite, saying how to build one that runs it.
            // Everything else in it must still hold: it is checked with its CPU backends only.
            Err(e) if !cfg!(feature = "cuda") && e.to_string().contains("--features cuda") => {
                need_cuda.push(f.file_name().unwrap().to_string_lossy().into_owned());
                let text = std::fs::read_to_string(&f).unwrap();
                let cpu_only = text.replace("\"candle-cuda\", ", "").replace("\"tract-cuda\", ", "");
                assert_ne!(cpu_only, text, "{}: its CUDA backends are not listed first", f.display());
                Suite::from_str(&f, &cpu_only)
                    .unwrap_or_else(|e| panic!("{} without its CUDA backends: {e}", f.display()))
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
}
