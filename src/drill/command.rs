//! `pgdrill`'s command line and the one call its binary makes: the clap definition (here, so
//! a man-page generator can reach it), its validation into a [`DrillRequest`], and the run
//! from it to an exit code (the report printed, the metrics file written).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};

use super::{run, CloneMethod, DrillRequest, WalSource};
use crate::exit::{init_logging, ExitStatus};
use crate::metrics::RunMetrics;

/// Prove that a snapshot or copy of a PostgreSQL data directory restores.
///
/// Clones DATADIR (never writing it), puts the backup's backup_label (and tablespace_map)
/// into the clone, recovers it from the WAL archive with a throwaway server that has no TCP
/// listener, no archiving and no replication, stops at the first consistent point, promotes,
/// runs amcheck on every database (pg_amcheck on 14+, bt_index_check on 10-13), the --sql
/// checks and the --exec command, then stops the server and removes the clone.
#[derive(Parser, Debug)]
#[command(
    name = "pgdrill",
    version,
    after_help = crate::exit::exit_codes_help(),
    group(clap::ArgGroup::new("wal").args(["wal_archive", "restore_command"]))
)]
pub struct DrillArgs {
    /// The snapshot or copy of the data directory, or the directory of a pgbase -F t backup
    /// (base.tar[.gz|.lz4|.zst][.age], pg_wal.tar...); read-only is fine; never written
    #[arg(value_name = "DATADIR")]
    pub data_dir: PathBuf,

    /// The backup's backup_label, e.g. what `pgpost --output-dir` wrote [default:
    /// DATADIR/backup_label]
    #[arg(long, value_name = "FILE")]
    pub backup_label: Option<PathBuf>,

    /// The backup's tablespace_map [default: DATADIR/tablespace_map when there is one]
    #[arg(long, value_name = "FILE")]
    pub tablespace_map: Option<PathBuf>,

    /// A tablespace recorded at OLDDIR has its snapshot at NEWDIR (`\=` for `=` in a path)
    #[arg(short = 'T', long = "tablespace-mapping", value_name = "OLDDIR=NEWDIR", value_parser = parse_mapping)]
    pub tablespace_mappings: Vec<(PathBuf, PathBuf)>,

    /// Directory of archived WAL segments (the restore command becomes `cp DIR/%f %p`)
    #[arg(long, value_name = "DIR")]
    pub wal_archive: Option<PathBuf>,

    /// The restore_command to fetch WAL with (%f, %p as PostgreSQL expands them)
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,

    /// Identity file (AGE-SECRET-KEY-1..., mode 0600) of an encrypted tar backup; without it,
    /// the passphrase of PGBK_CIPHER_PASS
    #[arg(long, env = "PGDRILL_CIPHER_IDENTITY", value_name = "FILE")]
    pub cipher_identity: Option<PathBuf>,

    /// Directory of the `postgres` binary of DATADIR's major version [default:
    /// /usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin, pg_config --bindir, PATH]
    #[arg(long, value_name = "DIR")]
    pub pg_bindir: Option<PathBuf>,

    /// How to clone: overlay (overlayfs, root), reflink (cp --reflink=always, needs
    /// --work-dir on DATADIR's file system), copy; auto takes the first that works
    #[arg(long, value_enum, default_value_t = CloneMethod::Auto)]
    pub clone: CloneMethod,

    /// Where the clone goes [default: a private directory under $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// A query that must return true (one row, first column true); repeatable
    #[arg(long, value_name = "QUERY")]
    pub sql: Vec<String>,

    /// Database for --sql, and PGDATABASE of --exec
    #[arg(short = 'd', long, value_name = "DBNAME", default_value = "postgres")]
    pub dbname: String,

    /// Keep the stopped clone (and its overlay mount) for a look afterwards
    #[arg(long)]
    pub keep: bool,

    /// Seconds the clone may take to become consistent; 0 = no limit
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub timeout: u64,

    /// Print the report as one JSON document
    #[arg(long)]
    pub json: bool,

    /// Write the Prometheus metrics of this drill (textfile-collector format: times,
    /// outcome) to FILE when it ends, failed or not; replaced atomically
    #[arg(long, env = "PGDRILL_METRICS_FILE", value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Log lines as text or json (one object per line)
    #[arg(
        long,
        env = "PGDRILL_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: crate::exit::LogFormat,

    /// Run the command after `--` against the recovered clone (no shell; PGHOST, PGPORT,
    /// PGUSER, PGDATABASE point at it) before it is stopped; its failure fails the drill
    #[arg(long, requires = "command")]
    pub exec: bool,

    /// The --exec command and its arguments
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `OLD=NEW`, both absolute; `\=` is a `=` inside a path.
fn parse_mapping(text: &str) -> Result<(PathBuf, PathBuf), String> {
    let mut old = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'=') => old.push(chars.next().unwrap_or('=')),
            '=' => {
                let new: String = chars.collect::<String>().replace("\\=", "=");
                let (old, new) = (PathBuf::from(old), PathBuf::from(new));
                if !old.is_absolute() || !new.is_absolute() {
                    return Err("both directories must be absolute paths".into());
                }
                return Ok((old, new));
            }
            c => old.push(c),
        }
    }
    Err("expected OLDDIR=NEWDIR".into())
}

impl DrillArgs {
    /// The validated request; a bad combination is a clap usage error (exit 2).
    pub fn into_request(self) -> Result<DrillRequest, clap::Error> {
        let usage = |message: &str| {
            DrillArgs::command().error(clap::error::ErrorKind::ArgumentConflict, message)
        };
        if !self.exec && !self.command.is_empty() {
            return Err(usage("a command after `--` needs --exec"));
        }
        let tar_backup = super::tar_input::is_tar_backup(&self.data_dir);
        let wal = match (self.wal_archive, self.restore_command) {
            (Some(dir), None) => {
                if !dir.is_dir() {
                    return Err(usage(&format!(
                        "--wal-archive {}: not a directory",
                        dir.display()
                    )));
                }
                Some(WalSource::Archive(std::path::absolute(&dir).unwrap_or(dir)))
            }
            (None, Some(command)) => Some(WalSource::Command(command)),
            (None, None) if tar_backup => None,
            _ => return Err(usage("give one of --wal-archive and --restore-command")),
        };
        Ok(DrillRequest {
            data_dir: std::path::absolute(&self.data_dir).unwrap_or(self.data_dir),
            backup_label: self.backup_label,
            tablespace_map: self.tablespace_map,
            tablespace_mappings: self.tablespace_mappings,
            wal,
            cipher_identity: self.cipher_identity,
            pg_bindir: self.pg_bindir,
            clone: self.clone,
            work_dir: self.work_dir,
            sql: self.sql,
            dbname: self.dbname,
            keep: self.keep,
            timeout: (self.timeout > 0).then(|| Duration::from_secs(self.timeout)),
            exec: self.exec.then_some(self.command),
        })
    }
}

/// Runs the drill the command line asks for: prints the report (text or `--json`) on stdout
/// and, when it failed, one line naming why (and a `hint:`) on stderr; writes the metrics
/// file; the exit code is the report's.
pub fn run_pgdrill(args: DrillArgs) -> ExitCode {
    let json = args.json;
    let metrics_file = args.metrics_file.clone();
    init_logging(0, args.log_format);
    let metrics = RunMetrics::new("pgdrill", std::time::SystemTime::now());
    let request = match args.into_request() {
        Ok(request) => request,
        Err(error) => error.exit(),
    };
    let report = run(&request);
    let metrics_at_end = |code: u8| metrics.write_at_end("pgdrill", metrics_file.as_deref(), code);
    let text = if json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    let mut stdout = std::io::stdout().lock();
    let printed = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Some(error) = &report.error {
        eprintln!("pgdrill: {error}");
        if let Some(hint) = &report.hint {
            eprintln!("hint: {hint}");
        }
    }
    if let Err(error) = printed {
        eprintln!("pgdrill: cannot write the report to standard output: {error}");
        if report.exit_code == 0 {
            let status = ExitStatus::Output;
            metrics_at_end(status.code());
            return status.into();
        }
    }
    metrics_at_end(report.exit_code);
    ExitCode::from(report.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse() {
        assert_eq!(
            parse_mapping("/srv/ts=/snap/ts").unwrap(),
            (PathBuf::from("/srv/ts"), PathBuf::from("/snap/ts"))
        );
        assert_eq!(
            parse_mapping("/a\\=b=/c\\=d").unwrap(),
            (PathBuf::from("/a=b"), PathBuf::from("/c=d"))
        );
        assert!(parse_mapping("/a").is_err());
        assert!(parse_mapping("rel=/b").is_err());
    }

    #[test]
    fn the_command_line_parses_into_a_request() {
        let archive = std::env::temp_dir();
        let args = DrillArgs::try_parse_from([
            "pgdrill",
            "/snap/data",
            "--wal-archive",
            archive.to_str().unwrap(),
            "--sql",
            "SELECT true",
            "--exec",
            "--",
            "pgback",
            "-b",
            "/dumps",
        ])
        .unwrap();
        let request = args.into_request().unwrap();
        assert_eq!(request.exec.unwrap(), ["pgback", "-b", "/dumps"]);
        assert_eq!(request.wal, Some(WalSource::Archive(archive)));
        assert_eq!(request.timeout, Some(Duration::from_secs(3600)));
        let no_wal = DrillArgs::try_parse_from(["pgdrill", "/snap/data"]).unwrap();
        assert!(no_wal.into_request().is_err());
        assert!(DrillArgs::try_parse_from([
            "pgdrill",
            "/d",
            "--wal-archive",
            "/a",
            "--restore-command",
            "x"
        ])
        .is_err());
        assert!(
            DrillArgs::try_parse_from(["pgdrill", "/d", "--restore-command", "x", "--exec"])
                .is_err()
        );
        DrillArgs::command().debug_assert();
    }
}
