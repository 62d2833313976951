//! [`OutputFile`]: every file ciq writes at the end of a command (JUnit, JSON, timing files,
//! bisect's minimal log) goes through it, and [`check`] looks at all of them at the command's
//! start, before a build's worth of waiting.
//!
//! A regular file, or a path that does not exist yet, is written under a temporary name next to
//! it and renamed into place when complete, so a CI step reading it never sees half of one (and
//! a write that fails half-way leaves the earlier file alone); through a symbolic link, the
//! file it names is replaced and the link stays. Any other path that exists (`/dev/null`,
//! `/dev/stdout`, a FIFO, a device node) is written *through*: opened and written, never
//! renamed over. Renaming over `/dev/null` as root would replace it with a regular file for
//! every process on the machine.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// An output that cannot be written: refused at the start, or failed at the end.
#[derive(Debug, Error)]
pub enum OutputError {
    /// Writing failed (a full disk, `/dev/full`, a FIFO whose reader left).
    #[error("cannot write `{}`", .path.display())]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path is a directory.
    #[error("{flag} `{}` is a directory: give the path of a file", .path.display())]
    Directory {
        /// The flag that named it.
        flag: &'static str,
        /// The output.
        path: PathBuf,
    },
    /// The directory the file would go in does not exist.
    #[error("{flag} `{}`: the directory `{}` does not exist (create it first)", .path.display(), .dir.display())]
    NoDirectory {
        /// The flag that named it.
        flag: &'static str,
        /// The output.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The path is a socket, which no file can be written into.
    #[error("{flag} `{}` is a socket: give the path of a file, a device or a FIFO", .path.display())]
    Socket {
        /// The flag that named it.
        flag: &'static str,
        /// The output.
        path: PathBuf,
    },
    /// The path cannot be written (permissions, a read-only file system, a parent that is a
    /// file).
    #[error("{flag} `{}` cannot be written", .path.display())]
    Unwritable {
        /// The flag that named it.
        flag: &'static str,
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Two outputs name one file (maybe spelled differently, or through a link): the second
    /// would overwrite the first.
    #[error("{first} and {second} both name `{}`: give each output a file of its own", .path.display())]
    Clash {
        /// The flag named first.
        first: &'static str,
        /// The flag named second.
        second: &'static str,
        /// The second's path.
        path: PathBuf,
    },
}

/// One output a command will write: the flag that names it (with its variable), and its path.
#[derive(Debug, Clone, Copy)]
pub struct Planned<'a> {
    /// `--junit (CIQ_REPORT_JUNIT)`, for messages.
    pub flag: &'static str,
    /// Where it goes.
    pub path: &'a Path,
}

impl<'a> Planned<'a> {
    /// The outputs given among `flags`: each flag, with its path when one was given.
    pub fn given(flags: &[(&'static str, Option<&'a Path>)]) -> Vec<Self> {
        flags
            .iter()
            .filter_map(|&(flag, path)| Some(Planned { flag, path: path? }))
            .collect()
    }
}

/// Checks every output a command will write, before it waits for a build or runs anything: a
/// directory, a directory that does not exist, a path that cannot be written, and two outputs
/// naming one file are refused here, not found after the build. Nothing is left behind.
pub fn check(outputs: &[Planned<'_>]) -> Result<(), OutputError> {
    let mut seen: Vec<(&'static str, Identity)> = Vec::new();
    for output in outputs {
        let identity = check_one(output)?;
        if let Some((first, _)) = seen.iter().find(|(_, known)| *known == identity) {
            return Err(OutputError::Clash {
                first,
                second: output.flag,
                path: output.path.to_owned(),
            });
        }
        seen.push((output.flag, identity));
    }
    Ok(())
}

/// Which file a path names, however it is spelled: an existing one by its inode, a new one by
/// its directory's canonical path and its name.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Node(u64, u64),
    New(PathBuf),
}

fn check_one(output: &Planned<'_>) -> Result<Identity, OutputError> {
    let Planned { flag, path } = *output;
    let unwritable = |source| OutputError::Unwritable {
        flag,
        path: path.to_owned(),
        source,
    };
    match destination(path) {
        Err(err) if err.kind() == ErrorKind::IsADirectory => Err(OutputError::Directory {
            flag,
            path: path.to_owned(),
        }),
        Err(err) => Err(unwritable(err)),
        Ok(Destination::Through { socket: true, .. }) => Err(OutputError::Socket {
            flag,
            path: path.to_owned(),
        }),
        Ok(Destination::Through { .. }) => {
            // Opening a FIFO would end its reader's input, and opening a device may do
            // something: only the permission is checked.
            nix::unistd::access(path, nix::unistd::AccessFlags::W_OK)
                .map_err(|errno| unwritable(errno.into()))?;
            let meta = std::fs::metadata(path).map_err(unwritable)?;
            Ok(Identity::Node(meta.dev(), meta.ino()))
        }
        Ok(Destination::Replace(file)) => {
            let dir = directory_of(&file);
            match std::fs::metadata(dir) {
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    return Err(OutputError::NoDirectory {
                        flag,
                        path: path.to_owned(),
                        dir: dir.to_owned(),
                    });
                }
                Err(err) => return Err(unwritable(err)),
                Ok(meta) if !meta.is_dir() => {
                    return Err(unwritable(std::io::Error::new(
                        ErrorKind::NotADirectory,
                        format!("`{}` is not a directory", dir.display()),
                    )));
                }
                Ok(_) => {}
            }
            let probe = partial(&file);
            File::create(&probe)
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(unwritable)?;
            if let Ok(meta) = std::fs::metadata(&file) {
                return Ok(Identity::Node(meta.dev(), meta.ino()));
            }
            let dir = std::fs::canonicalize(dir).map_err(unwritable)?;
            Ok(Identity::New(
                dir.join(file.file_name().unwrap_or(file.as_os_str())),
            ))
        }
    }
}

/// Where an output's bytes go.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// A regular file, or nothing yet: written beside this file and renamed over it.
    Replace(PathBuf),
    /// Something else that exists: opened and written.
    Through {
        /// A FIFO: opened only when a reader waits, so ciq never hangs on it.
        fifo: bool,
        /// A socket: cannot be opened at all.
        socket: bool,
    },
}

/// Where the output `path` goes; an error of kind `IsADirectory` for a directory.
fn destination(path: &Path) -> std::io::Result<Destination> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        // Nothing there (or a link to nothing, which the rename replaces as it would a file).
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Ok(Destination::Replace(path.to_owned()));
        }
        Err(err) => return Err(err),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(ErrorKind::IsADirectory.into());
    }
    if !kind.is_file() {
        return Ok(Destination::Through {
            fifo: kind.is_fifo(),
            socket: kind.is_socket(),
        });
    }
    if !std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Ok(Destination::Replace(path.to_owned()));
    }
    if through_proc(path) {
        // `/dev/stdout` of a process whose output goes to a file: renaming over that file
        // would cut the process off from its own output.
        return Ok(Destination::Through {
            fifo: false,
            socket: false,
        });
    }
    Ok(Destination::Replace(std::fs::canonicalize(path)?))
}

/// Whether the links from `path` pass through `/proc` (`/dev/stdout`, `/dev/fd/N`), whose links
/// name a process's open files rather than places to put one.
fn through_proc(path: &Path) -> bool {
    let mut at = path.to_owned();
    // As many links as the kernel follows.
    for _ in 0..40 {
        let Ok(dir) = std::fs::canonicalize(directory_of(&at)) else {
            return false;
        };
        if dir.starts_with("/proc") {
            return true;
        }
        match std::fs::read_link(&at) {
            Ok(target) => at = dir.join(target),
            Err(_) => return false,
        }
    }
    false
}

/// The directory `file` is in (`.` for a bare name).
fn directory_of(file: &Path) -> &Path {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `file` with `.partial` after its whole name: each output has its own.
fn partial(file: &Path) -> PathBuf {
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

/// An output being written, buffered. Dropped before [`OutputFile::finish`] (a write that
/// failed half-way), it leaves the earlier file, if any, as it was.
pub struct OutputFile {
    writer: BufWriter<File>,
    /// The path as given, for messages.
    path: PathBuf,
    /// The temporary file and the file it becomes; `None` when written through.
    rename: Option<(PathBuf, PathBuf)>,
    finished: bool,
}

impl OutputFile {
    /// Starts writing what will be `path`.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let failed = |source| OutputError::Write {
            path: path.to_owned(),
            source,
        };
        let (file, rename) = match destination(path).map_err(failed)? {
            Destination::Replace(file) => {
                let partial = partial(&file);
                (
                    File::create(&partial).map_err(failed)?,
                    Some((partial, file)),
                )
            }
            Destination::Through { fifo, .. } => (open_through(path, fifo).map_err(failed)?, None),
        };
        Ok(Self {
            writer: BufWriter::new(file),
            path: path.to_owned(),
            rename,
            finished: false,
        })
    }

    /// The error of a write that failed.
    pub fn failed(&self, source: std::io::Error) -> OutputError {
        OutputError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Flushes the content and puts the file in place.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.writer.flush().map_err(|source| self.failed(source))?;
        if let Some((partial, file)) = &self.rename {
            std::fs::rename(partial, file).map_err(|source| self.failed(source))?;
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let (false, Some((partial, _))) = (self.finished, &self.rename) {
            let _ = std::fs::remove_file(partial);
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Opens an existing path that is not a regular file for writing, appending (`/dev/stdout` of
/// a process whose output goes to a file keeps what it holds). A FIFO with no reader is an
/// error at once, not a wait for one that may never come.
fn open_through(path: &Path, fifo: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true);
    if !fifo {
        return options.open(path);
    }
    let file = options
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(nix::libc::ENXIO) => std::io::Error::new(
                ErrorKind::BrokenPipe,
                "no process reads this FIFO (start its reader before ciq writes)",
            ),
            _ => err,
        })?;
    // Writes wait for a slow reader, as they would on a pipe.
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(file)
}

/// Writes `bytes` as the whole of `path`, as [`OutputFile`] does.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let mut file = OutputFile::create(path)?;
    file.write_all(bytes)
        .map_err(|source| file.failed(source))?;
    file.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned<'a>(flag: &'static str, path: &'a Path) -> Planned<'a> {
        Planned { flag, path }
    }

    #[test]
    fn a_regular_file_is_replaced_and_a_device_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.xml");
        std::fs::write(&file, "old").unwrap();
        write(&file, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        // A link keeps linking to the file, which is replaced.
        let link = dir.path().join("link.xml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write(&link, b"through the link").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "through the link");
        write(Path::new("/dev/null"), b"nothing").unwrap();
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let err = write(Path::new("/dev/full"), b"no room").unwrap_err();
        assert_eq!(
            crate::human::error_chain(&err),
            "cannot write `/dev/full`: No space left on device (os error 28)"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no partial file left: {leftovers:?}");
    }

    #[test]
    fn a_failed_write_leaves_the_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.json");
        std::fs::write(&file, "earlier").unwrap();
        let mut output = OutputFile::create(&file).unwrap();
        output.write_all(b"half of it").unwrap();
        drop(output);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "earlier");
        assert!(!partial(&file).exists());
    }

    #[test]
    fn outputs_are_checked_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.xml");
        let message =
            |outputs: &[Planned<'_>]| crate::human::error_chain(&check(outputs).unwrap_err());
        assert_eq!(
            message(&[planned("--junit", dir.path())]),
            format!(
                "--junit `{}` is a directory: give the path of a file",
                dir.path().display()
            )
        );
        let missing = dir.path().join("missing/a.xml");
        assert_eq!(
            message(&[planned("--json", &missing)]),
            format!(
                "--json `{}`: the directory `{}` does not exist (create it first)",
                missing.display(),
                dir.path().join("missing").display()
            )
        );
        std::fs::write(&file, "").unwrap();
        let under_a_file = file.join("b.xml");
        assert!(
            message(&[planned("--json", &under_a_file)]).ends_with("Not a directory (os error 20)"),
            "{}",
            message(&[planned("--json", &under_a_file)])
        );
        // The same file, spelled differently or through a link; new or existing.
        let new = dir.path().join("new.xml");
        let dotted = dir.path().join(".").join("new.xml");
        assert!(
            message(&[planned("--junit", &new), planned("--json", &dotted)])
                .starts_with("--junit and --json both name")
        );
        let link = dir.path().join("link.xml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(
            message(&[planned("--junit", &file), planned("--json", &link)])
                .starts_with("--junit and --json both name")
        );
        check(&[
            planned("--junit", &file),
            planned("--json", &new),
            planned("--timings-out", Path::new("/dev/null")),
        ])
        .unwrap();
        assert!(!partial(&new).exists() && !new.exists(), "nothing left");
    }
}
