//! `qbench bundle` then `qbench-device verify`, end to end: a quickstart-derived run of both zoo
//! models (f32, q4k on candle, int8 dynamic on tract), bundled and verified by this build of
//! the device runner (x86), by the same runner cross-compiled for aarch64 under qemu, and with
//! the bundle tampered with in the ways a device meets: a weight that computes wrong (a
//! miscompiled kernel's stand-in), a changed or missing file, a newer format, a manifest
//! without tolerances, an engine the device lacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use qbench::bundle::{Manifest, MANIFEST};
use qbench::record::Record;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The measured run and its bundle, made once for every test of this file.
struct Fixture {
    _dir: tempfile::TempDir,
    run_dir: PathBuf,
    run_records: Vec<Record>,
    bundle: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = repo().join("suites/data");
        let mut suite = format!(
            "name = \"device-check\"\nschemes = [\"f32\", \"q4k\", \"int8-dynamic\"]\nbackends = [\"candle-cpu\", \"tract-cpu\"]\nbatch_sizes = [1]\n[measure]\nwarmup_iters = 2\nmin_samples = 5\nmax_samples = 40\nmax_time_ms = 60\npaired = false\n[bundle]\nfactor = 0.6\n[[datasets]]\nname = \"fm\"\nformat = \"npy\"\ninputs = {:?}\narray = \"x\"\nlabels = {:?}\n",
            data.join("fashion-mnist-1k.npz"),
            data.join("fashion-mnist-1k-labels.csv"),
        );
        for m in ["mlp", "cnn"] {
            suite.push_str(&format!(
                "[[models]]\nname = \"{m}\"\nzoo = \"{m}\"\nweights = {:?}\n",
                repo().join(format!("suites/models/{m}.safetensors"))
            ));
        }
        let path = dir.path().join("suite.toml");
        std::fs::write(&path, suite).unwrap();
        let suite = qbench::suite::Suite::load(&path).unwrap();
        let options = qbench::run::RunOptions { out_dir: Some(dir.path().join("out")), ..Default::default() };
        let summary = qbench::run::run(&suite, &options, &mut |_| {}).unwrap();
        let pack = qbench::pack::PackOptions {
            cases: Some("scheme=f32,q4k,int8-dynamic".into()),
            items: 128,
            out: dir.path().join("release.qbundle"),
            floor_rel: None,
            factor: None,
            min_top1_agreement: None,
        };
        let packed = qbench::pack::pack(&summary.run_dir, &pack, &mut |_| {}).unwrap();
        Fixture { run_dir: summary.run_dir, run_records: summary.records, bundle: packed.dir, _dir: dir }
    })
}

fn manifest(bundle: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(bundle.join(MANIFEST)).unwrap()).unwrap()
}

fn write_manifest(bundle: &Path, m: &Manifest) {
    std::fs::write(bundle.join(MANIFEST), serde_json::to_vec_pretty(m).unwrap()).unwrap();
}

/// A copy of the fixture's bundle to tamper with.
fn copy_bundle(to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let dest = to.join("b");
    let status = Command::new("cp").arg("-r").arg(&fixture().bundle).arg(&dest).status().unwrap();
    assert!(status.success());
    dest
}

fn device(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qbench-device")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn read(out: &Path) -> Vec<Record> {
    qbench::record::read_records(&out.join("records.jsonl")).unwrap()
}

/// sha256 by coreutils: an observation independent of qbench's hashing.
fn sha256sum(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string()
}

/// An `.npy` f32 array read by hand (header length, then little-endian values).
fn npy(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let header = u16::from_le_bytes([b[8], b[9]]) as usize;
    assert!(String::from_utf8_lossy(&b[10..10 + header]).contains("'<f4'"));
    b[10 + header..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn the_bundle_holds_what_was_measured_with_the_stated_tolerances() {
    let f = fixture();
    let m = manifest(&f.bundle);
    // The suite's [bundle] factor, the other two the defaults.
    assert_eq!((m.tolerances.floor_rel, m.tolerances.factor, m.tolerances.min_top1_agreement), (1e-3, 0.6, 0.99));
    // Two variants or more per zoo model: f32 on both engines, q4k on candle, int8 dynamic on tract.
    for model in ["mlp", "cnn"] {
        let schemes: Vec<&str> = m.cases.iter().filter(|c| c.model == model).map(|c| c.scheme.as_str()).collect();
        assert!(
            schemes.contains(&"f32") && schemes.contains(&"q4k") && schemes.contains(&"int8-dynamic"),
            "{schemes:?}"
        );
    }
    // Every file's hash, by coreutils.
    for (file, sha) in &m.files {
        assert_eq!(&sha256sum(&f.bundle.join(file)), sha, "{file}");
    }
    for c in &m.cases {
        let record = f.run_records.iter().find(|r| r.case_index == c.case_index).unwrap();
        // The artifact is the measured one, byte for byte.
        assert_eq!(Some(&c.artifact_sha256), record.artifact_sha256.as_ref(), "{}", c.id);
        assert_eq!(sha256sum(&f.bundle.join(&c.artifact)), c.artifact_sha256, "{}", c.id);
        // The variant's own error on the bundled items is within the run's, measured over the
        // whole evaluation split against the same reference.
        let inputs = m.inputs.iter().find(|i| i.model == c.model).unwrap();
        let golden = npy(&f.bundle.join(&c.outputs[0].file));
        let reference = npy(&f.bundle.join(&inputs.reference[0].file));
        let own = golden.iter().zip(&reference).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        assert!(
            (own - c.outputs[0].own_error).abs() <= 1e-6 * own.max(1.0),
            "{}: {own} vs {}",
            c.id,
            c.outputs[0].own_error
        );
        // (The run scored the f32 cases from its reference pass, at its own batch; the bundle
        // runs every case at the case's batch, where f32 kernels sum in another order.)
        let run_max = record.ref_max_abs_logit_diff.unwrap();
        let scale = c.outputs[0].output_scale;
        assert!(own <= run_max + 1e-4 * scale, "{}: {own} on 128 items > {run_max} on the split", c.id);
        if c.scheme != "f32" {
            assert!(own > 0.0, "{}: a quantized variant equal to fp32", c.id);
        }
        // The tolerance is the documented formula.
        let scale = golden.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        assert_eq!(scale, c.outputs[0].output_scale);
        let t = m.tolerances;
        let expected = t.floor_rel * scale + t.factor * own;
        assert!((c.outputs[0].max_abs - expected).abs() <= 1e-9 * expected.max(1.0), "{}", c.id);
        assert_eq!(c.min_top1_agreement, Some(0.99));
        assert_eq!(golden.len(), 128 * 10);
    }
    // The .tar beside it holds the same folder.
    let tar = qbench::pack::tar_path(&f.bundle);
    let listing = Command::new("tar").arg("tf").arg(&tar).output().unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).lines().any(|l| l == "release.qbundle/manifest.json"));
}

#[test]
fn verify_on_this_machine_passes_every_case_and_records_it() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("device-run");
    let o = device(&["verify", f.bundle.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let records = read(&out);
    let m = manifest(&f.bundle);
    assert_eq!(records.len(), m.cases.len());
    for r in &records {
        let case = m.cases.iter().find(|c| Some(&c.id) == r.bundle_case.as_ref()).unwrap();
        assert_eq!(r.device_verdict.as_deref(), Some("pass"), "{r:?}");
        assert_eq!(r.artifact_sha256.as_ref(), Some(&case.artifact_sha256));
        // The same engine and kernels on the same machine: the deviation is far inside the tolerance.
        assert!(r.device_max_abs_diff.unwrap() <= r.device_tolerance_abs.unwrap());
        assert_eq!(r.device_top1_agreement, Some(1.0), "{}", case.id);
        assert!(r.latency_median_ns.unwrap() > 0.0 && !r.samples_ns.is_empty());
        // Native timing here: this test runs on the machine's own architecture.
        assert_eq!(r.timing_emulated, None);
        assert_eq!(r.model, case.model);
        assert_eq!(r.scheme, case.scheme);
        assert!(!r.layer_evidence.is_empty(), "{}", case.id);
    }
    assert!(out.join("environment.json").is_file());
    // Verifying again into the same folder would mix two verifications: refused.
    let again = device(&["verify", f.bundle.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
}

/// The f32 candle case of the CNN: its artifact is the f32 safetensors.
fn flip_largest_weight(bundle: &Path) -> String {
    let mut m = manifest(bundle);
    let case = m.cases.iter().find(|c| c.model == "cnn" && c.scheme == "f32" && c.backend == "candle-cpu").unwrap();
    let (id, artifact) = (case.id.clone(), case.artifact.clone());
    assert!(artifact.ends_with(".safetensors"), "{artifact}");
    let path = bundle.join(&artifact);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut best = (0usize, 0.0f32);
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" || t["dtype"] != "F32" || !name.ends_with("weight") {
            continue;
        }
        let (a, b) = (t["data_offsets"][0].as_u64().unwrap() as usize, t["data_offsets"][1].as_u64().unwrap() as usize);
        for (i, c) in bytes[8 + n + a..8 + n + b].chunks(4).enumerate() {
            let v = f32::from_le_bytes(c.try_into().unwrap());
            if v.abs() > best.1.abs() {
                best = (8 + n + a + 4 * i, v);
            }
        }
    }
    // The top byte of a little-endian f32 holds the sign and the exponent's high bits.
    bytes[best.0 + 3] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let sha = sha256sum(&path);
    m.files.insert(artifact.clone(), sha.clone());
    for c in m.cases.iter_mut().filter(|c| c.artifact == artifact) {
        c.artifact_sha256 = sha.clone();
    }
    // The bundled records name the artifact's hash too: a consistent bundle, wrong weights.
    let mut records = read(bundle);
    for r in records.iter_mut().filter(|r| r.artifact.as_deref().is_some_and(|a| a.ends_with("cnn.safetensors"))) {
        r.artifact_sha256 = Some(sha.clone());
    }
    let lines: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    std::fs::write(bundle.join("records.jsonl"), lines.join("\n") + "\n").unwrap();
    m.files.insert("records.jsonl".into(), sha256sum(&bundle.join("records.jsonl")));
    write_manifest(bundle, &m);
    id
}

#[test]
fn a_flipped_weight_fails_its_tolerance_and_names_the_variant_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = copy_bundle(dir.path());
    let id = flip_largest_weight(&bundle);
    let out = dir.path().join("run");
    let o = device(&["verify", bundle.to_str().unwrap(), "-o", out.to_str().unwrap(), "--max-time-ms", "20"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.lines().any(|l| l.starts_with("fail") && l.contains(&id)), "{t}");
    assert!(t.contains("output \"output 0\""), "{t}");
    let records = read(&out);
    let bad = records.iter().find(|r| r.bundle_case.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!(bad.device_verdict.as_deref(), Some("fail"));
    assert_eq!(bad.status, qbench::record::CaseStatus::Failed);
    assert!(bad.device_max_abs_diff.unwrap() > bad.device_tolerance_abs.unwrap());
    // Every other case still passes: one failing variant does not stop the others.
    assert!(records
        .iter()
        .filter(|r| r.bundle_case.as_deref() != Some(id.as_str()))
        .all(|r| r.device_verdict.as_deref() == Some("pass")));
    let diff: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("diff-{id}.json"))).unwrap()).unwrap();
    assert_eq!(diff["verdict"], "fail");
    assert_eq!(diff["outputs"][0]["within"], false);
    assert!(diff["outputs"][0]["items_over_count"].as_u64().unwrap() > 0);
}

#[test]
fn a_bad_bundle_exits_1_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let verify = |bundle: &Path, name: &str| {
        let out = dir.path().join(name);
        device(&["verify", bundle.to_str().unwrap(), "-o", out.to_str().unwrap()])
    };
    // A changed artifact whose hash was not updated.
    let changed = copy_bundle(&dir.path().join("changed"));
    let m = manifest(&changed);
    let artifact = m.cases[0].artifact.clone();
    let mut bytes = std::fs::read(changed.join(&artifact)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(changed.join(&artifact), bytes).unwrap();
    let o = verify(&changed, "o1");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&artifact) && text(&o).contains("does not match the manifest"), "{}", text(&o));
    // A missing file.
    let missing = copy_bundle(&dir.path().join("missing"));
    let golden = manifest(&missing).cases[1].outputs[0].file.clone();
    std::fs::remove_file(missing.join(&golden)).unwrap();
    let o = verify(&missing, "o2");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&golden) && text(&o).contains("is missing"), "{}", text(&o));
    // A newer format.
    let newer = copy_bundle(&dir.path().join("newer"));
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(newer.join(MANIFEST)).unwrap()).unwrap();
    value["format_version"] = 2.into();
    value["a_field_of_version_2"] = true.into();
    std::fs::write(newer.join(MANIFEST), serde_json::to_vec(&value).unwrap()).unwrap();
    let o = verify(&newer, "o3");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("format version 2, newer"), "{}", text(&o));
    // Tolerances missing.
    let untolerant = copy_bundle(&dir.path().join("untolerant"));
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(untolerant.join(MANIFEST)).unwrap()).unwrap();
    value["cases"][0]["outputs"][0].as_object_mut().unwrap().remove("max_abs");
    std::fs::write(untolerant.join(MANIFEST), serde_json::to_vec(&value).unwrap()).unwrap();
    let o = verify(&untolerant, "o4");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("cases[0].outputs[0]") && text(&o).contains("max_abs"), "{}", text(&o));
    // Not a bundle at all.
    let o = verify(dir.path(), "o5");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no manifest.json"), "{}", text(&o));
    // A NaN in a golden output, its hash updated: never a pass that compared nothing.
    let nan = copy_bundle(&dir.path().join("nan"));
    let mut m = manifest(&nan);
    let golden = m.cases[2].outputs[0].file.clone();
    let mut bytes = std::fs::read(nan.join(&golden)).unwrap();
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(nan.join(&golden), &bytes).unwrap();
    m.files.insert(golden.clone(), sha256sum(&nan.join(&golden)));
    write_manifest(&nan, &m);
    let o = verify(&nan, "o6");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&golden) && text(&o).contains("not a finite number"), "{}", text(&o));
    // A tolerance edited to let anything through: not the stated rule's, refused.
    let loose = copy_bundle(&dir.path().join("loose"));
    let mut m = manifest(&loose);
    m.cases[0].outputs[0].max_abs = 1e30;
    write_manifest(&loose, &m);
    let o = verify(&loose, "o7");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not the rule's"), "{}", text(&o));
    // A class output without its top-1 bound.
    let untop = copy_bundle(&dir.path().join("untop"));
    let mut m = manifest(&untop);
    m.cases[0].min_top1_agreement = None;
    write_manifest(&untop, &m);
    let o = verify(&untop, "o8");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no min_top1_agreement"), "{}", text(&o));
    // A case id that would name a file outside the output folder.
    let escape = copy_bundle(&dir.path().join("escape"));
    let mut m = manifest(&escape);
    m.cases[0].id = "../../x".into();
    write_manifest(&escape, &m);
    let o = verify(&escape, "o9");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a plain file name"), "{}", text(&o));
    // A folder of the bundle linked elsewhere: files from outside the bundle, refused.
    let linked = copy_bundle(&dir.path().join("linked"));
    let moved = dir.path().join("elsewhere");
    std::fs::rename(linked.join("files"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, linked.join("files")).unwrap();
    let o = verify(&linked, "o10");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("symbolic link"), "{}", text(&o));
    // The same as a .tar (a link entry): refused, and nothing unpacked is left behind.
    let tar = dir.path().join("linked.tar");
    let status =
        Command::new("tar").arg("cf").arg(&tar).arg("-C").arg(dir.path().join("linked")).arg("b").status().unwrap();
    assert!(status.success());
    let o = verify(&tar, "o11");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a plain file or folder"), "{}", text(&o));
    assert!(!dir.path().join("o11/bundle").exists());
}

#[test]
fn an_engine_the_device_lacks_is_unsupported_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = copy_bundle(dir.path());
    let mut m = manifest(&bundle);
    // A backend no qbench has, and one this build leaves out (the CUDA feature).
    m.cases[0].backend = "npu-cpu".into();
    m.cases[1].backend = "tract-cuda".into();
    write_manifest(&bundle, &m);
    let out = dir.path().join("run");
    let o = device(&["verify", bundle.to_str().unwrap(), "-o", out.to_str().unwrap(), "--max-time-ms", "20"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let records = read(&out);
    assert_eq!(records.len(), m.cases.len());
    for (i, r) in records.iter().enumerate() {
        let expected = if i < 2 { "unsupported" } else { "pass" };
        assert_eq!(r.device_verdict.as_deref(), Some(expected), "{r:?}");
    }
    assert!(records[0].error.as_deref().unwrap().contains("no backend \"npu-cpu\""), "{:?}", records[0].error);
    assert!(records[1].error.as_deref().unwrap().contains("cuda"), "{:?}", records[1].error);
}

/// Cross-compiles the device runner for aarch64 (scripts/device-build) and verifies the bundle's
/// .tar under qemu-aarch64: NEON kernels instead of AVX-512, the timing flagged as emulated.
#[test]
fn the_aarch64_build_passes_under_qemu_with_its_timing_marked_emulated() {
    let f = fixture();
    let started = std::time::Instant::now();
    let build = Command::new("bash")
        .arg(repo().join("scripts/device-build"))
        .arg("aarch64-unknown-linux-gnu")
        .output()
        .unwrap();
    assert!(build.status.success(), "scripts/device-build failed:\n{}", text(&build));
    let binary = PathBuf::from(String::from_utf8_lossy(&build.stdout).lines().last().unwrap().trim());
    eprintln!(
        "aarch64 build: {:.0} s, {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&binary).unwrap().len()
    );
    let file = Command::new("file").arg(&binary).output();
    if let Ok(file) = file {
        let what = String::from_utf8_lossy(&file.stdout).to_string();
        assert!(what.contains("ARM aarch64") || what.contains("cannot open"), "{what}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("arm");
    let tar = qbench::pack::tar_path(&f.bundle);
    let started = std::time::Instant::now();
    // The binary links glibc dynamically, as on a Debian/Ubuntu arm64 board; here qemu finds the
    // aarch64 loader and libc under Debian's cross sysroot (libc6-dev-arm64-cross).
    let o = Command::new("qemu-aarch64-static")
        .env("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu")
        // A Cortex-A72 (a Raspberry Pi 4's core): NEON without SVE or dot products, so the
        // engines pick their plain NEON kernels (qemu's default CPU would offer SVE).
        .env("QEMU_CPU", "cortex-a72")
        .arg(&binary)
        .args(["verify", tar.to_str().unwrap(), "-o", out.to_str().unwrap(), "--max-time-ms", "200"])
        .output()
        .unwrap();
    eprintln!("verify under qemu-aarch64: {:.1} s\n{}", started.elapsed().as_secs_f64(), text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let records = read(&out);
    let m = manifest(&f.bundle);
    assert_eq!(records.len(), m.cases.len());
    for r in &records {
        assert_eq!(r.device_verdict.as_deref(), Some("pass"), "{r:?}");
        let why = r.timing_emulated.as_deref().unwrap_or_default();
        assert!(why.contains("aarch64"), "{why}");
        eprintln!(
            "{}: max |aarch64 − x86| {:.3e} (tolerance {:.3e}), top-1 agreement {:?}",
            r.bundle_case.as_deref().unwrap(),
            r.device_max_abs_diff.unwrap(),
            r.device_tolerance_abs.unwrap(),
            r.device_top1_agreement
        );
    }
    // tract ran its arm64 NEON kernels: the plan's evidence names them, not x86's (whose
    // names carry avx or fma) nor SVE's.
    let tract: Vec<&Record> = records.iter().filter(|r| r.backend == "tract-cpu").collect();
    assert!(!tract.is_empty());
    for r in tract {
        let ev = r.evidence.as_deref().unwrap_or_default();
        assert!(ev.contains("arm64simd") && !ev.contains("avx") && !ev.contains("fma") && !ev.contains("sve"), "{ev}");
    }
    // The environment the device recorded is an aarch64 CPU's as qemu presents it, its ISA
    // flags the CPU's own (asimd), no x86 flag.
    let env: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("environment.json")).unwrap()).unwrap();
    let flags: Vec<&str> = env["cpu_flags"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(flags.contains(&"asimd") && !flags.iter().any(|f| f.starts_with("avx")), "{flags:?}");
    // A Cortex-A72 has no dot-product or SVE extension: the flags are the emulated CPU's.
    assert!(!flags.contains(&"asimddp") && !flags.contains(&"sve"), "{flags:?}");
    let cpu = env["cpu_model"].as_str().unwrap();
    assert!(cpu.starts_with("aarch64 CPU emulated on"), "{cpu}");
    assert!(records.iter().all(|r| r.cpu_model == cpu && r.cpu_flags == flags));
    let _ = &f.run_dir;
}

#[test]
fn compare_and_report_put_the_device_beside_the_workstation() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("device-run");
    let o = device(&["verify", f.bundle.to_str().unwrap(), "-o", out.to_str().unwrap(), "--only", "cnn."]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let device_records = read(&out);
    assert_eq!(device_records.len(), 6);
    // compare: one column per machine, then the device verdicts with the latency ratio.
    let runs =
        [qbench::report::compare::load_run(&f.run_dir).unwrap(), qbench::report::compare::load_run(&out).unwrap()];
    let table = qbench::report::compare::render(&runs, 0.02, false).unwrap();
    assert!(table.contains("## Target devices") && table.contains("6 of 6 bundled case(s) passed"), "{table}");
    // The device took no machine check: said so, not shown as a 0% spread.
    assert!(table.contains("% and not measured."), "{table}");
    for r in &device_records {
        let ws = f
            .run_records
            .iter()
            .find(|w| w.model == r.model && w.scheme == r.scheme && w.backend == r.backend)
            .unwrap();
        let case = format!("{} / {} / {} / batch 1", r.model, r.scheme, r.backend);
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {case} | ")) && l.contains("| pass |"))
            .unwrap_or_else(|| panic!("{case}\n{table}"));
        // The ratio is the two records' medians, recomputed here.
        let ratio = r.latency_median_ns.unwrap() / ws.latency_median_ns.unwrap();
        assert!(row.ends_with(&format!("×{ratio:.2} |")), "{row} vs ×{ratio:.2}");
    }
    // report: the workstation run keeps the device's records and its page shows them.
    let device_run = qbench::report::devices::DeviceRun::new(&out, device_records.clone());
    qbench::report::attach_devices(&f.run_dir, &[device_run]).unwrap();
    let outputs = qbench::report::write_outputs(&f.run_dir, &f.run_records).unwrap();
    assert!(outputs.markdown.contains("## Target devices"), "{}", outputs.markdown);
    let html = std::fs::read_to_string(f.run_dir.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"devices\">"));
    assert_eq!(html.matches("<tr class=\"device-pass\">").count(), 6);
    // The device run's own report shows the same section, from its workstation.jsonl.
    qbench::report::write_outputs(&out, &device_records).unwrap();
    let own = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(own.matches("<tr class=\"device-pass\">").count(), 6);
}

/// The device runner's dependency graph, as cargo resolves it for this crate alone (what a
/// cross build compiles): the engines, none of the reporting stack.
#[test]
fn the_device_runner_links_none_of_the_reporting_stack() {
    let o = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "qbench-device",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tree = String::from_utf8_lossy(&o.stdout);
    let has = |krate: &str| tree.lines().any(|l| l.split_whitespace().next() == Some(krate));
    for reporting in ["plotters", "askama", "indicatif", "parquet", "csv", "quick-junit", "dejavu"] {
        assert!(!has(reporting), "qbench-device depends on {reporting}:\n{tree}");
    }
    for engine in ["tract-onnx", "candle-core", "candle-nn"] {
        assert!(has(engine), "qbench-device lacks {engine}:\n{tree}");
    }
}
