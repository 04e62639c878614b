//! The clone that pgdrill recovers, in a private work directory: overlayfs over DATADIR (root
//! only), a reflink copy or a plain copy. DATADIR, and the tablespaces it links to, are only
//! read; every file pgdrill writes replaces whatever was in the clone, links included, so
//! nothing written can reach outside it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use super::error::DrillError;

/// How to make the clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneMethod {
    /// The cheapest that works: overlay, then reflink, then copy.
    Auto,
    /// overlayfs: DATADIR is the lower layer, writes go to an upper directory (needs root).
    Overlay,
    /// `cp -a --reflink=always`: shares blocks, needs the work directory on DATADIR's file
    /// system (btrfs, XFS with reflink).
    Reflink,
    /// `cp -a --reflink=never`: a full copy.
    Copy,
}

impl CloneMethod {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CloneMethod::Auto => "auto",
            CloneMethod::Overlay => "overlay",
            CloneMethod::Reflink => "reflink",
            CloneMethod::Copy => "copy",
        }
    }
}

/// The OS user who owns the data directory, as whom the server runs.
#[derive(Clone, Debug)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The user name, when the user database knows it (a role name worth trying).
    pub name: Option<String>,
    /// The home directory, for the restore command's environment.
    pub home: Option<PathBuf>,
}

impl Owner {
    /// The owner of `path`.
    pub fn of(path: &Path) -> Result<Owner, DrillError> {
        let meta = fs::metadata(path).map_err(|source| DrillError::input(path, source))?;
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
            .ok()
            .flatten();
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
            name: user.as_ref().map(|u| u.name.clone()),
            home: user.map(|u| u.dir),
        })
    }

    /// Gives `path` (not following a link) to this user when pgdrill runs as root.
    pub fn chown(&self, path: &Path) -> Result<(), DrillError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(|source| DrillError::workspace("chown", path, source))
    }
}

/// The private directories of one drill and what is mounted in them; dropping it unmounts
/// and removes everything (unless kept), so a failure or a signal leaves nothing behind.
#[derive(Debug)]
pub struct Workspace {
    /// Socket directory and server log: short paths under the temporary directory.
    runtime_dir: PathBuf,
    /// Where the clone goes: `runtime_dir`, or a private directory in `--work-dir`.
    clone_dir: PathBuf,
    /// Overlay mount points, unmounted in reverse order.
    mounts: Vec<PathBuf>,
    /// `--keep`: leave everything in place, on every path.
    keep: bool,
    /// Set once cleaned up, so `Drop` does nothing more.
    done: bool,
}

/// Creates a fresh directory `<parent>/pgdrill-<pid>-<n>` with mode 0700, owned by `owner`.
fn private_dir(parent: &Path, owner: &Owner) -> Result<PathBuf, DrillError> {
    for attempt in 0..100 {
        let path = parent.join(format!("pgdrill-{}-{attempt}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                owner.chown(&path)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(DrillError::workspace("create", &path, source)),
        }
    }
    Err(DrillError::workspace(
        "create",
        parent,
        std::io::Error::other("100 names taken"),
    ))
}

/// Running as root, the server runs as `owner`: it must be able to pass through every
/// directory above `dir` (judged by the mode bits, ignoring supplementary groups).
fn check_reachable(dir: &Path, owner: &Owner) -> Result<(), DrillError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            fs::metadata(ancestor).map_err(|e| DrillError::workspace("stat", ancestor, e))?;
        let bit = if meta.uid() == owner.uid {
            0o100
        } else if meta.gid() == owner.gid {
            0o010
        } else {
            0o001
        };
        if meta.mode() & bit == 0 {
            return Err(DrillError::Unreachable {
                path: ancestor.to_path_buf(),
                user: owner.name.clone().unwrap_or_else(|| owner.uid.to_string()),
            });
        }
    }
    Ok(())
}

impl Workspace {
    /// Creates the private directories: the runtime one under `$TMPDIR` (or `/tmp` when that
    /// path is too long for a socket), the clone's in `work_dir` when given.
    pub fn create(
        work_dir: Option<&Path>,
        owner: &Owner,
        keep: bool,
    ) -> Result<Workspace, DrillError> {
        let tmp = std::env::temp_dir();
        let tmp = if tmp.as_os_str().len() > 60 {
            PathBuf::from("/tmp")
        } else {
            tmp
        };
        let runtime_dir = private_dir(&tmp, owner)?;
        check_reachable(&runtime_dir, owner)?;
        let mut workspace = Workspace {
            clone_dir: runtime_dir.clone(),
            runtime_dir,
            mounts: Vec::new(),
            keep,
            done: false,
        };
        if let Some(dir) = work_dir {
            workspace.clone_dir = private_dir(dir, owner)?;
            check_reachable(&workspace.clone_dir, owner)?;
        }
        let socket = workspace.socket_dir();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&socket)
            .map_err(|source| DrillError::workspace("create", &socket, source))?;
        owner.chown(&socket)?;
        Ok(workspace)
    }

    /// The private socket directory (mode 0700, the server user's).
    pub fn socket_dir(&self) -> PathBuf {
        self.runtime_dir.join("socket")
    }

    /// The server's log (its stderr).
    pub fn log_file(&self) -> PathBuf {
        self.runtime_dir.join("server.log")
    }

    /// The clone's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.clone_dir.join("data")
    }

    /// Where the clone of tablespace `oid` goes.
    pub fn tablespace_dir(&self, oid: &str) -> PathBuf {
        self.clone_dir.join("tblspc").join(oid)
    }

    /// The directory that holds the clone (reported by `--keep`).
    pub fn clone_root(&self) -> &Path {
        &self.clone_dir
    }

    /// Clones `source` to `dest` with the first method of `order` that works and returns it;
    /// `notes` collects why a cheaper one was passed over.
    pub async fn clone_tree(
        &mut self,
        order: &[CloneMethod],
        source: &Path,
        dest: &Path,
        owner: &Owner,
        notes: &mut Vec<String>,
    ) -> Result<CloneMethod, DrillError> {
        if let Some(parent) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| DrillError::workspace("create", parent, e))?;
            owner.chown(parent)?;
        }
        let mut reasons = Vec::new();
        for &candidate in order {
            let result = match candidate {
                CloneMethod::Overlay => self.overlay(source, dest, owner),
                CloneMethod::Reflink => match reflink_probe(source, dest) {
                    Ok(()) => copy_tree(source, dest, "always").await,
                    Err(reason) => Err(reason),
                },
                _ => copy_tree(source, dest, "never").await,
            };
            match result {
                Ok(()) => {
                    if !reasons.is_empty() {
                        notes.push(format!(
                            "{}: cloned by {} ({})",
                            source.display(),
                            candidate.as_str(),
                            reasons.join("; ")
                        ));
                    }
                    return Ok(candidate);
                }
                Err(reason) => {
                    let _ = fs::remove_dir_all(dest);
                    reasons.push(format!("{} unavailable: {reason}", candidate.as_str()));
                }
            }
        }
        Err(DrillError::CloneUnavailable {
            method: match order {
                [only] => only.as_str(),
                _ => "auto",
            },
            reason: reasons.join("; "),
        })
    }

    /// Mounts overlayfs at `dest` with `source` as the read-only lower layer.
    fn overlay(&mut self, source: &Path, dest: &Path, owner: &Owner) -> Result<(), String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("mounting overlayfs needs root".into());
        }
        let name = dest
            .strip_prefix(&self.clone_dir)
            .map_err(|_| "the clone is outside the work directory".to_string())?
            .to_string_lossy()
            .replace('/', "-");
        let upper = self.clone_dir.join("overlay").join(format!("{name}.upper"));
        let work = self.clone_dir.join("overlay").join(format!("{name}.work"));
        for path in [source, upper.as_path(), work.as_path()] {
            let text = path.to_string_lossy();
            if text.contains([',', ':', '\\']) {
                return Err(format!(
                    "overlayfs cannot take the path {text:?} (`,` `:` `\\`)"
                ));
            }
        }
        let source_meta = fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
        for dir in [&upper, &work, &dest.to_path_buf()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        // The merged root takes the upper root's owner and mode: make them DATADIR's.
        std::os::unix::fs::chown(&upper, Some(source_meta.uid()), Some(source_meta.gid()))
            .and_then(|()| fs::set_permissions(&upper, source_meta.permissions()))
            .map_err(|e| format!("preparing {}: {e}", upper.display()))?;
        owner.chown(dest).map_err(|e| e.to_string())?;
        let options = format!(
            "lowerdir={},upperdir={},workdir={},volatile",
            source.display(),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            dest,
            Some("overlay"),
            nix::mount::MsFlags::MS_NOATIME,
            Some(options.as_str()),
        )
        .map_err(|errno| format!("mount -t overlay: {errno}"))?;
        self.mounts.push(dest.to_path_buf());
        Ok(())
    }

    /// Unmounts and removes everything; with `keep`, leaves it all in place and returns
    /// notes on how to get rid of it later.
    pub fn finish(mut self) -> Result<Option<Vec<String>>, DrillError> {
        self.done = true;
        if self.keep {
            return Ok(Some(self.kept_notes()));
        }
        self.remove().map(|()| None)
    }

    fn kept_notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "kept: the stopped clone is in {} (socket and server log in {})",
            self.data_dir().display(),
            self.runtime_dir.display()
        )];
        for mount in &self.mounts {
            notes.push(format!("kept mounted: umount {}", mount.display()));
        }
        notes
    }

    fn remove(&mut self) -> Result<(), DrillError> {
        while let Some(mount) = self.mounts.pop() {
            unmount(&mount).map_err(|source| DrillError::workspace("unmount", &mount, source))?;
        }
        for dir in [&self.clone_dir, &self.runtime_dir] {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DrillError::workspace("remove", dir, e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.keep && !self.done {
            for note in self.kept_notes() {
                eprintln!("pgdrill: {note}");
            }
        } else if !self.done {
            if let Err(error) = self.remove() {
                eprintln!("pgdrill: cleaning up: {error}");
            }
        }
    }
}

/// Unmounts, retrying while busy (a server process may still be exiting), then detaches.
fn unmount(path: &Path) -> std::io::Result<()> {
    use nix::mount::{umount2, MntFlags};
    for _ in 0..50 {
        match umount2(path, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    umount2(path, MntFlags::MNT_DETACH).map_err(Into::into)
}

/// Whether a reflink copy from `source` into `dest`'s directory works (one small file).
fn reflink_probe(source: &Path, dest: &Path) -> Result<(), String> {
    let parent = dest.parent().unwrap_or(dest);
    let probe = parent.join(".pgdrill-reflink-probe");
    let output = std::process::Command::new("cp")
        .arg("--reflink=always")
        .arg("--")
        .arg(source.join("PG_VERSION"))
        .arg(&probe)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("running cp: {e}"))?;
    let _ = fs::remove_file(&probe);
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// `cp -a --reflink=<mode> source dest` (a child killed if the drill is cancelled).
async fn copy_tree(source: &Path, dest: &Path, reflink: &str) -> Result<(), String> {
    let output = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(format!("--reflink={reflink}"))
        .arg("--")
        .arg(source)
        .arg(dest)
        .env("LC_ALL", "C")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("running cp: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cp -a: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Writes `contents` at `path` in the clone as a new regular file (mode 0600, the owner's),
/// replacing a file or a link there: a link to the live server's files is never followed.
pub fn replace_file(path: &Path, contents: &[u8], owner: &Owner) -> Result<(), DrillError> {
    remove_entry(path)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| DrillError::workspace("create", path, source))?;
    file.write_all(contents)
        .map_err(|source| DrillError::workspace("write", path, source))?;
    owner.chown(path)
}

/// Removes a file or link from the clone (no error when it is not there).
pub fn remove_entry(path: &Path) -> Result<(), DrillError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(DrillError::workspace("remove", path, e))
        }
        _ => Ok(()),
    }
}

/// Replaces a link in the clone by a new one pointing at `target`.
pub fn replace_link(path: &Path, target: &Path, owner: &Owner) -> Result<(), DrillError> {
    remove_entry(path)?;
    std::os::unix::fs::symlink(target, path)
        .map_err(|source| DrillError::workspace("link", path, source))?;
    owner.chown(path)
}

/// Makes an empty private directory in the clone where a link was.
pub fn replace_with_empty_dir(path: &Path, owner: &Owner) -> Result<(), DrillError> {
    remove_entry(path)?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|source| DrillError::workspace("create", path, source))?;
    owner.chown(path)
}

/// Replaces every link in the clone (but those in `skip`) by a copy of what it points at, so
/// the server writes nothing through a link into the live system. Returns one note per link.
pub async fn materialize_links(
    root: &Path,
    skip: &[PathBuf],
    owner: &Owner,
) -> Result<Vec<String>, DrillError> {
    let mut notes = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| DrillError::workspace("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DrillError::workspace("list", &dir, e))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| DrillError::workspace("stat", &path, e))?;
            if skip.contains(&path) {
                continue;
            }
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).unwrap_or_default();
                let resolved = dir.join(&target);
                let shown = path.strip_prefix(root).unwrap_or(&path).display();
                match fs::metadata(&resolved) {
                    Ok(meta) if meta.is_dir() => {
                        remove_entry(&path)?;
                        copy_tree(&resolved, &path, "auto").await.map_err(|e| {
                            DrillError::workspace("copy", &path, std::io::Error::other(e))
                        })?;
                        pending.push(path.clone());
                        notes.push(format!("{shown}: a link to {}, copied", target.display()));
                    }
                    Ok(_) => {
                        let bytes =
                            fs::read(&resolved).map_err(|e| DrillError::input(&resolved, e))?;
                        replace_file(&path, &bytes, owner)?;
                        notes.push(format!("{shown}: a link to {}, copied", target.display()));
                    }
                    Err(_) => {
                        remove_entry(&path)?;
                        notes.push(format!(
                            "{shown}: a dangling link to {}, removed",
                            target.display()
                        ));
                    }
                }
            }
        }
    }
    Ok(notes)
}

/// The live server that uses `data_dir`, if any: the pid in `postmaster.pid` is running and
/// its working directory is this very directory (a snapshot's stale pid file is not).
pub fn live_postmaster(data_dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = fs::metadata(format!("/proc/{pid}/cwd")).ok()?;
    let dir = fs::metadata(data_dir).ok()?;
    (cwd.dev() == dir.dev() && cwd.ino() == dir.ino()).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            name: None,
            home: None,
        }
    }

    #[test]
    fn replacing_a_link_never_writes_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.conf");
        fs::write(&outside, "live").unwrap();
        let link = dir.path().join("pg_hba.conf");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        replace_file(&link, b"local all all trust\n", &me()).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "live");
        assert_eq!(fs::read_to_string(&link).unwrap(), "local all all trust\n");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[tokio::test]
    async fn links_are_materialized_except_the_skipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("etc");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("a.conf"), "x").unwrap();
        let clone = dir.path().join("clone");
        fs::create_dir_all(clone.join("pg_tblspc")).unwrap();
        std::os::unix::fs::symlink(&outside, clone.join("conf.d")).unwrap();
        std::os::unix::fs::symlink(outside.join("a.conf"), clone.join("b.conf")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", clone.join("gone")).unwrap();
        let ts = clone.join("pg_tblspc").join("16384");
        std::os::unix::fs::symlink(&outside, &ts).unwrap();
        let notes = materialize_links(&clone, std::slice::from_ref(&ts), &me())
            .await
            .unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(fs::symlink_metadata(clone.join("conf.d")).unwrap().is_dir());
        assert_eq!(
            fs::read_to_string(clone.join("conf.d/a.conf")).unwrap(),
            "x"
        );
        assert!(fs::symlink_metadata(clone.join("b.conf"))
            .unwrap()
            .is_file());
        assert!(!clone.join("gone").exists());
        assert!(fs::symlink_metadata(&ts).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_stale_pid_file_is_not_a_live_server() {
        // This process runs, but not in that directory: a snapshot's stale pid file.
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("postmaster.pid");
        fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(live_postmaster(dir.path()), None);
        fs::write(&pid_file, "not a pid\n").unwrap();
        assert_eq!(live_postmaster(dir.path()), None);
    }
}
