//! Bundled programs (`.bpte`, file identifier `BP08`): a `.pte` program plus test cases
//! (inputs and expected outputs per method), as written by the reference's
//! `executorch.devtools.bundled_program` (executorch 1.5.1).
//!
//! - [`model`]: the schema's tables ([`BundledProgram`], [`BundledMethodTestSuite`],
//!   [`BundledMethodTestCase`], [`Value`], [`ValueUnion`], [`Tensor`], ...), with public
//!   fields, borrowing test data and the program bytes from the input.
//! - [`decode_bundled`]: verified, zero-copy decoding; [`BundledProgram::program_file`]
//!   parses the embedded `.pte` in place (no copy).
//! - [`pack_bundled`]: the reference's `serialize_from_bundled_program_to_flatbuffer`,
//!   byte for byte (test tensor data aligned to 16, the program to 32).
//! - [`make()`](fn@make): the reference's `BundledProgram(program, method_test_suites)`
//!   followed by serialization, from test values given as NumPy arrays (see
//!   [`crate::npz`]), with the reference's consistency checks against the program.
//! - [`rewrite`], [`extract_program`], [`summary()`](fn@summary) and [`render_summary`]
//!   for the command line.
//!
//! A `.bpte` is a plain flatbuffer: no extended header, no segments of its own (the
//! embedded program keeps its own header and segments inside the `program` vector).

mod decode;
mod make;
pub mod model;
mod pack;
mod summary;
mod verify;

use std::borrow::Cow;

use ptekit_flatbuffers::{BuildError, Limits};

use crate::npz::NpzError;
use crate::program::DecodeError;
use crate::pte::{PteError, PteFile, ReadOptions};

pub use decode::decode_bundled;
pub use make::{
    find_plan, make, read_test_arrays, test_case_from_npz, MethodTestCaseInput,
    MethodTestSuiteInput, TestArrays, TestValue,
};
pub use model::*;
pub use pack::{
    pack_bundled, pack_bundled_around_program, PackedBundled, PROGRAM_ALIGNMENT,
    TENSOR_DATA_ALIGNMENT,
};
pub use summary::{
    render_summary, summary, BundledSummary, SizeBreakdown, TestCaseSummary, TestSuiteSummary,
    ValueSummary,
};
pub use verify::verify;

/// The file identifier of bundled programs (`file_identifier "BP08"`).
pub const BUNDLED_FILE_IDENTIFIER: [u8; 4] = *b"BP08";

/// The schema version the reference writes (`BUNDLED_PROGRAM_SCHEMA_VERSION`).
pub const BUNDLED_PROGRAM_SCHEMA_VERSION: u32 = 2;

/// Errors of the bundled-program functions.
#[derive(Debug, thiserror::Error)]
pub enum BundledError {
    /// The bundled flatbuffer failed verification (offset and field path inside).
    #[error("bundled program flatbuffer: {0}")]
    Decode(#[from] DecodeError),
    /// Packing failed (over the 2 GiB FlatBuffers limit).
    #[error("packing the bundled program: {0}")]
    Pack(#[from] BuildError),
    /// The embedded program is absent.
    #[error("bundled program has no `program` field")]
    NoProgram,
    /// The embedded program failed to parse; `offset` is where the program starts in
    /// the `.bpte`.
    #[error("embedded program (at .bpte offset 0x{offset:x}): {source}")]
    Program {
        /// Offset of the program bytes in the `.bpte` (0 if unknown).
        offset: u64,
        /// The `.pte` error.
        #[source]
        source: PteError,
    },
    /// An XNNPACK payload of the embedded program is malformed or refers to what does
    /// not exist (the error names the delegate, the field, the payload byte and its
    /// offset in the `.bpte`); `offset` is where the program starts in the `.bpte`.
    #[error("embedded program (at .bpte offset 0x{offset:x}): {source}")]
    Xnnpack {
        /// Offset of the program bytes in the `.bpte` (0 if unknown).
        offset: u64,
        /// The payload's error.
        #[source]
        source: Box<crate::xnnpack::XnnpackError>,
    },
    /// The test values do not fit the program (the reference asserts the same things).
    #[error("{field}: {message}")]
    Invalid {
        /// Field path, e.g. `method_test_suites[forward].test_cases[0].inputs[1]`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Reading test values from `.npz` failed.
    #[error(transparent)]
    Npz(#[from] NpzError),
}

/// Whether `bytes` carries the bundled-program identifier `BP08` at offset 4.
pub fn is_bundled(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(&BUNDLED_FILE_IDENTIFIER[..])
}

impl<'a> BundledProgram<'a> {
    /// The embedded `.pte` bytes (`None` when the field is absent).
    pub fn program_bytes(&self) -> Option<&[u8]> {
        self.program.as_deref()
    }

    /// Parses the embedded program in place (zero-copy: the returned file borrows the
    /// `program` bytes, which themselves borrow the `.bpte` when decoded from it).
    pub fn program_file(&self, options: &ReadOptions) -> Result<PteFile<'_>, BundledError> {
        let bytes = self.program_bytes().ok_or(BundledError::NoProgram)?;
        PteFile::parse(bytes, options).map_err(|source| BundledError::Program { offset: 0, source })
    }
}

/// A decoded `.bpte` with its input bytes: locates the program inside the file for
/// error messages and borrows everything from `bytes`.
#[derive(Debug, Clone)]
pub struct BundledFile<'a> {
    bytes: &'a [u8],
    bundled: BundledProgram<'a>,
}

impl<'a> BundledFile<'a> {
    /// Decodes and verifies a `.bpte`.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Self, BundledError> {
        Ok(BundledFile {
            bytes,
            bundled: decode_bundled(bytes, limits)?,
        })
    }

    /// The input bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The decoded model.
    pub fn bundled(&self) -> &BundledProgram<'a> {
        &self.bundled
    }

    /// The decoded model, by value.
    pub fn into_bundled(self) -> BundledProgram<'a> {
        self.bundled
    }

    /// The embedded `.pte` bytes, borrowed from the input.
    pub fn program_bytes(&self) -> Result<&'a [u8], BundledError> {
        match &self.bundled.program {
            Some(Cow::Borrowed(b)) => Ok(b),
            _ => Err(BundledError::NoProgram),
        }
    }

    /// Offset of the embedded program in the `.bpte`.
    pub fn program_offset(&self) -> Option<u64> {
        let p = self.program_bytes().ok()?;
        let off = (p.as_ptr() as usize).checked_sub(self.bytes.as_ptr() as usize)?;
        u64::try_from(off).ok()
    }

    /// Parses the embedded program in place; errors name its offset in the `.bpte`.
    pub fn program_file(&self, options: &ReadOptions) -> Result<PteFile<'a>, BundledError> {
        let bytes = self.program_bytes()?;
        PteFile::parse(bytes, options)
            .map_err(|source| verify::program_error(source, self.program_offset().unwrap_or(0)))
    }
}

/// `ptekit bundle extract-program`: the embedded `.pte`, verified to parse, borrowed
/// from `bpte`.
pub fn extract_program<'a>(
    bpte: &'a [u8],
    options: &ReadOptions,
) -> Result<&'a [u8], BundledError> {
    let file = BundledFile::parse(bpte, &options.limits)?;
    file.program_file(options)?;
    file.program_bytes()
}

/// Exact rewrite: decodes `bpte`, [verifies](verify()) it (embedded program and test
/// cases: nothing is written that `ptekit verify` would refuse) and packs the model
/// again. For every file the reference writes the result is byte-identical to the
/// input; for any verified input it holds the same model.
pub fn rewrite(bpte: &[u8], limits: &Limits) -> Result<Vec<u8>, BundledError> {
    let file = BundledFile::parse(bpte, limits)?;
    let options = ReadOptions {
        limits: *limits,
        ..ReadOptions::default()
    };
    verify(&file, &options)?;
    Ok(pack_bundled(file.bundled())?)
}
