//! The library's layers, in order: a module may use the modules before it, never one after it.
//!
//! This test reads every `crate::` and `super::` path in `src/` (use declarations and inline
//! paths, nested `use crate::{a, b::{c}}` groups and inline `mod` blocks included), resolves it
//! to the top-level module it names, and fails on any that runs against the order, naming the
//! file and line. It also keeps the engines' runtimes out of `model/`, and the reporting stack
//! (parquet, csv, plotters, askama) out of everything a device binary would need.

use std::path::{Path, PathBuf};

/// Lowest first. `docs/ARCHITECTURE.md` explains each layer; a new top-level module must be
/// placed here.
const ORDER: &[&str] = &[
    "files", "hash", "data", "zoo", "model", "quant", "backend", "measure", "record", "bundle", "report", "gate",
    "suite", "run", "explain", "profile", "tune", "pack", "merge", "error",
];

/// Crates that build or run a model: an engine's runtime. `model/` reads and writes model files
/// (candle-core's safetensors/GGUF readers, ONNX's protobuf types) but never builds or runs one.
const ENGINE_RUNTIMES: &[&str] = &[
    "candle_nn",
    "candle_transformers",
    "candle_onnx",
    "tract_core",
    "tract_hir",
    "tract_linalg",
    "tract_cuda",
    "tract_gpu",
    "tract_onnx::prelude",
    "tract_onnx::onnx",
    "Device::new_cuda",
    "cudarc",
];

/// The reporting stack, which a small device binary leaves out.
const REPORTING: &[&str] = &["parquet::", "csv::", "plotters", "askama", "dejavu", "quick_junit", "png::", "indicatif"];

/// Modules a device binary needs: free of the reporting stack.
const DEVICE_SIDE: &[&str] =
    &["files", "hash", "data", "zoo", "model", "quant", "backend", "measure", "record", "bundle"];

/// One path found in the source: the line it starts on and the top-level module it names.
#[derive(Debug, PartialEq)]
struct Use {
    line: usize,
    target: String,
}

/// The source with comments and string/char literals blanked out (newlines kept, so line
/// numbers hold).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") || rest.starts_with(b"br\"") {
            // Raw string: r#*"…"#*
            let start = rest.iter().position(|&c| c == b'r').unwrap() + 1;
            let hashes = rest[start..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(start + hashes) != Some(&b'"') {
                out.push(rest[0] as char);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let body = start + hashes + 1;
            let end = rest[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |e| body + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\''
            && (rest.get(2) == Some(&b'\'') || (rest.get(1) == Some(&b'\\') && rest.get(3) == Some(&b'\'')))
        {
            // A char literal ('x' or '\n'), not a lifetime.
            let end = if rest[1] == b'\\' { 4 } else { 3 };
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            out.push(rest[0] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).into_owned(), start)
}

/// The first segment of each path in a `{…}` group starting at `open` (the brace), with its
/// byte offset; nested groups belong to their first segment, which is what matters here.
fn group_heads(s: &[u8], open: usize) -> Vec<(String, usize)> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut i = open;
    let mut expect_head = true;
    while i < s.len() {
        match s[i] {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    expect_head = true;
                }
                i += 1;
            }
            b'}' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                expect_head = true;
                i += 1;
            }
            c if depth == 1 && expect_head && (c.is_ascii_alphabetic() || c == b'_') => {
                let (id, at) = ident_at(s, i);
                heads.push((id.clone(), at));
                i = at + id.len();
                expect_head = false;
            }
            _ => i += 1,
        }
    }
    heads
}

/// What a path names after its root (`crate::` or enough `super::`s), at byte `j`: one segment,
/// or the first segment of each path of a `{…}` group.
fn heads(s: &[u8], j: usize) -> Vec<(String, usize)> {
    let next = s[j..].iter().position(|c| !c.is_ascii_whitespace()).map_or(j, |p| j + p);
    if s.get(next) == Some(&b'{') {
        group_heads(s, next)
    } else {
        vec![ident_at(s, j)]
    }
}

/// Every top-level module a file's `crate::`/`super::` paths name. `module` is the file's own
/// module path (`["backend", "candle"]` for `src/backend/candle/mod.rs`).
fn uses(src: &str, module: &[String]) -> Vec<Use> {
    let code = code_only(src);
    let s = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let push = |id: String, at: usize, out: &mut Vec<Use>| {
        if !id.is_empty() && id != "self" && id != "super" {
            out.push(Use { line: line_of(at), target: id });
        }
    };
    // Inline `mod name {` blocks deepen the module path of what they hold.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let is_word_start =
        |i: usize| i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
    while i < s.len() {
        match s[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        let rest = &s[i..];
        if rest.starts_with(b"mod ") && is_word_start(i) {
            let (name, at) = ident_at(s, i + 4);
            let after = at + name.len();
            let brace = s[after..].iter().position(|c| !c.is_ascii_whitespace()).map(|p| after + p);
            if brace.is_some_and(|b| s[b] == b'{') {
                inline.push((name, depth));
            }
        }
        if rest.starts_with(b"crate::") && is_word_start(i) {
            let j = i + "crate::".len();
            for (id, at) in heads(s, j) {
                push(id, at, &mut out);
            }
            i = j;
            continue;
        }
        if rest.starts_with(b"super::") && is_word_start(i) {
            let mut ups = 0;
            let mut j = i;
            while s[j..].starts_with(b"super::") {
                ups += 1;
                j += "super::".len();
            }
            let here: Vec<&str> =
                module.iter().map(String::as_str).chain(inline.iter().map(|(n, _)| n.as_str())).collect();
            if ups >= here.len() {
                // Up to the crate root: what follows is a top-level module (or a group of them).
                for (id, at) in heads(s, j) {
                    push(id, at, &mut out);
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// `Error`/`Result` at the crate root are `error`'s; other names are modules.
fn top_module(name: &str) -> &str {
    match name {
        "Error" | "Result" => "error",
        other => other,
    }
}

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|m| *m == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(top-level module, module path)` of a library file; `None` for the binary and the root.
fn module_of(src_dir: &Path, file: &Path) -> Option<(String, Vec<String>)> {
    let rel = file.strip_prefix(src_dir).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    let top = parts.first()?.clone();
    if ["main", "cli", "lib"].contains(&top.as_str()) {
        return None;
    }
    Some((top, parts))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_runs_against_the_layer_order() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some((top, module)) = module_of(&src, file) else { continue };
        let Some(own) = rank(&top) else {
            problems.push(format!("{}: module `{top}` is not in the layer order; place it in tests/layering.rs ORDER and docs/ARCHITECTURE.md", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for u in uses(&text, &module) {
            let target = top_module(&u.target);
            checked += 1;
            match rank(target) {
                Some(r) if r > own => problems.push(format!(
                    "{}:{}: `{top}` uses `{target}`, which comes after it in the layer order ({})",
                    file.strip_prefix(src.parent().unwrap()).unwrap().display(),
                    u.line,
                    ORDER.join(" → ")
                )),
                _ => {}
            }
        }
    }
    assert!(checked > 100, "only {checked} crate paths found: the scanner is broken");
    assert!(problems.is_empty(), "imports against the layer order:\n{}", problems.join("\n"));
}

#[test]
fn every_top_level_module_has_a_place_in_the_order() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let declared: Vec<String> = code_only(&lib)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';').trim().to_string())
        .collect();
    assert!(!declared.is_empty());
    for m in &declared {
        assert!(rank(m).is_some(), "lib.rs declares `{m}`, which the layer order does not place");
    }
    for m in ORDER {
        assert!(declared.iter().any(|d| d == m), "the layer order names `{m}`, which lib.rs does not declare");
    }
}

/// Files of `modules` whose code names one of `names`: `file:line: name`.
fn naming(modules: &[&str], names: &[&str]) -> Vec<String> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let Some((top, _)) = module_of(&src, &file) else { continue };
        if !modules.contains(&top.as_str()) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for (n, line) in code.lines().enumerate() {
            for name in names {
                if line.contains(name) {
                    found.push(format!("{}:{}: {name}", file.display(), n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn model_reads_files_but_builds_no_engine() {
    let found = naming(&["model", "zoo"], ENGINE_RUNTIMES);
    assert!(
        found.is_empty(),
        "model/ and zoo/ must not build or run a model on an engine (that is backend/'s):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_device_side_is_free_of_the_reporting_stack() {
    let found = naming(DEVICE_SIDE, REPORTING);
    assert!(
        found.is_empty(),
        "these modules must stay usable without parquet/csv/plotters/askama:\n{}",
        found.join("\n")
    );
}

/// The scanner itself: it must find what it is meant to find, so the tests above cannot pass
/// by finding nothing.
#[test]
fn the_scanner_finds_every_form_of_path() {
    let src = r#"
//! use crate::report; (a comment: ignored)
use crate::{data::Dataset, quant::{Plan, SchemeId}, Error};
use super::super::record::Record;
fn f() -> crate::Result<()> {
    let s = "crate::gate inside a string";
    let x = crate::measure::stats::median(&[1.0]);
    let c = '"';
    crate::report::write(c);
    Ok(())
}
mod tests {
    use super::super::super::suite;
}
"#;
    let found = uses(src, &["backend".into(), "candle".into()]);
    let targets: Vec<(usize, &str)> = found.iter().map(|u| (u.line, u.target.as_str())).collect();
    assert_eq!(
        targets,
        vec![
            (3, "data"),
            (3, "quant"),
            (3, "Error"),
            (4, "record"),
            (5, "Result"),
            (7, "measure"),
            (9, "report"),
            (13, "suite")
        ]
    );
    // `super::` that stays inside the module names no top-level module.
    assert!(uses("use super::net::Net;", &["backend".into(), "candle".into()]).is_empty());
    assert_eq!(uses("use super::net::Net;", &["backend".into()]), vec![Use { line: 1, target: "net".into() }]);
}
