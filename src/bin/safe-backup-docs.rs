//! `safe-backup-docs OUT_DIR`: the man pages and shell completions of every binary, generated from their clap definitions (for scripts/package; never installed).
//!
//! Writes `OUT_DIR/man/NAME.1` (clap_mangen) and `OUT_DIR/completions/{NAME.bash,_NAME,NAME.fish}`
//! (clap_complete) for pgpre, pgpost, pgback, pgdrill and pgbase. Built only with `--features docs`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Command, CommandFactory as _};
use clap_complete::Shell;
use safe_backup::args::{Pgpost, Pgpre};
use safe_backup::base::PgbaseArgs;
use safe_backup::drill::command::DrillArgs;
use safe_backup::dump::command::PgbackArgs;

/// Every installed binary's command, named as its binary.
fn commands() -> [Command; 5] {
    [
        Pgpre::command(),
        Pgpost::command(),
        PgbackArgs::command(),
        DrillArgs::command(),
        PgbaseArgs::command(),
    ]
}

fn write_man_page(command: &Command, dir: &Path) -> anyhow::Result<PathBuf> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .section("1")
        .manual("safe-backup")
        .source(concat!("safe-backup ", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    let path = dir.join(format!("{}.1", command.get_name()));
    fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: safe-backup-docs OUT_DIR");
    };
    let out = PathBuf::from(out);
    let (man_dir, completion_dir) = (out.join("man"), out.join("completions"));
    for dir in [&man_dir, &completion_dir] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for mut command in commands() {
        command.build();
        let name = command.get_name().to_owned();
        println!("{}", write_man_page(&command, &man_dir)?.display());
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = clap_complete::generate_to(shell, &mut command, &name, &completion_dir)
                .with_context(|| format!("cannot write the {shell} completion of {name}"))?;
            println!("{}", path.display());
        }
    }
    Ok(())
}
