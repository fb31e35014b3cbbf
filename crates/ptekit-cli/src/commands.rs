//! The subcommands: each reads a file through `ptekit-format`, prints, and returns a
//! [`CliError`] that names the file when something is wrong.

use std::path::{Path, PathBuf};

use ptekit_format::program::validate;
use ptekit_format::pte::{
    infer_pack_options, plan_exact, relayout, PteError, PteFile, PteMap, ReadOptions,
    SerializeOptions, WriteOptions,
};

use crate::progress::bytes_bar;
use crate::render::render_program;
use crate::summary::{summarize, HeaderSummary};
use crate::RewriteArgs;

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
    /// The file parsed, but a semantic check failed.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// The first problem found (and how many more there are).
        message: String,
    },
    /// The file's identifier is not one ptekit knows.
    #[error("{}: unrecognized file identifier {found:?} at byte 4 (expected ET12 for a program)", path.display())]
    UnknownKind {
        /// The file concerned.
        path: PathBuf,
        /// The four bytes found at offset 4.
        found: String,
    },
    /// Printing JSON failed.
    #[error("writing JSON output: {0}")]
    Json(#[from] serde_json::Error),
}

fn pte_err(path: &Path) -> impl Fn(PteError) -> CliError + '_ {
    move |source| CliError::Pte {
        path: path.to_path_buf(),
        source,
    }
}

/// Rejects files whose identifier is not a program's before the program reader reports
/// a less helpful flatbuffer error.
fn check_kind(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(id) = bytes.get(4..8) {
        let is_et = id.first() == Some(&b'E')
            && id.get(1) == Some(&b'T')
            && id[2..].iter().all(u8::is_ascii_alphanumeric);
        if !is_et {
            return Err(CliError::UnknownKind {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(id).into_owned(),
            });
        }
    }
    Ok(())
}

fn open_program<'m>(path: &Path, map: &'m PteMap) -> Result<PteFile<'m>, CliError> {
    check_kind(path, map.bytes())?;
    map.parse(&ReadOptions::default()).map_err(pte_err(path))
}

fn header_summary(file: &PteFile<'_>) -> Option<HeaderSummary> {
    file.header().map(|h| HeaderSummary {
        length: h.length,
        program_size: h.program_size,
        segment_base_offset: h.segment_base_offset,
        segment_data_size: h.segment_data_size.unwrap_or(0),
    })
}

/// `ptekit inspect FILE [--json]`.
pub fn inspect(path: &Path, json: bool) -> Result<(), CliError> {
    let map = PteMap::open(path).map_err(pte_err(path))?;
    let file = open_program(path, &map)?;
    let summary = summarize(
        file.program(),
        file.file_identifier(),
        header_summary(&file),
        map.bytes().len() as u64,
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render_program(&path.display().to_string(), &summary));
    }
    Ok(())
}

/// `ptekit verify FILE`: parses and verifies everything (header, flatbuffer, segment
/// ranges, references between tables), then checks that re-packing the program gives
/// back the same flatbuffer layout the file has.
pub fn verify(path: &Path) -> Result<(), CliError> {
    let map = PteMap::open(path).map_err(pte_err(path))?;
    let file = open_program(path, &map)?;
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
    let program = file.program();
    let methods = program.execution_plan.as_ref().map_or(0, Vec::len);
    let segments = file.segments().len();
    println!(
        "{}: ok ({} program, {} method(s), {} segment(s), {} bytes)",
        path.display(),
        String::from_utf8_lossy(&file.file_identifier()),
        methods,
        segments,
        map.bytes().len()
    );
    Ok(())
}

/// `ptekit rewrite IN OUT [options]`.
pub fn rewrite(args: &RewriteArgs) -> Result<(), CliError> {
    let input = args.input.as_path();
    let map = PteMap::open(input).map_err(pte_err(input))?;
    let file = open_program(input, &map)?;
    let relaying = args.upgrade
        || args.segment_alignment.is_some()
        || args.tensor_alignment.is_some()
        || args.delegate_alignment.is_some();
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
    let output = args.output.as_path();
    plan.write_atomic(
        output,
        &WriteOptions {
            durable: !args.no_sync,
        },
        Some(&mut progress),
    )
    .map_err(pte_err(output))?;
    bar.finish_and_clear();
    Ok(())
}
