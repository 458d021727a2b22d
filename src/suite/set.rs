//! `--set KEY=VALUE`: a change to the suite's text before it is validated, as if the file said
//! so. The key is a dotted path (`measure.threads`, `batch_sizes`, `models.cnn.schemes`); an
//! entry of an array of tables (`[[models]]`, `[[datasets]]`, `[[gates]]`) is named by its
//! `name` or by its 0-based position. The value is TOML (`2`, `[1, 32]`, `"x"`, `true`); a bare
//! word that is not TOML is taken as a string (`--set name=nightly`).
//!
//! The edited text is the suite the run uses: validated like a file (unknown keys, types and
//! ranges are refused), hashed, and kept as the run's `suite.toml` with the sets named at its
//! top, so `check` and a resumed run read the same suite.

use toml_edit::{DocumentMut, Item, Value};

/// Applies each `KEY=VALUE` in order to the suite text `source`.
pub fn apply_sets(source: &str, sets: &[String]) -> Result<String, String> {
    if sets.is_empty() {
        return Ok(source.to_string());
    }
    let mut doc: DocumentMut = source.parse().map_err(|e| format!("the suite does not parse as TOML: {e}"))?;
    for set in sets {
        apply(&mut doc, set).map_err(|why| format!("--set {set}: {why}"))?;
    }
    Ok(doc.to_string())
}

/// The header a run's copy of the suite carries: which sets made it from which file.
pub fn header(file: &std::path::Path, sets: &[String]) -> String {
    let mut out = format!("# {} with, in this order:\n", file.display());
    for s in sets {
        // One comment line per set: a value's newlines stay escaped, never TOML.
        let line: String =
            s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect();
        out.push_str(&format!("#   --set {line}\n"));
    }
    out
}

fn apply(doc: &mut DocumentMut, set: &str) -> Result<(), String> {
    let (key, value) = set.split_once('=').ok_or("write KEY=VALUE, e.g. --set measure.threads=2")?;
    let (key, value) = (key.trim(), value.trim());
    if key.is_empty() {
        return Err("the key is empty; write KEY=VALUE, e.g. --set measure.threads=2".into());
    }
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("\"{key}\" has an empty part; write dotted keys like measure.threads"));
    }
    let value: Value = match value.parse::<Value>() {
        Ok(v) => v,
        // A bare word (`nightly`, `int8-*`) is a string.
        Err(_) if !value.is_empty() && !value.contains(['[', '{', '"', '\'', '\n']) => Value::from(value),
        Err(e) => return Err(format!("the value is not TOML ({e}); quote a string, e.g. '\"text\"'")),
    };
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    let mut walked: Vec<String> = Vec::new();
    let mut i = 0;
    while i + 1 < parts.len() {
        let part = parts[i];
        let here = if walked.is_empty() { "the suite".to_string() } else { walked.join(".") };
        if !table.contains_key(part) {
            // A missing table is created ([measure] when the suite has none).
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            table.insert(part, Item::Table(t));
        }
        let item = table.get_mut(part).ok_or_else(|| format!("{here} has no key \"{part}\""))?;
        walked.push(part.to_string());
        match item {
            Item::ArrayOfTables(array) => {
                // The entry: by name (which may hold dots: the longest name that matches), or by
                // position.
                let rest = &parts[i + 1..parts.len() - 1];
                let names: Vec<String> = array
                    .iter()
                    .map(|t| t.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string())
                    .collect();
                let found = (1..=rest.len()).rev().find_map(|n| {
                    let name = rest[..n].join(".");
                    names.iter().position(|x| *x == name).map(|at| (at, n))
                });
                let (at, used) = match found {
                    Some(f) => f,
                    None => match rest.first().and_then(|p| p.parse::<usize>().ok()) {
                        Some(at) if at < array.len() => (at, 1),
                        _ => {
                            let listed: Vec<String> = names
                                .iter()
                                .enumerate()
                                .map(|(k, n)| if n.is_empty() { k.to_string() } else { format!("{n:?}") })
                                .collect();
                            return Err(format!(
                                "name the [[{part}]] entry after \"{part}.\": its name or position ({}), then the key, e.g. {part}.{}.KEY",
                                listed.join(", "),
                                listed.first().map(|s| s.trim_matches('"').to_string()).unwrap_or_else(|| "0".into())
                            ));
                        }
                    },
                };
                walked.push(rest[..used].join("."));
                i += 1 + used;
                table = array.get_mut(at).ok_or("no such entry")?;
                continue;
            }
            other => {
                table = other.as_table_like_mut().ok_or_else(|| {
                    format!(
                        "\"{}\" is a value, not a table: set it whole, e.g. --set {}=…",
                        walked.join("."),
                        walked.join(".")
                    )
                })?;
            }
        }
        i += 1;
    }
    let last = parts.get(i).ok_or_else(|| format!("{} names an entry; add the key to set, e.g. {key}.name", key))?;
    if matches!(table.get(last), Some(Item::Table(_)) | Some(Item::ArrayOfTables(_))) {
        return Err(format!("\"{key}\" is a table; set one of its keys, e.g. {key}.KEY=VALUE"));
    }
    table.insert(last, Item::Value(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = "name = \"t\"\nschemes = [\"f32\"]\n\n[[models]]\nname = \"cnn.v1\"\nzoo = \"cnn\"\n\n[[models]]\nname = \"mlp\"\nzoo = \"mlp\"\n";

    fn set(sets: &[&str]) -> Result<toml::Table, String> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        apply_sets(SUITE, &sets).map(|t| toml::from_str(&t).unwrap())
    }

    #[test]
    fn sets_reach_tables_entries_by_name_or_position_and_missing_tables() {
        let t = set(&[
            "measure.threads=2",
            "schemes=[\"f32\", \"q4k\"]",
            "models.cnn.v1.batch_sizes=[1]",
            "models.1.zoo=cnn",
            "name=nightly",
        ])
        .unwrap();
        assert_eq!(t["measure"]["threads"].as_integer(), Some(2));
        assert_eq!(t["schemes"].as_array().unwrap().len(), 2);
        let models = t["models"].as_array().unwrap();
        assert_eq!(models[0]["batch_sizes"].as_array().unwrap()[0].as_integer(), Some(1));
        assert_eq!(models[1]["zoo"].as_str(), Some("cnn"));
        assert_eq!(t["name"].as_str(), Some("nightly"));
        // Later sets win.
        assert_eq!(
            set(&["measure.threads=2", "measure.threads=4"]).unwrap()["measure"]["threads"].as_integer(),
            Some(4)
        );
    }

    #[test]
    fn the_header_keeps_each_set_on_one_comment_line() {
        let h = header(std::path::Path::new("s.toml"), &["description=\"a\nb = 1\"".to_string()]);
        assert_eq!(h.lines().count(), 2, "{h}");
        assert!(h.lines().all(|l| l.starts_with('#')), "{h}");
        assert!(h.contains("description=\"a\\nb = 1\""), "{h}");
    }

    #[test]
    fn sets_that_cannot_apply_say_why() {
        for (bad, needle) in [
            ("threads", "write KEY=VALUE"),
            ("=2", "the key is empty"),
            ("measure..threads=2", "empty part"),
            ("models.resnet.zoo=cnn", "its name or position (\"cnn.v1\", \"mlp\")"),
            ("models.7.zoo=cnn", "its name or position"),
            ("name.x=1", "is a value, not a table"),
            ("models=1", "is a table"),
            ("schemes=[\"f32\"", "not TOML"),
        ] {
            let e = set(&[bad]).expect_err(bad);
            assert!(e.starts_with(&format!("--set {bad}: ")) && e.contains(needle), "{bad}: {e}");
        }
    }
}
