//! The README and `docs/` held to the code, so they cannot go stale. No server; a few seconds.
//!
//! - Every command block (```` ```sh ````, `bash`, `console`, `shell`, `diff`) has a marker on
//!   the line above it: `<!-- run by: tests/it/FILE.rs: NAME -->` (FILE names the block as
//!   `"NAME"` and runs it through [`doc_block`]) or `<!-- not run: why -->`. Every fenced block
//!   names its language (`text` for output), and every `toml` block is a valid configuration.
//! - The option tables (`<!-- options: BINARY... -->` above them) list exactly the flags of each
//!   binary's `--help`, with the environment variable and configuration key `--help` gives
//!   them; every key they name exists, and every key the parser accepts is named in one.
//! - The cheap blocks run here, for real: `--help` of every binary, the configuration examples,
//!   the conversion of a pg_back.conf.
//! - Every relative link leads to a file, and its `#fragment` to a heading, that exists.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safe_backup::config::Config;

use crate::cluster::scratch_dir;
use crate::util::{binary, binary_dir};

mod options;

/// The languages of blocks that hold commands.
const COMMAND_LANGUAGES: [&str; 5] = ["sh", "bash", "console", "shell", "diff"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md: (path relative to the root, text).
fn documents() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string()];
    let mut pages: Vec<String> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").file_name())
        .map(|name| format!("docs/{}", name.to_string_lossy()))
        .filter(|name| name.ends_with(".md"))
        .collect();
    pages.sort();
    names.extend(pages);
    names
        .into_iter()
        .map(|name| {
            let text = fs::read_to_string(root().join(&name))
                .unwrap_or_else(|e| panic!("reading {name}: {e}"));
            (name, text)
        })
        .collect()
}

/// What the line above a block says about it.
#[derive(Debug, PartialEq)]
enum Marker {
    RunBy { file: String, name: String },
    NotRun,
    None,
}

/// One fenced block of a document.
#[derive(Debug)]
struct Block {
    /// `file:line` of its opening fence.
    place: String,
    language: String,
    marker: Marker,
    body: String,
}

fn marker(line: &str) -> Marker {
    let comment = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|rest| rest.strip_suffix("-->"))
        .map(str::trim);
    if let Some(claim) = comment.and_then(|c| c.strip_prefix("run by:")) {
        if let Some((file, name)) = claim.trim().split_once(": ") {
            return Marker::RunBy {
                file: file.trim().to_string(),
                name: name.trim().to_string(),
            };
        }
    }
    match comment.and_then(|c| c.strip_prefix("not run:")) {
        Some(reason) if !reason.trim().is_empty() => Marker::NotRun,
        _ => Marker::None,
    }
}

/// The fenced blocks of `text` (fences may be indented, as inside a list item).
fn blocks(path: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(language) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = lines[i].len() - lines[i].trim_start().len();
        let above = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or_else(|| panic!("{path}:{}: a block that never closes", i + 1));
        let body: Vec<&str> = lines[i + 1..end]
            .iter()
            .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
            .collect();
        found.push(Block {
            place: format!("{path}:{}", i + 1),
            language: language.trim().to_string(),
            marker: above.map_or(Marker::None, |l| marker(l)),
            body: body.join("\n") + "\n",
        });
        i = end + 1;
    }
    found
}

fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|(path, text)| blocks(path, text))
        .collect()
}

/// The block of README.md or docs/ marked `<!-- run by: ...: NAME -->`: the tests run the
/// commands the docs show.
pub fn doc_block(name: &str) -> String {
    all_blocks()
        .into_iter()
        .find(|b| matches!(&b.marker, Marker::RunBy { name: n, .. } if n == name))
        .unwrap_or_else(|| {
            panic!("no block of README.md or docs/ is marked \"run by: ...: {name}\"")
        })
        .body
}

#[test]
fn every_command_block_is_run_by_a_test_or_marked_as_not_run() {
    let mut problems = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for block in all_blocks() {
        let place = &block.place;
        if block.language.is_empty() {
            problems.push(format!(
                "{place}: a block without a language (`text` for output)"
            ));
            continue;
        }
        if let Marker::RunBy { file, name } = &block.marker {
            let test = fs::read_to_string(root().join(file)).unwrap_or_default();
            if !test.contains(&format!("\"{name}\"")) {
                problems.push(format!(
                    "{place}: claimed by {file}, which never names \"{name}\""
                ));
            }
            match claimed.get(name) {
                Some(body) if body != &block.body => {
                    problems.push(format!("{place}: \"{name}\" differs from its other copy"));
                }
                _ => {
                    claimed.insert(name.clone(), block.body.clone());
                }
            }
        }
        if COMMAND_LANGUAGES.contains(&block.language.as_str()) && block.marker == Marker::None {
            problems.push(format!(
                "{place}: a command block with neither <!-- run by: tests/it/FILE.rs: NAME --> \
                 nor <!-- not run: why --> above it"
            ));
        }
    }
    assert!(claimed.len() >= 10, "only {claimed:?} are run");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_marker_check_finds_an_unmarked_block() {
    let text = [
        "x",
        "",
        "```sh",
        "pgpre",
        "```",
        "<!-- not run: no server -->",
        "```bash",
        "ls",
        "```",
        "<!-- run by: tests/it/docs/mod.rs: help -->",
        "  ```sh",
        "  pgpre --help",
        "  ```",
        "```",
        "out",
        "```",
    ]
    .join("\n");
    let found = blocks("t.md", &text);
    let markers: Vec<&Marker> = found.iter().map(|b| &b.marker).collect();
    assert_eq!(
        markers,
        [
            &Marker::None,
            &Marker::NotRun,
            &Marker::RunBy {
                file: "tests/it/docs/mod.rs".into(),
                name: "help".into()
            },
            &Marker::None,
        ]
    );
    assert_eq!(found[2].body, "pgpre --help\n");
    assert_eq!(found[3].language, "");
}

#[test]
fn toml_blocks_are_valid_configuration() {
    let mut checked = 0;
    for block in all_blocks().iter().filter(|b| b.language == "toml") {
        if let Err(e) = Config::parse(&block.body, Path::new(&block.place)) {
            panic!("{}: {e}", block.place);
        }
        checked += 1;
    }
    assert!(checked >= 1);
}

/// Runs one of our binaries with `args`, with an empty environment but a plain PATH.
fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

/// The `backticked` words of a table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Runs a doc block under `bash -euo pipefail` in a fresh directory, the binaries first on PATH.
fn run_block(name: &str, dir: &Path) -> Output {
    bash(&doc_block(name), dir)
}

/// Runs `script` under `bash -euo pipefail` in `dir`, the binaries first on PATH.
fn bash(script: &str, dir: &Path) -> Output {
    let path = format!("{}:/usr/bin:/bin", binary_dir().display());
    Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .output()
        .expect("bash runs")
}

#[test]
fn help_block_runs() {
    let block = doc_block("help");
    for line in block.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [program, flag] = words[..] else {
            panic!("{line:?} is not `PROGRAM --FLAG`");
        };
        let out = run(&binary(program), &[flag]);
        assert!(out.status.success(), "{line}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        match flag {
            "--help" => assert!(
                stdout.contains("Exit codes (the same for every binary):"),
                "{stdout}"
            ),
            "--version" => assert!(stdout.starts_with(&format!("{program} ")), "{stdout}"),
            other => panic!("{line}: {other}"),
        }
    }
}

#[test]
fn config_blocks_run_as_documented() {
    let dir = scratch_dir();
    let bad = run_block("config-unknown-key", dir.path());
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let (text, _) = documents()
        .into_iter()
        .find(|(path, _)| path == "docs/configuration.md")
        .map(|(_, text)| (text, ()))
        .expect("docs/configuration.md");
    let shown = text
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split_once("```"))
        .expect("the error the docs show")
        .0;
    let mut shown_lines = shown.lines();
    let first = shown_lines.next().unwrap_or_default();
    let first = first.strip_suffix(", ...").unwrap_or(first);
    assert!(stderr.starts_with(first), "docs: {shown}\nreal: {stderr}");
    for line in shown_lines {
        assert!(
            stderr.lines().any(|l| l == line),
            "docs: {line}\nreal: {stderr}"
        );
    }

    let written = run_block("config-default", dir.path());
    assert!(written.status.success(), "{written:?}");
    let config = fs::read_to_string(dir.path().join("config.toml")).expect("config.toml written");
    assert_eq!(
        config,
        fs::read_to_string(root().join("config.toml")).unwrap()
    );
    Config::parse(&config, Path::new("config.toml")).expect("the default configuration parses");
}

/// GitHub's anchor of a heading: lower case, spaces to `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn relative_links_lead_to_files_and_headings_that_exist() {
    assert_eq!(
        anchor("Flags (pg_back's, same letters)"),
        "flags-pg_backs-same-letters"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in documents() {
        let dir = root()
            .join(&path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(root);
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split_once(')'))
        {
            let target = target.0;
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                root().join(&path)
            } else {
                dir.join(file)
            };
            checked += 1;
            let Ok(linked) = fs::read_to_string(&file) else {
                problems.push(format!("{path}: {target}: no such file"));
                continue;
            };
            let headings = linked.lines().filter_map(|l| l.strip_prefix('#'));
            let anchors: Vec<String> = headings
                .map(|h| anchor(h.trim_start_matches('#')))
                .collect();
            if !fragment.is_empty() && !anchors.iter().any(|a| a == fragment) {
                problems.push(format!("{path}: {target}: no such heading"));
            }
        }
    }
    assert!(checked >= 20, "{checked} links");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn pg_back_conversion_runs_as_documented() {
    let dir = scratch_dir();
    let pg_back = dir.path().join("pg_back.conf");
    let converted = dir.path().join("pg_back.toml");
    fs::write(
        &pg_back,
        "backup_directory = /var/backups/pg_back\nformat = directory\njobs = 2\n[app]\nformat = custom\n",
    )
    .unwrap();
    let block = doc_block("pg-back-convert");
    let script = block
        .replace("/etc/pg_back/pg_back.conf", &pg_back.display().to_string())
        .replace(
            "/etc/safe-backup/pg_back.toml",
            &converted.display().to_string(),
        );
    assert_ne!(script, block, "the doc's paths changed");
    let out = bash(&script, dir.path());
    assert!(out.status.success(), "{out:?}");
    let toml = fs::read_to_string(&converted).expect("the converted file");
    Config::parse(&toml, &converted).expect("the converted file parses");
    for line in ["format = \"directory\"", "jobs = 2", "[dump.databases.app]"] {
        assert!(toml.lines().any(|l| l == line), "no {line:?} in\n{toml}");
    }
}
