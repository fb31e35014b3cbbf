//! Error types.

use std::path::PathBuf;

/// A problem with the bytes of a cache file (ptekit or reference `XPWC`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file or a structure in it ends early.
    #[error("{what} truncated at offset {offset}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// A magic number does not match.
    #[error("bad magic at offset {offset} ({hint})")]
    BadMagic {
        /// Where the magic was read.
        offset: u64,
        /// What was expected.
        hint: &'static str,
    },
    /// A checksum does not match.
    #[error("{what} checksum mismatch at offset {offset}")]
    Checksum {
        /// What was checked.
        what: &'static str,
        /// Where the checksum is stored.
        offset: u64,
    },
    /// An unsupported format version.
    #[error("unsupported format version {found}")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A field holds an invalid value.
    #[error("invalid {field} at offset {offset}: {reason}")]
    Field {
        /// Field path.
        field: &'static str,
        /// Where the field is.
        offset: u64,
        /// Why it is invalid.
        reason: String,
    },
}

/// Errors of the cache API.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An OS call on the cache file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The cache file's contents are invalid.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: FormatError,
    },
    /// The writer lock could not be taken in time.
    #[error("{path}: writer lock not acquired within {waited_ms} ms")]
    LockTimeout {
        /// The file.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// An entry failed verification.
    #[error("{path}: entry in slot {slot} at offset {offset}: {reason}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// Index slot.
        slot: u32,
        /// Data offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument from the caller.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl CacheError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        CacheError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Errors of the XNNPACK loader.
#[derive(Debug, thiserror::Error)]
pub enum XnnError {
    /// A library could not be loaded.
    #[error("loading {path}: {source}")]
    Load {
        /// The library.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// A symbol is missing.
    #[error("symbol {symbol} missing in {path}: {source}")]
    Symbol {
        /// The symbol.
        symbol: &'static str,
        /// The library.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// An XNNPACK call returned an error status.
    #[error("{call} failed with xnn_status {status}")]
    Status {
        /// The call.
        call: &'static str,
        /// The status code.
        status: u32,
    },
    /// A bad argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
}
