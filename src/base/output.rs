//! Where the server's archives go: [`TarFiles`] (`-F t`: each archive a file, hashed while
//! written, with pgback's checksum file beside it) or [`PlainTree`] (`-F p`: each archive
//! unpacked, the main one into `-D`, tablespaces into their `-T` targets).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

use crate::base::error::BaseError;
use crate::base::tar::{Entry, EntryKind, TarParser, TarVisitor, BLOCK};
use crate::checksum::{checksum_line, write_checksum_file, ChecksumWriter};
use crate::compress::{Compressor, Method};
use crate::crypt::EncryptKey;
use crate::dump::{FinalFiles, WrittenFile};
use crate::files::FileOptions;
use crate::values::ChecksumAlgorithm;

/// Mode of the files pgbase writes itself.
const FILE_MODE: u32 = 0o600;

/// How pgbase's own files are written: compressed (`-Z client-...`), encrypted (`--encrypt`),
/// then hashed as written, as pgback hashes its `.age` files.
#[derive(Clone, Debug)]
pub struct Packing {
    /// The checksum files' algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// Client-side compression: the method and its level (`None` for its default).
    pub compress: Option<(Method, Option<i32>)>,
    /// The age key, with `--encrypt`.
    pub key: Option<EncryptKey>,
    /// Where each finished file (and its checksum file) is reported: `--upload`'s queue.
    pub finals: FinalFiles,
}

impl Packing {
    /// Files written as they come, hashed.
    pub fn hashed(algorithm: ChecksumAlgorithm) -> Packing {
        Packing {
            algorithm,
            compress: None,
            key: None,
            finals: FinalFiles::default(),
        }
    }

    /// The same without compression (for the manifest, and archives the server compressed).
    pub fn uncompressed(&self) -> Packing {
        Packing {
            compress: None,
            ..self.clone()
        }
    }

    /// The name of the file holding `name` (`base.tar` becomes `base.tar.zst.age`).
    pub fn file_name(&self, name: &str) -> String {
        let suffix = self.compress.map_or("", |(method, _)| method.suffix());
        let sealed = if self.key.is_some() { ".age" } else { "" };
        format!("{name}{suffix}{sealed}")
    }
}

/// The age layer: ciphertext into `W`, or plaintext through.
enum Sealed<W: io::Write> {
    Clear(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: io::Write> Sealed<W> {
    fn new(inner: W, key: Option<&EncryptKey>) -> io::Result<Sealed<W>> {
        Ok(match key {
            None => Sealed::Clear(inner),
            Some(key) => Sealed::Age(
                key.encryptor()
                    .map_err(io::Error::other)?
                    .wrap_output(inner)?,
            ),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Clear(inner) => Ok(inner),
            Sealed::Age(writer) => writer.finish(),
        }
    }
}

impl<W: io::Write> io::Write for Sealed<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Clear(inner) => inner.write(bytes),
            Sealed::Age(writer) => writer.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Clear(inner) => inner.flush(),
            Sealed::Age(writer) => writer.flush(),
        }
    }
}

/// A file written, compressed, encrypted and hashed on the way: the checksum is of the bytes
/// on disk (the ciphertext when encrypted).
pub struct HashedFile {
    path: PathBuf,
    writer: Compressor<Sealed<ChecksumWriter<BufWriter<File>>>>,
    algorithm: ChecksumAlgorithm,
    finals: FinalFiles,
}

impl HashedFile {
    /// Creates `path` (mode 0600; it must not exist), uncompressed.
    pub fn create(path: PathBuf, algorithm: ChecksumAlgorithm) -> Result<HashedFile, BaseError> {
        HashedFile::packed(path, &Packing::hashed(algorithm))
    }

    /// Creates `path` (mode 0600; it must not exist) written as `packing` says. `path` is the
    /// file's final name ([`Packing::file_name`]).
    pub fn packed(path: PathBuf, packing: &Packing) -> Result<HashedFile, BaseError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(BaseError::output(&path))?;
        let hashed = ChecksumWriter::new(
            BufWriter::with_capacity(256 * 1024, file),
            packing.algorithm,
        );
        let writer = Sealed::new(hashed, packing.key.as_ref())
            .and_then(|sealed| Compressor::new(sealed, packing.compress))
            .map_err(BaseError::output(&path))?;
        Ok(HashedFile {
            writer,
            path,
            algorithm: packing.algorithm,
            finals: packing.finals.clone(),
        })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BaseError> {
        self.writer
            .write_all(bytes)
            .map_err(BaseError::output(&self.path))
    }

    /// Flushes, fsyncs and writes the checksum file (`<name>.<algorithm>`); then both are
    /// final, and reported to the packing's [`FinalFiles`] (queued for upload).
    pub fn finish(self) -> Result<u64, BaseError> {
        let hashed = self
            .writer
            .finish()
            .and_then(Sealed::finish)
            .map_err(BaseError::output(&self.path))?;
        let (buffered, digest, bytes) = hashed.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| BaseError::output(&self.path)(e.into_error()))?;
        file.sync_all().map_err(BaseError::output(&self.path))?;
        let mut checksum_path = None;
        if let Some(hex) = digest {
            let name = self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let options = FileOptions {
                mode: Some(FILE_MODE),
                adopt_dir_owner: false,
            };
            checksum_path = Some(
                write_checksum_file(
                    &self.path,
                    self.algorithm,
                    &checksum_line(&hex, &name),
                    options,
                )
                .map_err(|(path, source)| BaseError::Output { path, source })?,
            );
        }
        self.finals.submit(&[WrittenFile {
            path: self.path,
            checksum_path,
            bytes,
        }]);
        Ok(bytes)
    }
}

/// Counts nothing and keeps nothing: the parser run over a tar file only to find its end.
struct Skim;

impl TarVisitor for Skim {
    fn entry(&mut self, _: &Entry) -> io::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn end_entry(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `-F t`: one file per archive. An archive the server compressed (`-Z server-...`) is
/// written as it comes; an uncompressed one is followed by the tar parser, to be completed.
pub struct TarFiles {
    dir: PathBuf,
    packing: Packing,
    current: Option<(String, HashedFile, Option<TarParser>)>,
}

impl TarFiles {
    /// Tar files in `dir`, written as `packing` says.
    pub fn new(dir: &Path, packing: Packing) -> TarFiles {
        TarFiles {
            dir: dir.to_path_buf(),
            packing,
            current: None,
        }
    }

    /// Starts the archive `name` (`base.tar`, `<oid>.tar`; `base.tar.gz` ... when the server
    /// compresses).
    pub fn begin(&mut self, name: &str) -> Result<(), BaseError> {
        self.end()?;
        check_archive_name(name)?;
        let parser = name.ends_with(".tar").then(TarParser::new);
        let packing = match parser {
            Some(_) => self.packing.clone(),
            None => self.packing.uncompressed(),
        };
        let file = HashedFile::packed(self.dir.join(packing.file_name(name)), &packing)?;
        self.current = Some((name.to_owned(), file, parser));
        Ok(())
    }

    /// Bytes of the current archive.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(), BaseError> {
        let (name, file, parser) = self
            .current
            .as_mut()
            .ok_or_else(|| BaseError::Stream("archive data before any archive".to_owned()))?;
        if let Some(parser) = parser {
            parser
                .feed(bytes, &mut Skim)
                .map_err(|source| BaseError::Tar {
                    archive: name.clone(),
                    source,
                })?;
        }
        file.write(bytes)
    }

    /// Ends the current archive: adds the two zero blocks older servers leave out.
    pub fn end(&mut self) -> Result<(), BaseError> {
        if let Some((name, mut file, parser)) = self.current.take() {
            if let Some(parser) = parser {
                if !parser.at_boundary() {
                    return Err(BaseError::Stream(format!("{name} ends inside an entry")));
                }
                if !parser.ended() {
                    file.write(&[0u8; 2 * BLOCK])?;
                }
            }
            file.finish()?;
        }
        Ok(())
    }
}

/// `-F p`: archives unpacked.
pub struct PlainTree {
    dir: PathBuf,
    mapping: Vec<(PathBuf, PathBuf)>,
    current: Option<(String, TarParser, Unpacker)>,
    /// Every directory an archive was unpacked into, for the final sync.
    pub roots: Vec<PathBuf>,
}

impl PlainTree {
    /// The data directory `dir`, tablespaces relocated by `mapping`.
    pub fn new(dir: &Path, mapping: &[(PathBuf, PathBuf)]) -> PlainTree {
        PlainTree {
            dir: dir.to_path_buf(),
            mapping: mapping.to_vec(),
            current: None,
            roots: vec![dir.to_path_buf()],
        }
    }

    /// The `-T` pairs.
    pub fn mapping(&self) -> &[(PathBuf, PathBuf)] {
        &self.mapping
    }

    /// Where a tablespace at `location` on the server goes.
    pub fn target(&self, location: &str) -> PathBuf {
        let location = Path::new(location);
        self.mapping
            .iter()
            .find(|(old, _)| old == location)
            .map(|(_, new)| new.clone())
            .unwrap_or_else(|| location.to_path_buf())
    }

    /// Checks the tablespaces before any byte arrives: each `-T` maps one, and each target is
    /// new or empty (never the live server's own directory).
    pub fn check_tablespaces(&self, locations: &[String]) -> Result<(), BaseError> {
        if let Some((old, _)) = self
            .mapping
            .iter()
            .find(|(old, _)| !locations.iter().any(|l| Path::new(l) == old))
        {
            return Err(BaseError::Usage(format!(
                "-T maps \"{}\", which is not the location of any tablespace of the server",
                old.display()
            )));
        }
        for location in locations {
            let target = self.target(location);
            if fs::read_dir(&target).is_ok_and(|mut entries| entries.next().is_some()) {
                return Err(BaseError::NotEmpty {
                    dir: target,
                    tablespace: true,
                });
            }
        }
        Ok(())
    }

    /// Starts the archive `name`; a tablespace's goes to its target.
    pub fn begin(&mut self, name: &str, location: Option<&str>) -> Result<(), BaseError> {
        self.end()?;
        check_archive_name(name)?;
        let root = match location {
            Some(location) => {
                let target = self.target(location);
                create_private_dir(&target)?;
                self.roots.push(target.clone());
                target
            }
            None => self.dir.clone(),
        };
        let unpacker = Unpacker {
            root,
            mapping: self.mapping.clone(),
            file: None,
        };
        self.current = Some((name.to_owned(), TarParser::new(), unpacker));
        Ok(())
    }

    /// Bytes of the current archive.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(), BaseError> {
        let (name, parser, unpacker) = self
            .current
            .as_mut()
            .ok_or_else(|| BaseError::Stream("archive data before any archive".to_owned()))?;
        parser
            .feed(bytes, unpacker)
            .map_err(|source| BaseError::Tar {
                archive: name.clone(),
                source,
            })
    }

    /// Ends the current archive.
    pub fn end(&mut self) -> Result<(), BaseError> {
        if let Some((name, parser, _)) = self.current.take() {
            if !parser.at_boundary() {
                return Err(BaseError::Stream(format!("{name} ends inside an entry")));
            }
        }
        Ok(())
    }
}

fn check_archive_name(name: &str) -> Result<(), BaseError> {
    let plain = Path::new(name).components().count() == 1
        && [".tar", ".tar.gz", ".tar.lz4", ".tar.zst"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
        && !name.starts_with('.');
    if plain {
        Ok(())
    } else {
        Err(BaseError::Stream(format!(
            "the server named an archive {name:?}"
        )))
    }
}

/// Creates `dir` (mode 0700) and its parents, or accepts it when it exists.
pub fn create_private_dir(dir: &Path) -> Result<(), BaseError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(BaseError::output(dir))
}

/// Unpacks one archive under `root`.
struct Unpacker {
    root: PathBuf,
    mapping: Vec<(PathBuf, PathBuf)>,
    file: Option<File>,
}

impl Unpacker {
    /// The entry's place under the root; names that climb out or are absolute are refused,
    /// and so is a name whose parent on disk is a symlink (an earlier entry `x -> /etc` must
    /// not let a later `x/passwd` land outside the root).
    fn place(&self, name: &str) -> io::Result<PathBuf> {
        let relative = Path::new(name);
        let leaves = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("refusing the entry {name:?}: it leaves the directory"),
            )
        };
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(leaves());
        }
        let mut parent = self.root.clone();
        let mut components = relative.components().peekable();
        while let Some(component) = components.next() {
            if components.peek().is_none() {
                break;
            }
            parent.push(component);
            match fs::symlink_metadata(&parent) {
                Ok(meta) if meta.file_type().is_symlink() => return Err(leaves()),
                _ => {}
            }
        }
        Ok(self.root.join(relative))
    }
}

impl TarVisitor for Unpacker {
    fn entry(&mut self, entry: &Entry) -> io::Result<()> {
        let path = self.place(&entry.path)?;
        match entry.kind {
            EntryKind::Directory => fs::DirBuilder::new()
                .recursive(true)
                .mode(entry.mode & 0o700 | 0o700)
                .create(&path),
            EntryKind::File => {
                self.file = Some(
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(entry.mode & 0o7777)
                        // Never through a symlink an earlier entry made.
                        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                        .open(&path)?,
                );
                Ok(())
            }
            EntryKind::Symlink => {
                let target = self
                    .mapping
                    .iter()
                    .find(|(old, _)| old == Path::new(&entry.link))
                    .map(|(_, new)| new.clone())
                    .unwrap_or_else(|| PathBuf::from(&entry.link));
                std::os::unix::fs::symlink(target, &path)
            }
        }
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.write_all(bytes),
            None => Ok(()),
        }
    }

    fn end_entry(&mut self) -> io::Result<()> {
        self.file = None;
        Ok(())
    }
}

/// Makes everything under `dirs` durable: one syncfs per file system they are on.
pub fn sync_all(dirs: &[PathBuf]) -> Result<(), BaseError> {
    for dir in dirs {
        let handle = File::open(dir).map_err(BaseError::output(dir))?;
        nix::unistd::syncfs(&handle).map_err(|e| BaseError::output(dir)(io::Error::from(e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::tar::header;

    #[test]
    fn plain_unpacks_relocates_and_refuses_escapes() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        create_private_dir(&dir).unwrap();
        let new = scratch.path().join("ts");
        let mut tree = PlainTree::new(&dir, &[(PathBuf::from("/srv/ts"), new.clone())]);
        assert!(tree.check_tablespaces(&["/elsewhere".to_owned()]).is_err());
        tree.check_tablespaces(&["/srv/ts".to_owned()]).unwrap();
        tree.begin("16384.tar", Some("/srv/ts")).unwrap();
        let mut archive = header("PG_VERSION", 3, 0).unwrap().to_vec();
        archive.extend(b"18\n");
        archive.extend([0u8; BLOCK - 3]);
        tree.data(&archive).unwrap();
        tree.end().unwrap();
        assert_eq!(fs::read(new.join("PG_VERSION")).unwrap(), b"18\n");
        tree.begin("base.tar", None).unwrap();
        assert!(tree.data(&header("../evil", 0, 0).unwrap()).is_err());
        assert!(tree.begin("../x.tar", None).is_err());
        assert_eq!(tree.roots, vec![dir, new]);
    }

    /// A symlink entry `name -> target`: `header`'s file header with type `2` and a link name.
    fn symlink_header(name: &str, target: &str) -> [u8; BLOCK] {
        let mut block = header(name, 0, 0).unwrap();
        block[156] = b'2';
        block[157..157 + target.len()].copy_from_slice(target.as_bytes());
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    #[test]
    fn nothing_is_written_through_a_symlink_an_earlier_entry_made() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("data");
        let outside = scratch.path().join("outside");
        create_private_dir(&dir).unwrap();
        create_private_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"keep").unwrap();
        let link = outside.display().to_string();
        let victim = outside.join("victim").display().to_string();

        let mut tree = PlainTree::new(&dir, &[]);
        tree.begin("base.tar", None).unwrap();
        tree.data(&symlink_header("x", &link)).unwrap();
        let error = tree.data(&header("x/passwd", 0, 0).unwrap()).unwrap_err();
        assert!(
            error.to_string().contains("leaves the directory"),
            "{error}"
        );
        assert!(!outside.join("passwd").exists());

        let mut tree = PlainTree::new(&dir, &[]);
        tree.begin("base.tar", None).unwrap();
        tree.data(&symlink_header("a", &victim)).unwrap();
        assert!(tree.data(&header("a", 0, 0).unwrap()).is_err());
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
    }

    #[test]
    fn tar_files_are_terminated_and_checksummed() {
        let scratch = tempfile::tempdir().unwrap();
        let mut files = TarFiles::new(scratch.path(), Packing::hashed(ChecksumAlgorithm::Sha256));
        files.begin("base.tar").unwrap();
        files.data(&header("x", 0, 0).unwrap()).unwrap();
        files.end().unwrap();
        let tar = fs::read(scratch.path().join("base.tar")).unwrap();
        assert_eq!(tar.len(), 3 * BLOCK);
        let sum = fs::read_to_string(scratch.path().join("base.tar.sha256")).unwrap();
        assert!(sum.ends_with("  base.tar\n"), "{sum}");
        files.begin("1.tar").unwrap();
        files.data(&header("x", 5, 0).unwrap()).unwrap();
        assert!(files.end().is_err());
    }
}
