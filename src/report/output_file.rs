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

impl OutputFile {
    /// Starts writing what will be `path`.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        let partial = path.with_extension("partial");
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
