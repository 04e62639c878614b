//! No test passes without running: every `#[ignore = "reason"]` in `src/` and `tests/` is
//! listed in `tests/skipped.txt` with the same reason (which `scripts/test` prints), the list
//! names no other test, and no test body returns early (`return;`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/skipped.txt`: test name -> reason.
fn listed() -> BTreeMap<String, String> {
    let path = root().join("tests/skipped.txt");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, reason) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("{}: {line:?} is not `name: reason`", path.display()));
            (name.to_string(), reason.to_string())
        })
        .collect()
}

/// Every `.rs` file under `dir`, but the binaries (`src/bin`, separate crates without tests).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .path();
        if path.is_dir() && !path.ends_with("src/bin") {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The name cargo test gives a test function `name` of `file`: `matrix::pgback::name` in
/// tests/it/matrix/pgback.rs, `dump::tools::tests::name` in src/dump/tools.rs (unit tests
/// live in a `tests` module).
fn test_name(file: &Path, name: &str) -> String {
    let (base, unit) = match file.strip_prefix(root().join("tests/it")) {
        Ok(relative) => (relative, false),
        Err(_) => (
            file.strip_prefix(root().join("src")).unwrap_or_else(|_| {
                panic!("{} is neither in src/ nor in tests/it/", file.display())
            }),
            true,
        ),
    };
    let mut parts: Vec<String> = base
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| ["mod", "main", "lib"].contains(&last.as_str()))
    {
        parts.pop();
    }
    if unit {
        parts.push("tests".into());
    }
    parts.push(name.into());
    parts.join("::")
}

/// One test function as written.
struct TestFn {
    name: String,
    /// `Some(reason)` for `#[ignore = "reason"]`, `Some("")` for a bare `#[ignore]`.
    ignored: Option<String>,
    /// Lines of its body that are a bare `return;`, with their line numbers.
    early_returns: Vec<usize>,
}

/// The test functions (`#[test]`, `#[tokio::test]`) of one file; a body ends at the first
/// line holding only `}` at the indentation of its `fn`, as rustfmt writes it.
fn test_fns(file: &Path) -> Vec<TestFn> {
    let text =
        fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut tests = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let attribute = lines[i].trim_start();
        if !(attribute == "#[test]" || attribute.starts_with("#[tokio::test")) {
            i += 1;
            continue;
        }
        let mut ignored = None;
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim_start().starts_with("#[") {
            let attribute = lines[j].trim();
            if let Some(rest) = attribute.strip_prefix("#[ignore") {
                let reason = rest
                    .trim_start_matches([' ', '='])
                    .trim_end_matches(']')
                    .trim_matches('"');
                ignored = Some(reason.to_string());
            }
            j += 1;
        }
        let Some(signature) = lines.get(j) else {
            break;
        };
        let indent = signature.len() - signature.trim_start().len();
        let name = signature
            .trim_start()
            .trim_start_matches("async ")
            .strip_prefix("fn ")
            .and_then(|rest| rest.split('(').next())
            .unwrap_or_else(|| panic!("{}:{}: no fn after #[test]", file.display(), j + 1));
        let close = format!("{}}}", " ".repeat(indent));
        let mut early_returns = Vec::new();
        let mut k = j + 1;
        while k < lines.len() && lines[k] != close {
            if lines[k].trim() == "return;" {
                early_returns.push(k + 1);
            }
            k += 1;
        }
        tests.push(TestFn {
            name: test_name(file, name),
            ignored,
            early_returns,
        });
        i = k;
    }
    tests
}

#[test]
fn every_left_out_test_is_listed_with_its_reason_and_none_returns_early() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("tests")));
    let mut ignored = BTreeMap::new();
    let mut early = Vec::new();
    let mut count = 0;
    for file in &files {
        for test in test_fns(file) {
            count += 1;
            if let Some(reason) = test.ignored {
                ignored.insert(test.name.clone(), reason);
            }
            for line in test.early_returns {
                early.push(format!("{}:{line} ({})", file.display(), test.name));
            }
        }
    }
    assert!(count > 300, "found only {count} tests: the scan is broken");
    assert!(
        early.is_empty(),
        "tests that return early and pass without running (fail instead, saying how to \
         install what is missing, or #[ignore = \"reason\"] and list them in \
         tests/skipped.txt): {early:?}"
    );
    for (name, reason) in &ignored {
        assert!(
            !reason.is_empty(),
            "{name}: #[ignore] without a reason; write #[ignore = \"why\"]"
        );
    }
    assert_eq!(
        ignored,
        listed(),
        "tests/skipped.txt must list every #[ignore = \"reason\"] test with the same reason"
    );
}
