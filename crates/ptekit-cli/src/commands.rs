//! The subcommands: each maps its file, detects the kind from the identifier at bytes
//! 4..8 (`ET12` program, `BP08` bundled program, `FT01` tensor data), reads it through
//! `ptekit-format`, prints, and returns a [`CliError`] that names the file when something
//! is wrong.

use std::path::{Path, PathBuf};

use ptekit_format::bundled::{self, BundledError, BundledFile, MethodTestSuiteInput};
use ptekit_format::error::ContainerError;
use ptekit_format::flat_tensor::{self, FlatTensorConfig, FlatTensorError, FlatTensorFile};
use ptekit_format::inspect::{InspectError, Inspection};
use ptekit_format::mapped::MappedFile;
use ptekit_format::npz::{self, NpzError};
use ptekit_format::program::validate;
use ptekit_format::pte::{
    infer_pack_options, plan_exact, relayout, PteError, PteFile, ReadOptions, SerializeOptions,
};
use ptekit_format::write::{write_bytes_atomic, WriteOptions};

use crate::progress::bytes_bar;
use crate::render::render_program;
use crate::{BundleSpec, RewriteArgs};

/// An error of a subcommand; displayed as one line that starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file could not be read, or is not a valid program.
    #[error("{}: {source}", path.display())]
    Pte {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, with the byte offset and field.
        source: PteError,
    },
    /// The file is not a valid bundled program.
    #[error("{}: {source}", path.display())]
    Bundled {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, with the byte offset and field.
        source: BundledError,
    },
    /// The file is not a valid tensor-data file.
    #[error("{}: {source}", path.display())]
    FlatTensor {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, with the byte offset and field.
        source: FlatTensorError,
    },
    /// A NumPy archive could not be read.
    #[error("{}: {source}", path.display())]
    Npz {
        /// The archive concerned.
        path: PathBuf,
        /// What is wrong.
        source: NpzError,
    },
    /// Opening, mapping or writing a file failed.
    #[error("{}: {source}", path.display())]
    Container {
        /// The file concerned.
        path: PathBuf,
        /// The operation, path and operating system's error.
        source: ContainerError,
    },
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file parsed, but a semantic check failed.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// The first problem found (and how many more there are).
        message: String,
    },
    /// The file's identifier is not one ptekit knows.
    #[error("{}: unrecognized file identifier {found:?} at byte 4 (expected ET12 program, BP08 bundled program or FT01 tensor data)", path.display())]
    UnknownKind {
        /// The file concerned.
        path: PathBuf,
        /// The four bytes found at offset 4.
        found: String,
    },
    /// The arguments do not fit the file.
    #[error("{}: {message}", path.display())]
    Usage {
        /// The file concerned.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// Printing JSON failed.
    #[error("writing JSON output: {0}")]
    Json(#[from] serde_json::Error),
}

fn container_err(path: &Path) -> impl Fn(ContainerError) -> CliError + '_ {
    move |source| CliError::Container {
        path: path.to_path_buf(),
        source,
    }
}

fn pte_err(path: &Path) -> impl Fn(PteError) -> CliError + '_ {
    move |source| CliError::Pte {
        path: path.to_path_buf(),
        source,
    }
}

fn bundled_err(path: &Path) -> impl Fn(BundledError) -> CliError + '_ {
    move |source| CliError::Bundled {
        path: path.to_path_buf(),
        source,
    }
}

fn ptd_err(path: &Path) -> impl Fn(FlatTensorError) -> CliError + '_ {
    move |source| CliError::FlatTensor {
        path: path.to_path_buf(),
        source,
    }
}

pub use ptekit_format::inspect::Kind;

/// The kind of `bytes` ([`ptekit_format::inspect::detect`]), or an error naming `path`.
pub fn detect(path: &Path, bytes: &[u8]) -> Result<Kind, CliError> {
    ptekit_format::inspect::detect(bytes).map_err(|id| CliError::UnknownKind {
        path: path.to_path_buf(),
        found: String::from_utf8_lossy(&id).into_owned(),
    })
}

/// Parses a mapped program, recording the file as the source of its segment bytes.
fn parse_program(map: &MappedFile) -> Result<PteFile<'_>, PteError> {
    Ok(PteFile::parse(map.bytes(), &ReadOptions::default())?.with_source(map.source()))
}

fn inspect_err(path: &Path) -> impl Fn(InspectError) -> CliError + '_ {
    move |e| match e {
        InspectError::UnknownKind(id) => CliError::UnknownKind {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(&id).into_owned(),
        },
        InspectError::Pte(source) => pte_err(path)(source),
        InspectError::Bundled(source) => bundled_err(path)(source),
        InspectError::FlatTensor(source) => ptd_err(path)(source),
    }
}

/// `ptekit inspect FILE [--json]`.
pub fn inspect(path: &Path, json: bool) -> Result<(), CliError> {
    let map = MappedFile::open(path).map_err(container_err(path))?;
    let inspection = ptekit_format::inspect::inspect(map.bytes()).map_err(inspect_err(path))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&inspection.to_json())?);
        return Ok(());
    }
    let shown = path.display().to_string();
    let text = match &inspection {
        Inspection::Program { summary, xnnpack } => {
            let mut text = render_program(&shown, summary);
            crate::xnnpack::render_entries(xnnpack, &mut text);
            text
        }
        Inspection::Bundled { summary, program } => format!(
            "{shown}: {}\n{}",
            bundled::render_summary(summary),
            render_program(&format!("{shown} [program]"), program)
        ),
        Inspection::TensorData(s) => format!("{shown}: {}", flat_tensor::render_summary(s)),
    };
    out!("{text}");
    Ok(())
}

fn check_program(path: &Path, file: &PteFile<'_>) -> Result<(), CliError> {
    let issues = validate(file.program());
    if let Some(first) = issues.first() {
        let more = match issues.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(CliError::Invalid {
            path: path.to_path_buf(),
            message: format!("{first}{more}"),
        });
    }
    Ok(())
}

/// `ptekit verify FILE [--data FILE.ptd]`: parses and verifies everything (header,
/// flatbuffer, segment ranges, references between tables, indices and enum values, and
/// every XNNPACK payload with its cross-references; named keys are looked up in the
/// program and the `.ptd`).
pub fn verify(path: &Path, data: Option<&Path>) -> Result<(), CliError> {
    let map = MappedFile::open(path).map_err(container_err(path))?;
    let bytes = map.bytes();
    let what = match detect(path, bytes)? {
        Kind::Program => {
            let file = parse_program(&map).map_err(pte_err(path))?;
            check_program(path, &file)?;
            let ptd_map = match data {
                Some(d) => Some(MappedFile::open(d).map_err(container_err(d))?),
                None => None,
            };
            let ptd = match (&ptd_map, data) {
                (Some(m), Some(d)) => Some(
                    FlatTensorFile::parse(m.bytes(), &flat_tensor::ReadOptions::default())
                        .map_err(ptd_err(d))?,
                ),
                _ => None,
            };
            let xnn = crate::xnnpack::verify_payloads(path, &file, ptd.as_ref())?;
            format!(
                "{} program, {} method(s), {} segment(s){}",
                String::from_utf8_lossy(&file.file_identifier()),
                file.program().execution_plan.as_ref().map_or(0, Vec::len),
                file.segments().len(),
                if xnn > 0 {
                    format!(", {xnn} XNNPACK payload(s)")
                } else {
                    String::new()
                }
            )
        }
        Kind::Bundled => {
            let options = ReadOptions::default();
            let file = BundledFile::parse(bytes, &options.limits).map_err(bundled_err(path))?;
            let program = file.program_file(&options).map_err(bundled_err(path))?;
            check_program(path, &program)?;
            let suites = file
                .bundled()
                .method_test_suites
                .as_ref()
                .map_or(0, Vec::len);
            format!("bundled program, {suites} test suite(s)")
        }
        Kind::TensorData => {
            let file = FlatTensorFile::parse(bytes, &flat_tensor::ReadOptions::default())
                .map_err(ptd_err(path))?;
            let named = file.flat_tensor().named_data.as_ref().map_or(0, Vec::len);
            format!(
                "tensor data, {named} named tensor(s), {} segment(s)",
                file.segments().len()
            )
        }
    };
    outln!("{}: ok ({what}, {} bytes)", path.display(), bytes.len());
    Ok(())
}

/// Writes `bytes` to `path` atomically through the library's writer (a temporary file
/// in the same folder, fsync when `sync`, rename).
fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), CliError> {
    write_bytes_atomic(path, bytes, &WriteOptions { durable: sync })
        .map(|_| ())
        .map_err(container_err(path))
}

/// `ptekit rewrite IN OUT [options]`.
pub fn rewrite(args: &RewriteArgs) -> Result<(), CliError> {
    let input = args.input.as_path();
    let output = args.output.as_path();
    let map = MappedFile::open(input).map_err(container_err(input))?;
    let bytes = map.bytes();
    let relaying = args.upgrade
        || args.segment_alignment.is_some()
        || args.tensor_alignment.is_some()
        || args.delegate_alignment.is_some();
    match detect(input, bytes)? {
        Kind::Program => {}
        Kind::Bundled => {
            if relaying {
                return Err(CliError::Usage {
                    path: input.to_path_buf(),
                    message: "layout options apply to .pte and .ptd files; extract the \
                              program with `ptekit bundle extract-program` to re-lay it out"
                        .into(),
                });
            }
            let out = bundled::rewrite(bytes, &ReadOptions::default().limits)
                .map_err(bundled_err(input))?;
            return write_atomic(output, &out, args.sync);
        }
        Kind::TensorData => {
            if args.upgrade || args.tensor_alignment.is_some() || args.delegate_alignment.is_some()
            {
                return Err(CliError::Usage {
                    path: input.to_path_buf(),
                    message: "a .ptd file takes only --segment-alignment".into(),
                });
            }
            let file = FlatTensorFile::parse(bytes, &flat_tensor::ReadOptions::default())
                .map_err(ptd_err(input))?;
            let plan = match args.segment_alignment {
                None => flat_tensor::plan_exact(&file),
                Some(segment_alignment) => {
                    flat_tensor::plan_relayout(&file, &FlatTensorConfig { segment_alignment })
                }
            }
            .map_err(ptd_err(input))?
            // Segment data is copied from the input file descriptor, not through the map.
            .with_source(Some(map.source()));
            let bar = bytes_bar(plan.len(), "rewrite");
            let mut progress = |done: u64, _total: u64| bar.set_position(done);
            plan.write_atomic(
                output,
                &WriteOptions { durable: args.sync },
                Some(&mut progress),
            )
            .map_err(container_err(output))?;
            bar.finish_and_clear();
            return Ok(());
        }
    }
    let file = parse_program(&map).map_err(pte_err(input))?;
    let plan = if relaying {
        // Options not given keep what the input used where that can be told from it.
        let inferred = infer_pack_options(&file).map_err(pte_err(input))?;
        let defaults = SerializeOptions::default();
        let options = SerializeOptions {
            segment_alignment: args.segment_alignment.unwrap_or(defaults.segment_alignment),
            constant_tensor_alignment: Some(
                args.tensor_alignment.unwrap_or(inferred.tensor_alignment),
            ),
            delegate_alignment: Some(
                args.delegate_alignment
                    .unwrap_or(inferred.delegate_alignment),
            ),
            ..defaults
        };
        relayout(&file, &options).map_err(pte_err(input))?
    } else {
        plan_exact(&file).map_err(pte_err(input))?
    };
    let bar = bytes_bar(plan.len(), "rewrite");
    let mut progress = |done: u64, _total: u64| bar.set_position(done);
    plan.write_atomic(
        output,
        &WriteOptions { durable: args.sync },
        Some(&mut progress),
    )
    .map_err(pte_err(output))?;
    bar.finish_and_clear();
    Ok(())
}

/// `ptekit bundle extract-program IN.bpte OUT.pte`.
pub fn bundle_extract(input: &Path, output: &Path) -> Result<(), CliError> {
    let map = MappedFile::open(input).map_err(container_err(input))?;
    if detect(input, map.bytes())? != Kind::Bundled {
        return Err(CliError::Usage {
            path: input.to_path_buf(),
            message: "not a bundled program (identifier BP08 expected at byte 4)".into(),
        });
    }
    let program = bundled::extract_program(map.bytes(), &ReadOptions::default())
        .map_err(bundled_err(input))?;
    write_atomic(output, program, true)
}

/// `ptekit bundle make PROGRAM.pte --method NAME IN.npz OUT.npz [...] -o OUT.bpte`.
pub fn bundle_make(program_path: &Path, spec: &BundleSpec) -> Result<(), CliError> {
    let program = MappedFile::open(program_path).map_err(container_err(program_path))?;
    let program = program.bytes();
    let read = |path: &Path| -> Result<_, CliError> {
        let map = MappedFile::open(path).map_err(container_err(path))?;
        npz::read_npz(map.bytes()).map_err(|source| CliError::Npz {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut suites = Vec::new();
    for (name, files) in &spec.methods {
        let mut suite = MethodTestSuiteInput {
            method_name: name.clone(),
            test_cases: Vec::new(),
        };
        for pair in files.chunks(2) {
            let [ins, outs] = pair else { continue };
            let case =
                bundled::test_case_from_npz(&read(ins)?, &read(outs)?).map_err(bundled_err(ins))?;
            suite.test_cases.push(case);
        }
        suites.push(suite);
    }
    let out = bundled::make(program, &suites).map_err(bundled_err(program_path))?;
    write_atomic(&spec.output, &out, true)
}
