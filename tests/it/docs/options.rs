//! The option tables of README.md and docs/ against each binary's `--help` and the
//! configuration parser, and the secret flags pgback refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use safe_backup::config::Config;

use super::{code_spans, documents, run};
use crate::util::binary;

/// Every binary with an option table.
const BINARIES: [&str; 5] = ["pgpre", "pgpost", "pgback", "pgdrill", "pgbase"];

/// One option of a binary's `--help`.
#[derive(Debug, Default)]
struct HelpOption {
    short: Option<char>,
    env: Option<String>,
    config: Option<String>,
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

#[test]
fn the_refused_secret_flags_are_refused_without_showing_the_secret() {
    let (_, text) = documents()
        .into_iter()
        .find(|(path, _)| path == "docs/pgback.md")
        .expect("docs/pgback.md");
    let (_, table) = text
        .split_once("<!-- refused: pgback -->")
        .expect("the refused flags");
    let rows = table.lines().skip(3).take_while(|l| l.starts_with('|'));
    let flags: Vec<String> = rows
        .flat_map(|row| flags_of(row.split('|').nth(1).unwrap_or("")))
        .map(|f| f.0)
        .collect();
    assert_eq!(flags.len(), 6, "{flags:?}");
    for flag in flags {
        let out = run(
            &binary("pgback"),
            &[&format!("--{flag}"), "hunter2-of-docs-rs"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--{flag}: {stderr}");
        assert!(
            stderr.starts_with(&format!("pgback: refusing --{flag}")),
            "{stderr}"
        );
        assert!(
            !stderr.contains("hunter2") && out.stdout.is_empty(),
            "{stderr}"
        );
    }
}
