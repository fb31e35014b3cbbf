//! What `ptekit inspect --json` prints for one file of any kind, computed once for the
//! CLI and the Python bindings (`ptekit.inspect`).
//!
//! [`detect`] tells the kind from the identifier (`ET12` program, `BP08` bundled program,
//! `FT01` tensor data); [`inspect`] (or [`inspect_with`] for the `--top` lists and a
//! `.ptd` to check) reads the file through the verified readers and keeps the summaries
//! ([`Inspection`]), which the CLI renders as text and [`Inspection::to_json`] turns into
//! the JSON object (`"kind"` plus the summary's keys). A program's summary is
//! [`program_summary`]: the `.pte` summary ([`pte::summary_with`]) plus what needs the
//! layers above the container — the named-data keys XNNPACK payloads read from outside
//! the program, and the check of a `.ptd` against everything the program expects.

use ptekit_flatbuffers::Limits;
use serde_json::{json, Map, Value};

use crate::bundled::{self, BundledError, BundledFile, BundledSummary};
use crate::flat_tensor::{self, FlatTensorError, FlatTensorFile, FlatTensorSummary};
use crate::pte::{self, AvailableData, PteError, PteFile, PteSummary, ReadOptions, SummaryOptions};
use crate::xnnpack::{self, decode_payload, delegate_payloads, NamedSizes, XnnpackSummary};

/// What a file is, by its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A program (`ET12`, or any `ET` + two alphanumerics).
    Program,
    /// A bundled program (`BP08`).
    Bundled,
    /// A tensor-data file (`FT01`).
    TensorData,
}

/// The kind of `bytes`, or the four bytes at offset 4 when they name no known kind.
///
/// Input too short to carry an identifier counts as a program, so that the program
/// reader explains what is missing.
pub fn detect(bytes: &[u8]) -> Result<Kind, [u8; 4]> {
    if bundled::is_bundled(bytes) {
        return Ok(Kind::Bundled);
    }
    if flat_tensor::is_flat_tensor(bytes) {
        return Ok(Kind::TensorData);
    }
    match bytes.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        None => Ok(Kind::Program),
        Some(id) if id.starts_with(b"ET") && id[2..].iter().all(u8::is_ascii_alphanumeric) => {
            Ok(Kind::Program)
        }
        Some(id) => Err(id),
    }
}

/// Why a file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The identifier at bytes 4..8 names no kind ptekit reads.
    #[error("unrecognized file identifier {:?} at byte 4 (expected ET12 program, BP08 bundled program or FT01 tensor data)", String::from_utf8_lossy(.0))]
    UnknownKind([u8; 4]),
    /// Not a valid program.
    #[error(transparent)]
    Pte(#[from] PteError),
    /// Not a valid bundled program.
    #[error(transparent)]
    Bundled(#[from] BundledError),
    /// Not a valid tensor-data file.
    #[error(transparent)]
    FlatTensor(#[from] FlatTensorError),
}

/// The summary of one XNNPACK delegate payload of a program.
#[derive(Debug, Clone)]
pub struct XnnpackEntry {
    /// Index of the method in `execution_plan`.
    pub plan: usize,
    /// Index of the delegate in the method's `delegates`.
    pub delegate: usize,
    /// Size of the processed blob (0 when the delegate has none).
    pub bytes: u64,
    /// The payload's summary, or why it could not be read.
    pub summary: Result<XnnpackSummary, String>,
}

/// The XNNPACK payloads of `file`, each read and summarized (named constants sized from
/// the program's named data).
pub fn xnnpack_entries(file: &PteFile<'_>) -> Vec<XnnpackEntry> {
    let named = NamedSizes::new(file, None);
    let lookup = |k: &str| named.in_program(k);
    delegate_payloads(file)
        .into_iter()
        .map(|d| XnnpackEntry {
            plan: d.plan,
            delegate: d.delegate,
            bytes: d.bytes.map_or(0, |b| crate::write::len64(b.len())),
            summary: d
                .bytes
                .ok_or_else(|| "no processed data".to_string())
                .and_then(|b| decode_payload(b, &Limits::default()).map_err(|e| e.to_string()))
                .map(|p| xnnpack::summary(&p, Some(&lookup))),
        })
        .collect()
}

/// The summaries of one inspected file.
#[derive(Debug, Clone)]
pub enum Inspection {
    /// A program with its XNNPACK payloads.
    Program {
        /// The program's summary.
        summary: PteSummary,
        /// One entry per XNNPACK delegate, in method order.
        xnnpack: Vec<XnnpackEntry>,
    },
    /// A bundled program and the program it embeds.
    Bundled {
        /// The test suites.
        summary: BundledSummary,
        /// The embedded program's summary.
        program: PteSummary,
    },
    /// A tensor-data file.
    TensorData(FlatTensorSummary),
}

/// What to add to a program's summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectOptions<'a> {
    /// List this many of the largest items of each kind (`0`: no list).
    pub top: usize,
    /// A data file to check the program's external keys against, with the name to
    /// report it by.
    pub data: Option<(&'a str, &'a FlatTensorFile<'a>)>,
}

/// The entries a `.ptd` offers, for [`pte::ExternalData::check`].
pub fn available_data(ptd: &FlatTensorFile<'_>) -> Vec<AvailableData> {
    let segments = ptd.segments();
    ptd.flat_tensor()
        .named_data
        .iter()
        .flatten()
        .filter_map(|n| {
            let key = n.key.clone()?;
            let layout = n.tensor_layout.as_ref();
            Some(AvailableData {
                key,
                dtype: layout.map(|l| l.scalar_type.to_string()),
                sizes: layout.map(|l| l.sizes.clone().unwrap_or_default()),
                bytes: segments.get(n.segment_index as usize).map_or(0, |s| s.size),
            })
        })
        .collect()
}

/// The summary of a program with `options` (see the module docs).
pub fn program_summary(file: &PteFile<'_>, options: &InspectOptions<'_>) -> PteSummary {
    let mut s = pte::summary_with(file, &SummaryOptions { top: options.top });
    let named = NamedSizes::new(file, None);
    for d in delegate_payloads(file) {
        // A payload that does not decode is reported by verify; here it adds no keys.
        let Some(payload) = d
            .bytes
            .and_then(|b| decode_payload(b, &Limits::default()).ok())
        else {
            continue;
        };
        let method = s
            .execution_plans
            .get(d.plan)
            .map_or_else(String::new, |m| m.name.clone());
        for c in payload.graph.constant_data.iter().flatten() {
            if let Some(key) = c.key() {
                if named.in_program(key).is_none() {
                    s.external_data.add_named_key(key, &method, Some(c.size));
                }
            }
        }
    }
    if let Some((name, ptd)) = options.data {
        s.external_data.check(name, &available_data(ptd));
    }
    s
}

/// Reads `bytes` (any kind, see [`detect`]) with the verified readers and summarizes it.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, InspectError> {
    inspect_with(bytes, &InspectOptions::default())
}

/// [`inspect`] with the `top` lists (programs, the program of a bundled program, the
/// entries of a tensor-data file) and the data check (programs) of `options`.
pub fn inspect_with(
    bytes: &[u8],
    inspect_options: &InspectOptions<'_>,
) -> Result<Inspection, InspectError> {
    let options = ReadOptions::default();
    match detect(bytes).map_err(InspectError::UnknownKind)? {
        Kind::Program => {
            let file = PteFile::parse(bytes, &options)?;
            Ok(Inspection::Program {
                summary: program_summary(&file, inspect_options),
                xnnpack: xnnpack_entries(&file),
            })
        }
        Kind::Bundled => {
            let file = BundledFile::parse(bytes, &options.limits)?;
            let program = file.program_file(&options)?;
            Ok(Inspection::Bundled {
                summary: bundled::summary(&file),
                program: program_summary(&program, inspect_options),
            })
        }
        Kind::TensorData => {
            let file = FlatTensorFile::parse(bytes, &flat_tensor::ReadOptions::default())?;
            let mut s = flat_tensor::summary(&file);
            if inspect_options.top > 0 {
                let named = s.named_tensors.iter().map(|n| pte::TopNamedData {
                    key: n.key.clone().unwrap_or_default(),
                    segment_index: n.segment_index,
                    bytes: Some(n.bytes),
                });
                s.top = Some(pte::top_named_data(named, inspect_options.top));
            }
            Ok(Inspection::TensorData(s))
        }
    }
}

/// `"kind": kind` plus the keys of a serialized summary.
fn with_kind(kind: &str, value: Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(kind.into()));
    if let Value::Object(map) = value {
        out.extend(map);
    }
    Value::Object(out)
}

/// A summary as JSON (the summaries hold only strings, numbers, lists and maps with
/// string keys, which always serialize).
fn to_value<T: serde::Serialize>(s: &T) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

impl Inspection {
    /// The JSON object of `ptekit inspect --json`: `kind` (`program`, `bundled_program`,
    /// `tensor_data`) and the summary's keys; each XNNPACK delegate of a program gets an
    /// `xnnpack` entry (its payload summary, or `{"error": ...}`), a bundled program a
    /// `program` entry (the embedded program's summary).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Program { summary, xnnpack } => {
                let mut value = to_value(summary);
                for e in xnnpack {
                    let entry = match &e.summary {
                        Ok(s) => to_value(s),
                        Err(msg) => json!({ "error": msg }),
                    };
                    if let Some(obj) = value
                        .get_mut("execution_plans")
                        .and_then(|p| p.get_mut(e.plan))
                        .and_then(|p| p.get_mut("delegates"))
                        .and_then(|ds| ds.get_mut(e.delegate))
                        .and_then(Value::as_object_mut)
                    {
                        obj.insert("xnnpack".into(), entry);
                    }
                }
                value
            }
            Self::Bundled { summary, program } => {
                let mut value = with_kind("bundled_program", to_value(summary));
                if let Value::Object(map) = &mut value {
                    map.insert("program".into(), to_value(program));
                }
                value
            }
            Self::TensorData(s) => with_kind("tensor_data", to_value(s)),
        }
    }
}

/// [`inspect`] then [`Inspection::to_json`].
pub fn inspect_json(bytes: &[u8]) -> Result<Value, InspectError> {
    inspect(bytes).map(|i| i.to_json())
}

/// Why [`verify`] refused a file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file does not parse (kind, header, flatbuffer, segments, references).
    #[error(transparent)]
    Read(#[from] InspectError),
    /// An XNNPACK payload is malformed or refers to what does not exist.
    #[error("{error}{}", if *.without_data { " (pass the program's .ptd with --data)" } else { "" })]
    Xnnpack {
        /// What is wrong, where.
        error: xnnpack::XnnpackError,
        /// A named key was not found and no `.ptd` was given.
        without_data: bool,
    },
}

/// The backend ids a program's delegates name, each once, sorted: what a runtime must
/// have registered to load the program. Verify checks the payloads of XNNPACK only; a
/// runtime without one of these backends refuses the file (error NotFound), which is
/// about the runtime, not the file.
fn backend_ids(file: &PteFile<'_>) -> Vec<String> {
    let mut ids: Vec<String> = file
        .program()
        .execution_plan
        .iter()
        .flatten()
        .flat_map(|plan| plan.delegates.iter().flatten())
        .filter_map(|d| d.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The memory-planned buffers all methods of a program declare
/// (`non_const_buffer_sizes`), in bytes: what a loader that allocates them (the Python
/// runtime does, for every method, when it loads the program) needs. Whether a machine
/// has that much is the machine's business, not the file's.
fn planned_bytes(file: &PteFile<'_>) -> u64 {
    file.program()
        .execution_plan
        .iter()
        .flatten()
        .flat_map(|plan| plan.non_const_buffer_sizes.iter().flatten())
        .fold(0u64, |sum, &size| {
            sum.saturating_add(u64::try_from(size).unwrap_or(0))
        })
}

/// What `ptekit verify` checks, for one file of any kind: it parses through the verified
/// readers, a program's tables must agree ([`validate`](crate::program::validate())),
/// and every XNNPACK payload must decode and refer only to values, constants and named
/// data that exist (named keys looked up in the program, then in `ptd`). Returns what was
/// checked: `kind` and counts (`methods`, `segments`, `xnnpack_payloads`; `test_suites`;
/// `named_tensors`), and for a program or bundled program the `backends` its delegates
/// need and its `planned_memory_bytes`.
pub fn verify(bytes: &[u8], ptd: Option<&FlatTensorFile<'_>>) -> Result<Value, VerifyError> {
    let options = ReadOptions::default();
    let read = |e: InspectError| VerifyError::Read(e);
    match detect(bytes).map_err(|id| read(InspectError::UnknownKind(id)))? {
        Kind::Program => {
            let file = PteFile::parse(bytes, &options).map_err(|e| read(e.into()))?;
            file.verify().map_err(|e| read(e.into()))?;
            if let Some(ptd) = ptd {
                file.verify_external(ptd).map_err(|e| read(e.into()))?;
            }
            let payloads =
                xnnpack::check_payloads(&file, ptd, &Limits::default()).map_err(|error| {
                    VerifyError::Xnnpack {
                        without_data: ptd.is_none()
                            && matches!(error.kind(), xnnpack::XnnpackErrorKind::NamedKey),
                        error,
                    }
                })?;
            Ok(json!({
                "kind": "program",
                "identifier": String::from_utf8_lossy(&file.file_identifier()),
                "methods": file.program().execution_plan.as_ref().map_or(0, Vec::len),
                "segments": file.segments().len(),
                "xnnpack_payloads": payloads,
                "backends": backend_ids(&file),
                "planned_memory_bytes": planned_bytes(&file),
            }))
        }
        Kind::Bundled => {
            let file = BundledFile::parse(bytes, &options.limits).map_err(|e| read(e.into()))?;
            bundled::verify(&file, &options).map_err(|e| read(e.into()))?;
            let program = file.program_file(&options).map_err(|e| read(e.into()))?;
            let suites = file
                .bundled()
                .method_test_suites
                .as_ref()
                .map_or(0, Vec::len);
            Ok(json!({
                "kind": "bundled_program",
                "test_suites": suites,
                "backends": backend_ids(&program),
                "planned_memory_bytes": planned_bytes(&program),
            }))
        }
        Kind::TensorData => {
            let file = FlatTensorFile::parse(bytes, &flat_tensor::ReadOptions::default())
                .map_err(|e| read(e.into()))?;
            flat_tensor::verify(&file).map_err(|e| read(e.into()))?;
            Ok(json!({
                "kind": "tensor_data",
                "named_tensors": file.flat_tensor().named_data.as_ref().map_or(0, Vec::len),
                "segments": file.segments().len(),
            }))
        }
    }
}
