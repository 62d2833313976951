//! [`OutputFile`]: a report file written under a temporary name next to its destination and
//! renamed into place when complete, so a CI step reading it never sees half of one (and a
//! report that fails half-way leaves the earlier file, if any, alone).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A report file that could not be written.
#[derive(Debug, Error)]
#[error("cannot write `{path}`")]
pub struct OutputError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A file being written, buffered.
pub struct OutputFile {
    writer: BufWriter<File>,
    path: PathBuf,
    partial: PathBuf,
}

/// `path` with `.partial` after its whole name: each output has its own.
fn partial(path: &Path) -> PathBuf {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

impl OutputFile {
    /// Checks that `path` can be written (before a build's worth of waiting), leaving nothing
    /// behind: an empty report would fail the CI step reading it.
    pub fn check(path: &Path) -> Result<(), OutputError> {
        let probe = partial(path);
        File::create(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|source| OutputError {
                path: path.to_owned(),
                source,
            })
    }

    /// Starts writing what will be `path`.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let partial = partial(path);
        let file = File::create(&partial).map_err(|source| OutputError {
            path: partial.clone(),
            source,
        })?;
        Ok(Self {
            writer: BufWriter::new(file),
            path: path.to_owned(),
            partial,
        })
    }

    /// The error of a write that failed.
    pub fn failed(&self, source: std::io::Error) -> OutputError {
        OutputError {
            path: self.partial.clone(),
            source,
        }
    }

    /// Drops what was written of `path`, if anything (a report that failed half-way).
    pub fn discard(path: &Path) {
        let _ = std::fs::remove_file(partial(path));
    }

    /// Flushes the content and puts the file in place.
    pub fn finish(mut self) -> Result<(), OutputError> {
        self.writer.flush().map_err(|source| self.failed(source))?;
        std::fs::rename(&self.partial, &self.path).map_err(|source| OutputError {
            path: self.path.clone(),
            source,
        })
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
