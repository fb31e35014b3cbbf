//! Opening the files a command reads: a path (memory-mapped) or `-` (standard input,
//! read whole), with clear errors for a directory or a missing file, and the program a
//! `.pte` or `.bpte` holds.

use std::io::Read as _;
use std::path::Path;

use ptekit_format::bundled::BundledFile;
use ptekit_format::flat_tensor::{self, FlatTensorFile};
use ptekit_format::pte::{PteFile, PteMap, ReadOptions};

use crate::commands::CliError;

/// The bytes of one input.
pub enum Input {
    /// A mapped file.
    Mapped(PteMap),
    /// Standard input, read whole.
    Stdin(Vec<u8>),
}

/// The name `-` stands for standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

impl Input {
    /// Opens `path` (`-` = standard input).
    pub fn open(path: &Path) -> Result<Self, CliError> {
        let io = |source| CliError::Io {
            path: path.to_path_buf(),
            source,
        };
        if is_stdin(path) {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf).map_err(io)?;
            return Ok(Self::Stdin(buf));
        }
        let meta = std::fs::metadata(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CliError::Usage {
                    path: path.to_path_buf(),
                    message: "no such file or directory".into(),
                }
            } else {
                io(source)
            }
        })?;
        if meta.is_dir() {
            return Err(CliError::Usage {
                path: path.to_path_buf(),
                message: "is a directory (give the files in it, e.g. DIR/*.pte)".into(),
            });
        }
        PteMap::open(path)
            .map(Self::Mapped)
            .map_err(|source| CliError::Pte {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The whole input.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m.bytes(),
            Self::Stdin(b) => b,
        }
    }

    /// Parses the input as a `.pte` file.
    pub fn parse(
        &self,
        options: &ReadOptions,
    ) -> Result<PteFile<'_>, ptekit_format::pte::PteError> {
        match self {
            Self::Mapped(m) => m.parse(options),
            Self::Stdin(b) => PteFile::parse(b, options),
        }
    }
}

/// What a command shows as the input's name.
pub fn display_name(path: &Path) -> String {
    if is_stdin(path) {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// The program of a `.pte` or `.bpte` input; a `.ptd` has none (`Usage` error naming
/// `what` needs a program).
pub fn program_of<'a>(path: &Path, input: &'a Input, what: &str) -> Result<PteFile<'a>, CliError> {
    let options = ReadOptions::default();
    let bytes = input.bytes();
    match crate::commands::detect(path, bytes)? {
        crate::commands::Kind::Program => input.parse(&options).map_err(|source| CliError::Pte {
            path: path.to_path_buf(),
            source,
        }),
        crate::commands::Kind::Bundled => {
            let err = |source| CliError::Bundled {
                path: path.to_path_buf(),
                source,
            };
            let file = BundledFile::parse(bytes, &options.limits).map_err(err)?;
            file.program_file(&options).map_err(err)
        }
        crate::commands::Kind::TensorData => Err(CliError::Usage {
            path: path.to_path_buf(),
            message: format!(
                "a tensor-data file (.ptd) has no program; {what} needs a .pte or .bpte"
            ),
        }),
    }
}

/// The parsed tensor-data file (`.ptd`) of an input already detected as one.
pub fn tensor_data_of<'a>(path: &Path, input: &'a Input) -> Result<FlatTensorFile<'a>, CliError> {
    FlatTensorFile::parse(input.bytes(), &flat_tensor::ReadOptions::default()).map_err(|source| {
        CliError::FlatTensor {
            path: path.to_path_buf(),
            source,
        }
    })
}
