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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safe_backup::config::Config;

use crate::cluster::scratch_dir;
use crate::util::{binary, binary_dir};

/// The languages of blocks that hold commands.
const COMMAND_LANGUAGES: [&str; 5] = ["sh", "bash", "console", "shell", "diff"];
/// Every binary with an option table.
const BINARIES: [&str; 4] = ["pgpre", "pgpost", "pgback", "pgdrill"];

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
        "<!-- run by: tests/it/docs.rs: help -->",
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
                file: "tests/it/docs.rs".into(),
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

/// One option of a binary's `--help`.
#[derive(Debug, Default)]
struct HelpOption {
    short: Option<char>,
    env: Option<String>,
    config: Option<String>,
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn help(program: &str) -> String {
    let out = run(&binary(program), &["--help"]);
    assert!(out.status.success(), "{program} --help: {out:?}");
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// The text after `[tag: ` up to `;` or `]`, in `text` with its line breaks joined.
fn bracketed(text: &str, tag: &str) -> Option<String> {
    let start = text.find(&format!("[{tag}: "))? + tag.len() + 3;
    let value: String = text[start..]
        .chars()
        .take_while(|c| *c != ';' && *c != ']')
        .collect();
    Some(value.trim_end_matches('=').trim().to_string())
}

/// The options of a `--help` text by long name (`--help` and `--version` left out).
fn help_options(text: &str) -> BTreeMap<String, HelpOption> {
    let mut options = BTreeMap::new();
    let mut current: Option<(String, HelpOption, String)> = None;
    let mut finish = |entry: Option<(String, HelpOption, String)>| {
        if let Some((long, mut option, words)) = entry {
            let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
            option.env = bracketed(&words, "env");
            option.config = bracketed(&words, "config");
            options.insert(long, option);
        }
    };
    for line in text.lines().take_while(|l| !l.starts_with("Exit codes")) {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent <= 6 && trimmed.starts_with('-') {
            finish(current.take());
            let mut short = None;
            let mut rest = trimmed;
            if let Some(after) = trimmed.strip_prefix('-').filter(|a| !a.starts_with('-')) {
                short = after.chars().next();
                rest = after.get(1..).unwrap_or("").trim_start_matches(", ");
            }
            if let Some(long) = rest.strip_prefix("--") {
                let name: String = long
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                let option = HelpOption {
                    short,
                    ..HelpOption::default()
                };
                current = Some((name, option, String::new()));
            }
        } else if let Some((_, _, words)) = current.as_mut() {
            words.push(' ');
            words.push_str(line);
        }
    }
    finish(current);
    options.remove("help");
    options.remove("version");
    options
}

/// The `backticked` words of a table cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// One row of an option table.
#[derive(Debug)]
struct OptionRow {
    place: String,
    binaries: Vec<String>,
    /// (long name, short letter when written `-X/--long`).
    flags: Vec<(String, Option<char>)>,
    keys: Vec<String>,
    env: Vec<String>,
}

fn flags_of(cell: &str) -> Vec<(String, Option<char>)> {
    code_spans(cell)
        .into_iter()
        .filter_map(|span| {
            let word = span.split([' ', '=']).next().unwrap_or("");
            match word.split_once('/') {
                Some((short, long)) if short.len() == 2 && short.starts_with('-') => {
                    Some((long.strip_prefix("--")?.to_string(), short.chars().nth(1)))
                }
                _ => Some((word.strip_prefix("--")?.to_string(), None)),
            }
        })
        .collect()
}

/// The rows of every table below `<!-- options: BINARY... -->` in README.md and docs/.
fn option_rows() -> Vec<OptionRow> {
    let mut rows = Vec::new();
    for (path, text) in documents() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(binaries) = line
                .trim()
                .strip_prefix("<!-- options:")
                .and_then(|rest| rest.strip_suffix("-->"))
            else {
                continue;
            };
            let binaries: Vec<String> = binaries.split_whitespace().map(String::from).collect();
            let table: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.starts_with('|'))
                .copied()
                .collect();
            let cells = |row: &str| -> Vec<String> {
                let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
                let cells = inner.replace("\\|", "\u{1}");
                cells
                    .split('|')
                    .map(|c| c.trim().replace('\u{1}', "|"))
                    .collect()
            };
            let header = cells(
                table
                    .first()
                    .unwrap_or_else(|| panic!("{path}:{}: no table", i + 1)),
            );
            let column = |name: &str| {
                header
                    .iter()
                    .position(|h| h == name)
                    .unwrap_or_else(|| panic!("{path}:{}: no column {name:?} in {header:?}", i + 2))
            };
            let (flag, key, env) = (column("flag"), column("config key"), column("environment"));
            for (n, row) in table.iter().enumerate().skip(2) {
                let row_cells = cells(row);
                let cell = |c: usize| row_cells.get(c).map_or("", String::as_str);
                rows.push(OptionRow {
                    place: format!("{path}:{}", i + 2 + n),
                    binaries: binaries.clone(),
                    flags: flags_of(cell(flag)),
                    keys: code_spans(cell(key))
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    env: code_spans(cell(env))
                        .into_iter()
                        .map(String::from)
                        .collect(),
                });
            }
        }
    }
    rows
}

#[test]
fn option_tables_list_exactly_the_flags_of_every_binarys_help() {
    let rows = option_rows();
    let mut problems = Vec::new();
    for program in BINARIES {
        let options = help_options(&help(program));
        assert!(options.len() >= 10, "{program} --help: {options:?}");
        let mine: Vec<&OptionRow> = rows
            .iter()
            .filter(|r| r.binaries.iter().any(|b| b == program))
            .collect();
        let mut documented = BTreeSet::new();
        for row in &mine {
            for (long, short) in &row.flags {
                documented.insert(long.clone());
                let Some(option) = options.get(long) else {
                    problems.push(format!("{}: {program} has no --{long}", row.place));
                    continue;
                };
                if short.is_some() && *short != option.short {
                    problems.push(format!(
                        "{}: --{long} of {program} is -{:?}",
                        row.place, option.short
                    ));
                }
                if let Some(env) = &option.env {
                    if !row.env.contains(env) {
                        problems.push(format!(
                            "{}: --{long}'s variable {env} is missing",
                            row.place
                        ));
                    }
                }
                if let Some(key) = &option.config {
                    if !row.keys.contains(key) {
                        problems.push(format!("{}: --{long}'s key {key} is missing", row.place));
                    }
                }
            }
            for env in &row.env {
                let of_row = row.flags.iter().filter_map(|(long, _)| options.get(long));
                if !of_row.clone().any(|o| o.env.as_ref() == Some(env)) {
                    problems.push(format!(
                        "{}: {env} is no variable of these {program} flags",
                        row.place
                    ));
                }
            }
        }
        for long in options.keys().filter(|long| !documented.contains(*long)) {
            problems.push(format!("no option table of {program} lists --{long}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_help_parser_reads_flags_variables_and_keys() {
    let text = [
        "Usage: x",
        "",
        "Options:",
        "  -c, --config <FILE>",
        "          Config file",
        "          ",
        "          [env: SAFE_BACKUP_CONFIG=]",
        "",
        "      --encrypt[=<BOOL>]",
        "          Encrypt [config: dump.encryption.encrypt] [env:",
        "          PGBACK_ENCRYPT]",
        "",
        "      --help",
        "          Print help",
        "",
        "Exit codes (the same for every binary):",
        "   0  --not-a-flag",
    ]
    .join("\n");
    let options = help_options(&text);
    assert_eq!(options.keys().collect::<Vec<_>>(), ["config", "encrypt"]);
    assert_eq!(options["config"].short, Some('c'));
    assert_eq!(options["config"].env.as_deref(), Some("SAFE_BACKUP_CONFIG"));
    assert_eq!(options["encrypt"].short, None);
    assert_eq!(options["encrypt"].env.as_deref(), Some("PGBACK_ENCRYPT"));
    assert_eq!(
        options["encrypt"].config.as_deref(),
        Some("dump.encryption.encrypt")
    );
    assert_eq!(
        flags_of("`-t/--with-templates`, `--without-templates`, `DBNAME`"),
        [
            ("with-templates".to_string(), Some('t')),
            ("without-templates".to_string(), None)
        ]
    );
}

/// Whether the configuration has `key` (`section.sub.name`): a value of any type set there
/// is refused for its type or value, never as an unknown field.
fn config_has(key: &str) -> bool {
    let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
    let text = format!("[{section}]\n{name} = 0\n");
    match Config::parse(&text, Path::new("probe.toml")) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown field"),
    }
}

/// The fields the parser accepts in `[section]` (`""`: the top level), from its own error for
/// an unknown one: "unknown field `x`, expected one of `a`, `b`, ..." (or "expected `a`").
fn parser_fields(section: &str) -> Vec<String> {
    let header = if section.is_empty() {
        String::new()
    } else {
        format!("[{section}]\n")
    };
    let text = format!("{header}no_such_key_of_docs_rs = 0\n");
    let error = match Config::parse(&text, Path::new("probe.toml")) {
        Ok(_) => panic!("[{section}] took an unknown key"),
        Err(e) => e.to_string(),
    };
    let (_, list) = error
        .split_once("unknown field `no_such_key_of_docs_rs`, expected ")
        .unwrap_or_else(|| panic!("[{section}]: {error}"));
    code_spans(&format!(" {list}"))
        .into_iter()
        .map(String::from)
        .collect()
}

/// Every key the parser accepts, as `section.name`, found table by table from the top (the
/// per-database tables of `[dump.databases."name"]` left out: they repeat `[dump]`'s keys).
fn parser_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut sections = vec![String::new()];
    while let Some(section) = sections.pop() {
        for field in parser_fields(&section) {
            let key = if section.is_empty() {
                field
            } else {
                format!("{section}.{field}")
            };
            let probe = format!("[{key}]\nno_such_key_of_docs_rs = 0\n");
            let error = Config::parse(&probe, Path::new("probe.toml")).err();
            let is_table = error.is_some_and(|e| e.to_string().contains("unknown field"));
            match key.as_str() {
                "dump.databases" => {}
                _ if is_table => sections.push(key),
                _ => keys.push(key),
            }
        }
    }
    keys
}

#[test]
fn every_documented_key_exists_and_every_key_is_documented() {
    assert!(config_has("dump.remote.s3_bucket") && config_has("backup.label"));
    assert!(!config_has("backup.output_dir") && !config_has("dump.jobz"));
    let documented: BTreeSet<String> = option_rows().into_iter().flat_map(|r| r.keys).collect();
    let missing: Vec<&String> = documented.iter().filter(|k| !config_has(k)).collect();
    assert!(
        missing.is_empty(),
        "documented keys the configuration does not have: {missing:?}"
    );
    let keys = parser_keys();
    for key in [
        "connection.conninfo",
        "backup.name",
        "dump.jobs",
        "dump.remote.sftp_password",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    let undocumented: Vec<&String> = keys.iter().filter(|k| !documented.contains(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "keys no option table lists: {undocumented:?}"
    );
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
