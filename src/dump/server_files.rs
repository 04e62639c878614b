//! The server-level files: the globals (`pg_dumpall -g`, or pgback's own with `--native`), the settings applied from the
//! configuration files, and the files named by `hba_file` and `ident_file`. What cannot be read
//! is a warning; what cannot be written fails the run. With `--encrypt` each is streamed into
//! its `.age` file.

use std::path::Path;

use super::catalog::{self, FileSetting, ServerInfo};
use super::context::{RunContext, ToolOutput};
use super::encrypt::{run_tool, write_small, Encryption};
use super::globals::{globals_script, read_globals};
use super::output::{self, WrittenFile};
use super::report::{DumpError, RunReport};
use super::tools::pg_dumpall_args;
use crate::naming::{backup_dir, dump_path, CONFIG_FILES, GLOBALS, SETTINGS};
use crate::process::ChildName;
use crate::server::quote_literal;

/// Writes every server-level file, recording the outcome in `report`.
pub async fn save_server_files(
    ctx: &RunContext,
    client: &tokio_postgres::Client,
    server: &ServerInfo,
    report: &mut RunReport,
    encryption: Option<&Encryption>,
) {
    let globals = match ctx.dump.native {
        true => save_native_globals(ctx, client, server, encryption).await,
        false => save_globals(ctx, server.superuser, encryption).await,
    };
    if let Err(e) = &globals {
        tracing::error!("[{GLOBALS}] {e}");
    }
    record(report, GLOBALS, globals);
    let mut texts: Vec<(&str, Result<String, String>)> = Vec::new();
    if let Some(settings) = catalog::file_settings(client, server.version).await {
        let text = settings
            .map(|s| settings_text(&s))
            .map_err(|e| e.to_string());
        texts.push((SETTINGS, text));
    }
    for setting in CONFIG_FILES {
        let text = catalog::server_file(client, setting)
            .await
            .map(|file| {
                format!(
                    "# path: {}\n{}",
                    file.path,
                    file.contents.unwrap_or_default()
                )
            })
            .map_err(|e| e.to_string());
        texts.push((setting, text));
    }
    for (prefix, text) in texts {
        match text {
            Ok(text) => {
                let written = save_text(ctx, prefix, &text, encryption).await;
                record(report, prefix, written);
            }
            Err(e) => report.warn(format!("{prefix} not saved: {e}")),
        }
    }
}

fn record(report: &mut RunReport, prefix: &str, written: Result<Vec<WrittenFile>, DumpError>) {
    match written {
        Ok(file) => report.server_files.extend(file),
        Err(e) => report.server_errors.push(format!("{prefix}: {e}")),
    }
}

/// `pg_globals_<stamp>.sql`: roles and tablespaces, without role passwords unless asked for
/// and readable (superuser).
async fn save_globals(
    ctx: &RunContext,
    superuser: bool,
    encryption: Option<&Encryption>,
) -> Result<Vec<WrittenFile>, DumpError> {
    let base = Path::new(&ctx.dump.backup_directory);
    let path = dump_path(base, GLOBALS, &ctx.stamp(), "sql");
    let no_passwords = !superuser || !ctx.dump.with_role_passwords;
    let tools = ctx.tools()?;
    let mut command = ctx.command(&tools.pg_dumpall, &ctx.conn.dbname, None);
    command.args(pg_dumpall_args(
        &ctx.conn.dbname,
        no_passwords,
        tools.version,
    ));
    output::ensure_dir(&backup_dir(base, GLOBALS))?;
    let name = ChildName {
        program: "pg_dumpall",
        label: GLOBALS,
    };
    let out = ToolOutput {
        path: &path,
        checksum: ctx.dump.checksum_algorithm,
        directory: false,
    };
    run_tool(ctx, encryption, command, name, out, 1).await
}

/// `--native`: `pg_globals_<stamp>.sql` written by pgback itself, with the role passwords
/// under the same rule as pg_dumpall's (asked for, and readable: superuser).
async fn save_native_globals(
    ctx: &RunContext,
    client: &tokio_postgres::Client,
    server: &ServerInfo,
    encryption: Option<&Encryption>,
) -> Result<Vec<WrittenFile>, DumpError> {
    // The stamp first, before any await: the globals file opens the dump set, so no database
    // of the run may take an earlier stamp (its dump would fall out of the set).
    let stamp = ctx.stamp();
    let with_passwords = server.superuser && ctx.dump.with_role_passwords;
    let globals = read_globals(client, server.version, with_passwords)
        .await
        .map_err(|e| DumpError::Catalog(e.to_string()))?;
    let script = globals_script(&globals).map_err(|e| DumpError::Catalog(e.to_string()))?;
    let base = Path::new(&ctx.dump.backup_directory);
    let path = dump_path(base, GLOBALS, &stamp, "sql");
    output::ensure_dir(&backup_dir(base, GLOBALS))?;
    tracing::info!(
        "[{GLOBALS}] written natively: {} role(s), {} membership(s), {} tablespace(s)",
        globals.roles.len(),
        globals.memberships.len(),
        globals.tablespaces.len()
    );
    let checksum = ctx.dump.checksum_algorithm;
    Ok(write_small(ctx, encryption, &path, script.as_bytes(), checksum).await?)
}

/// `pg_settings_<stamp>.out`: one `name = 'value'` line per applied setting.
fn settings_text(settings: &[FileSetting]) -> String {
    settings
        .iter()
        .map(|s| {
            format!(
                "{} = {}\n",
                s.name,
                quote_literal(s.value.as_deref().unwrap_or_default())
            )
        })
        .collect()
}

/// `<prefix>_<stamp>.out` holding `text`.
async fn save_text(
    ctx: &RunContext,
    prefix: &str,
    text: &str,
    encryption: Option<&Encryption>,
) -> Result<Vec<WrittenFile>, DumpError> {
    let base = Path::new(&ctx.dump.backup_directory);
    let path = dump_path(base, prefix, &ctx.stamp(), "out");
    output::ensure_dir(&backup_dir(base, prefix))?;
    let checksum = ctx.dump.checksum_algorithm;
    Ok(write_small(ctx, encryption, &path, text.as_bytes(), checksum).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_name_equals_literal_lines() {
        let settings = [
            FileSetting {
                name: "work_mem".into(),
                value: Some("64MB".into()),
            },
            FileSetting {
                name: "search_path".into(),
                value: Some("\"$user\", public's".into()),
            },
            FileSetting {
                name: "hidden".into(),
                value: None,
            },
        ];
        assert_eq!(
            settings_text(&settings),
            "work_mem = '64MB'\nsearch_path = '\"$user\", public''s'\nhidden = ''\n"
        );
    }
}
