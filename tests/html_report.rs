//! `report.html` in a real browser: Debian's headless chromium loads the page of a real run
//! (measured, failed and skipped cases, a hostile suite description), the page's own self-test
//! checks the table, the charts and sorting, nothing is logged to the console, and a PNG
//! screenshot is written to `target/test-artifacts/report.png`.
//!
//! Needs chromium: `scripts/test` and `.ci/run` install it (`apt-get install chromium`); or
//! point `QBENCH_CHROMIUM` at a Chrome or Chromium binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use qbench::record::CaseStatus;
use qbench::report::jsonl::read_records;

const HOSTILE: &str = r#"<script>alert("pwned")</script> & <b>bold</b>"#;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("QBENCH_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("which").arg(name).output() {
            if o.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            }
        }
    }
    panic!(
        "no chromium found: this test renders report.html in a real browser. Install Debian's chromium \
         (`apt-get install chromium`, which scripts/test and .ci/run do) or set QBENCH_CHROMIUM to a Chrome binary"
    );
}

/// Headless chromium with the flags that keep it off the (closed) network and quiet, a fresh
/// profile, and console messages on stderr.
fn browser(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Console output chromium logged for the page (errors, warnings and logs alike).
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect()
}

#[test]
fn report_html_renders_in_headless_chromium_with_working_tables_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.safetensors"), b"not a model").unwrap();
    let extra = "\n[[models]]\nname = \"broken\"\nzoo = \"cnn\"\nweights = \"broken.safetensors\"\n";
    let suite = common::write_suite(dir.path(), r#"["candle-cpu", "tract-cpu"]"#, "[8]", &["mlp"], extra);
    let text = std::fs::read_to_string(&suite)
        .unwrap()
        .replace(r#"schemes = ["f32"]"#, r#"schemes = ["f32", "int8-pc-sym", "q8_0", "bf16"]"#)
        .replace("name = \"t\"\n", &format!("name = \"t\"\ndescription = {HOSTILE:?}\n"));
    std::fs::write(&suite, text).unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    // The broken model's cases fail (exit 1); everything else is measured and reported.
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let run = std::fs::read_dir(out.join("t")).unwrap().next().unwrap().unwrap().path();
    let records = read_records(&run.join("records.jsonl")).unwrap();
    let count = |s: CaseStatus| records.iter().filter(|r| r.status == s).count();
    assert_eq!((count(CaseStatus::Ok), count(CaseStatus::Failed), count(CaseStatus::Skipped)), (7, 7, 2));
    let page_path = run.join("report.html");
    let html = std::fs::read_to_string(&page_path).unwrap();

    // Self-contained: no external reference of any kind (the SVG namespace is a name, not a fetch).
    let fetchable = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for needle in ["http://", "https://", "<link", " src=", "@import", "url("] {
        assert!(!fetchable.contains(needle), "report.html refers to something outside it: {needle}");
    }
    // The hostile description is shown, escaped, and never as markup.
    assert!(
        html.contains("&#60;script&#62;alert(&#34;pwned&#34;)&#60;/script&#62; &#38; &#60;b&#62;bold&#60;/b&#62;"),
        "escaped description missing: {}",
        &html[html.find("<header>").unwrap()..html.find("</header>").unwrap()]
    );
    assert!(!html.contains("<script>alert") && !html.contains("<b>bold"));
    // Charts: tradeoff, latency and size for the one measured model, inline.
    assert_eq!(html.matches("<figure class=\"chart\"").count(), 3);

    // The browser: the page's self-test (rows, charts drawn, sorting both ways) must pass, and
    // the page must log nothing.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}#selftest", page_path.display());
    let o = browser(profile.path()).args(["--window-size=1400,2600", "--dump-dom", &url]).output().unwrap();
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("data-selftest=\"pass\""), "the page's self-test failed: {}", selftest_line(&dom));
    assert!(!attribute(&dom, "data-sorted-column").is_empty(), "sorting was not exercised on a numeric column");
    assert_eq!(console_lines(&o.stderr), Vec::<String>::new(), "the page logged to the console");
    // At 1400 px the reader sees, without scrolling, which case a row is (model, scheme), what the
    // engine made of it and how accurate it is: the browser's own layout says which header
    // cells lie inside the window.
    let visible = attribute(&dom, "data-visible-columns");
    assert_eq!(attribute(&dom, "data-window-width"), "1400");
    for column in ["model", "scheme", "backend", "realization", "top-1 ± CI (%)"] {
        assert!(visible.split('|').any(|c| c == column), "{column} is off screen at 1400 px; visible: {visible}");
    }
    // The filter box kept only the rows that contain the first row's scheme.
    let filtered = attribute(&dom, "data-filtered-rows");
    let (kept, all) = filtered.split_once('/').unwrap();
    assert!(kept.parse::<usize>().unwrap() < all.parse::<usize>().unwrap(), "{filtered}");
    // Each row's evidence is there to expand: what the engine made of each layer.
    assert!(dom.contains("<details><summary>show</summary><pre>") && dom.contains("computed in"), "no evidence rows");
    // The failed and skipped cases are listed with their reasons, after the browser parsed them.
    assert!(dom.contains("id=\"problems-table\"") && dom.contains("no bfloat16 datum type"));
    assert_eq!(dom.matches("<td>failed</td>").count(), 7);

    // A screenshot, kept for people (CI artifact) and checked to show something.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let o = browser(profile.path())
        .args(["--window-size=1400,2600", &format!("--screenshot={}", shot.display())])
        .arg(format!("file://{}", page_path.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().expect("a screenshot small enough to decode")];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1400, 2600));
    let step = info.color_type.samples();
    let mut colours: Vec<&[u8]> = pixels[..info.buffer_size()].chunks(step).collect();
    colours.sort();
    colours.dedup();
    assert!(colours.len() > 50, "the screenshot is nearly blank: {} colours", colours.len());
    println!("screenshot of report.html: {}", shot.canonicalize().unwrap().display());

    // compare.html of the run against itself: at 1400 px the case, what each engine made of it,
    // the accuracy and the verdict are in view, as the browser lays the page out.
    let cmp = dir.path().join("cmp");
    let o = Command::new(env!("CARGO_BIN_EXE_qbench"))
        .args(["compare", run.to_str().unwrap(), run.to_str().unwrap(), "--out", cmp.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = cmp.join("compare.html");
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}#selftest", page.display());
    let o = browser(profile.path()).args(["--window-size=1400,1200", "--dump-dom", &url]).output().unwrap();
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert_eq!(console_lines(&o.stderr), Vec::<String>::new(), "compare.html logged to the console");
    assert_eq!(attribute(&dom, "data-window-width"), "1400");
    let visible = attribute(&dom, "data-visible-columns");
    for column in ["case", "realization 1 → 2", "top-1 1 / 2 (%)", "verdict"] {
        assert!(visible.split('|').any(|c| c == column), "{column} is off screen at 1400 px; visible: {visible}");
    }
    let shot = shots.join("compare.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let o = browser(profile.path())
        .args(["--window-size=1400,1200", &format!("--screenshot={}", shot.display())])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(o.status.success() && shot.is_file(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    println!("screenshot of compare.html: {}", shot.canonicalize().unwrap().display());
}

/// The value of attribute `name` on the page's root element (set by its self-test).
fn attribute<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in the DOM")) + name.len() + 2;
    let rest = &dom[start..];
    &rest[..rest.find('"').unwrap()]
}

fn selftest_line(dom: &str) -> &str {
    dom.find("data-selftest=").map_or("no data-selftest attribute (the script did not run)", |i| {
        let rest = &dom[i..];
        &rest[..rest.find('>').unwrap_or(rest.len())]
    })
}
