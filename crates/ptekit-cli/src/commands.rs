//! The subcommands: each maps its file, detects the kind from the identifier at bytes
//! 4..8 (`ET12` program, `BP08` bundled program, `FT01` tensor data), reads it through
//! `ptekit-format`, prints, and returns a [`CliError`] that names the file when something
//! is wrong.

use std::path::{Path, PathBuf};

use ptekit_format::bundled::{self, BundledError, MethodTestSuiteInput, TestArrays};
use ptekit_format::error::ContainerError;
use ptekit_format::flat_tensor::{self, FlatTensorConfig, FlatTensorError, FlatTensorFile};
use ptekit_format::inspect::{InspectError, Inspection, VerifyError};
use ptekit_format::mapped::MappedFile;
use ptekit_format::program::{validate, IssueKind, Program};
use ptekit_format::pte::{
    pack_options_to_keep, plan_rewrite, relayout, PteError, PteFile, ReadOptions, RewriteLayout,
    SerializeOptions,
};
use ptekit_format::write::{write_bytes_atomic, WriteOptions};
use serde_json::Value;

use crate::input::{display_name, Input};
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
    /// A JSON document of `ptekit dump` does not describe a program.
    #[error("{}: {source}", path.display())]
    Build {
        /// The document concerned.
        path: PathBuf,
        /// What is wrong, with the JSON path.
        source: ptekit_format::pte::dump::BuildError,
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

/// What `ptekit inspect` was asked for besides the files.
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectOptions<'a> {
    /// Print JSON instead of text.
    pub json: bool,
    /// List the largest items of each kind (`0`: no list).
    pub top: usize,
    /// The tensor-data file to check the programs' external keys against.
    pub data: Option<&'a Path>,
}

/// Maps and parses a `.ptd` given with `--data`.
fn open_data(path: &Path) -> Result<Input, CliError> {
    let input = Input::open(path)?;
    if detect(path, input.bytes())? != Kind::TensorData {
        return Err(CliError::Usage {
            path: path.to_path_buf(),
            message: "--data needs a tensor-data file (.ptd, identifier FT01 at byte 4)".into(),
        });
    }
    FlatTensorFile::parse(input.bytes(), &flat_tensor::ReadOptions::default())
        .map_err(ptd_err(path))?;
    Ok(input)
}

/// Inspects one file: the JSON value and (unless `json`) the text.
fn inspect_one(
    path: &Path,
    options: &InspectOptions<'_>,
    data: Option<(&str, &FlatTensorFile<'_>)>,
) -> Result<(Value, String), CliError> {
    let input = Input::open(path)?;
    let library = ptekit_format::inspect::InspectOptions {
        top: options.top,
        data,
    };
    let inspection =
        ptekit_format::inspect::inspect_with(input.bytes(), &library).map_err(inspect_err(path))?;
    let value = inspection.to_json();
    if options.json {
        return Ok((value, String::new()));
    }
    let shown = display_name(path);
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
        Inspection::TensorData(s) => {
            let mut text = format!("{shown}: {}", flat_tensor::render_summary(s));
            if let Some(top) = &s.top {
                crate::render::render_top_named_data(&mut text, top);
            }
            text
        }
    };
    Ok((value, text))
}

/// Adds `"file": name` in front of a JSON object.
fn with_file(name: &str, value: Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("file".into(), Value::String(name.into()));
    if let Value::Object(map) = value {
        out.extend(map);
    }
    Value::Object(out)
}

/// Runs `one` on every file and prints as it goes. One file: its output (an error goes
/// to stderr). Several: text outputs (separated by a blank line when `blank_line`,
/// else one after the other), or with `json` one JSON
/// array whose entries carry `"file"` (a failed file `{"file", "error"}`, its error also
/// on stderr). `Ok(false)` when any file failed.
fn for_each_file(
    files: &[PathBuf],
    json: bool,
    blank_line: bool,
    mut one: impl FnMut(&Path) -> Result<(Value, String), CliError>,
) -> Result<bool, CliError> {
    let several = files.len() > 1;
    let mut all_ok = true;
    if several && json {
        out!("[");
    }
    for (i, path) in files.iter().enumerate() {
        let result = one(path);
        if let Err(err) = &result {
            eprintln!("ptekit: {err}");
            all_ok = false;
        }
        let shown = display_name(path);
        match (json, several, result) {
            (true, false, Ok((value, _))) => {
                out!("{}\n", serde_json::to_string_pretty(&value)?);
            }
            (true, true, result) => {
                let value = match result {
                    Ok((value, _)) => with_file(&shown, value),
                    Err(err) => serde_json::json!({"file": shown, "error": err.to_string()}),
                };
                let sep = if i == 0 { "\n" } else { ",\n" };
                out!("{sep}{}", serde_json::to_string_pretty(&value)?);
            }
            (false, _, Ok((_, text))) => {
                let sep = if blank_line && i > 0 { "\n" } else { "" };
                out!("{sep}{text}");
            }
            (_, _, Err(_)) => {}
        }
    }
    if several && json {
        out!("\n]\n");
    }
    Ok(all_ok)
}

/// `ptekit inspect FILE... [--json] [--top N] [--data FILE.ptd]`. `Ok(false)` when a
/// file could not be read.
pub fn inspect(files: &[PathBuf], options: &InspectOptions<'_>) -> Result<bool, CliError> {
    let data_input = options.data.map(open_data).transpose()?;
    let data_file = match (&data_input, options.data) {
        (Some(input), Some(path)) => Some((
            display_name(path),
            FlatTensorFile::parse(input.bytes(), &flat_tensor::ReadOptions::default())
                .map_err(ptd_err(path))?,
        )),
        _ => None,
    };
    let data = data_file.as_ref().map(|(name, f)| (name.as_str(), f));
    for_each_file(files, options.json, true, |path| {
        inspect_one(path, options, data)
    })
}

/// The first problem [`validate`] finds in `program` (and how many more), as an error
/// naming `path`; layouts that only the 1.5.1 runtime refuses
/// ([`IssueKind::Unsupported`]) are allowed: nothing broken is written, a legacy layout
/// may be.
pub(crate) fn check_program(path: &Path, program: &Program<'_>) -> Result<(), CliError> {
    let mut issues = validate(program);
    issues.retain(|i| i.kind != IssueKind::Unsupported);
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

/// Verifies one file: a JSON object (`ok`, `kind`, what was checked, `bytes`) and the
/// text line.
fn verify_one(path: &Path, ptd: Option<&FlatTensorFile<'_>>) -> Result<(Value, String), CliError> {
    let input = Input::open(path)?;
    let bytes = input.bytes();
    let value = ptekit_format::inspect::verify(bytes, ptd).map_err(|e| match e {
        VerifyError::Read(e) => inspect_err(path)(e),
        other => CliError::Invalid {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })?;
    let count = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let what = match value.get("kind").and_then(Value::as_str) {
        Some("program") => format!(
            "{} program, {} method(s), {} segment(s){}",
            value
                .get("identifier")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            count("methods"),
            count("segments"),
            match count("xnnpack_payloads") {
                0 => String::new(),
                n => format!(", {n} XNNPACK payload(s)"),
            }
        ),
        Some("bundled_program") => {
            format!("bundled program, {} test suite(s)", count("test_suites"))
        }
        _ => format!(
            "tensor data, {} named tensor(s), {} segment(s)",
            count("named_tensors"),
            count("segments")
        ),
    };
    // The backends a runtime needs to load the file (verify cannot know which it has).
    let backends: Vec<&str> = value
        .get("backends")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let shown: Vec<_> = backends
        .iter()
        .map(|id| crate::render::printable(id))
        .collect();
    let what = match shown.as_slice() {
        [] => what,
        ids => format!("{what}, needs backend(s) {}", ids.join(", ")),
    };
    let unchecked: Vec<_> = backends
        .iter()
        .zip(&shown)
        .filter(|(id, _)| **id != ptekit_format::xnnpack::BACKEND_ID)
        .map(|(_, shown)| shown.as_ref())
        .collect();
    if !unchecked.is_empty() {
        eprintln!(
            "ptekit: {}: warning: the payloads of backend(s) {} are not checked (ptekit reads \
             XNNPACK payloads only); a runtime without these backends registered refuses the file",
            display_name(path),
            unchecked.join(", ")
        );
    }
    let size = bytes.len() as u64;
    let mut value = with_file(&display_name(path), value);
    if let Value::Object(map) = &mut value {
        map.insert("ok".into(), Value::Bool(true));
        map.insert("bytes".into(), Value::from(size));
    }
    let text = format!(
        "{}: ok ({what}, {})\n",
        display_name(path),
        crate::render::bytes(size)
    );
    Ok((value, text))
}

/// `ptekit verify FILE... [--data FILE.ptd] [--json]`: parses and verifies everything
/// (header, flatbuffer, segment ranges, references between tables, indices and enum
/// values, and every XNNPACK payload with its cross-references; named keys are looked up
/// in the program and the `.ptd`). One line (or JSON object) per file; `Ok(false)` when a
/// file is invalid. With `--json` a failed file is `{"ok": false, "error": ...}` on
/// stdout too.
pub fn verify(files: &[PathBuf], data: Option<&Path>, json: bool) -> Result<bool, CliError> {
    let data_input = data.map(open_data).transpose()?;
    let ptd = match (&data_input, data) {
        (Some(input), Some(path)) => Some(
            flat_tensor::parse_verified(input.bytes(), &flat_tensor::ReadOptions::default())
                .map_err(ptd_err(path))?,
        ),
        _ => None,
    };
    let mut all_ok = true;
    let ok = for_each_file(files, json, false, |path| {
        match verify_one(path, ptd.as_ref()) {
            Ok(done) => Ok(done),
            Err(err) if json => {
                eprintln!("ptekit: {err}");
                all_ok = false;
                let value = serde_json::json!({
                    "file": display_name(path),
                    "ok": false,
                    "error": err.to_string(),
                });
                Ok((value, String::new()))
            }
            Err(err) => Err(err),
        }
    })?;
    Ok(ok && all_ok)
}

/// Writes `bytes` to `path` atomically through the library's writer (a temporary file
/// in the same folder, fsync when `sync`, rename).
fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<(), CliError> {
    write_bytes_atomic(path, bytes, &WriteOptions { durable: sync })
        .map(|_| ())
        .map_err(container_err(path))
}

/// What `rewrite` did: the layout it wrote (`exact`, `canonical` with the reason, or
/// `relayout`) and the output size.
struct Rewritten {
    layout: &'static str,
    reason: Option<String>,
    bytes: u64,
}

/// `ptekit rewrite IN OUT [options] [--json]`. Without layout options the input's
/// layout is kept when its bytes can be reproduced, else the canonical layout is written
/// and stderr says why.
pub fn rewrite(args: &RewriteArgs) -> Result<(), CliError> {
    let input = args.input.as_path();
    let done = rewrite_file(args)?;
    if let Some(reason) = &done.reason {
        eprintln!(
            "ptekit: {}: not reproducible byte for byte ({reason}); wrote the canonical layout",
            input.display()
        );
    }
    if args.json {
        let value = serde_json::json!({
            "input": input.display().to_string(),
            "output": args.output.display().to_string(),
            "layout": done.layout,
            "reason": done.reason,
            "bytes": done.bytes,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

fn rewrite_file(args: &RewriteArgs) -> Result<Rewritten, CliError> {
    let input = args.input.as_path();
    let output = args.output.as_path();
    let map = MappedFile::open(input).map_err(container_err(input))?;
    let bytes = map.bytes();
    let relaying = args.upgrade
        || args.segment_alignment.is_some()
        || args.tensor_alignment.is_some()
        || args.delegate_alignment.is_some();
    let write = WriteOptions { durable: args.sync };
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
            // Decoded, verified and packed again: the reference's layout, which is the
            // input's own when the reference wrote it.
            let out = bundled::rewrite(bytes, &ReadOptions::default().limits)
                .map_err(bundled_err(input))?;
            write_atomic(output, &out, args.sync)?;
            let exact = out.as_slice() == bytes;
            return Ok(Rewritten {
                layout: if exact { "exact" } else { "canonical" },
                reason: (!exact).then(|| {
                    "the bundled flatbuffer is not laid out like the reference's packer".into()
                }),
                bytes: out.len() as u64,
            });
        }
        Kind::TensorData => {
            if args.upgrade || args.tensor_alignment.is_some() || args.delegate_alignment.is_some()
            {
                return Err(CliError::Usage {
                    path: input.to_path_buf(),
                    message: "a .ptd file takes only --segment-alignment".into(),
                });
            }
            // Nothing is written that `verify` would refuse.
            let file = flat_tensor::parse_verified(bytes, &flat_tensor::ReadOptions::default())
                .map_err(ptd_err(input))?;
            let (plan, layout, reason) = match args.segment_alignment {
                None => match flat_tensor::plan_exact(&file) {
                    Ok(plan) => (plan, "exact", None),
                    Err(e) => (
                        flat_tensor::plan_relayout(&file, &FlatTensorConfig::default())
                            .map_err(ptd_err(input))?,
                        "canonical",
                        Some(e.to_string()),
                    ),
                },
                Some(segment_alignment) => (
                    flat_tensor::plan_relayout(&file, &FlatTensorConfig { segment_alignment })
                        .map_err(ptd_err(input))?,
                    "relayout",
                    None,
                ),
            };
            // Segment data is copied from the input file descriptor, not through the map.
            let plan = plan.with_source(Some(map.source()));
            let bar = bytes_bar(plan.len(), "rewrite");
            let mut progress = |done: u64, _total: u64| bar.set_position(done);
            plan.write_atomic(output, &write, Some(&mut progress))
                .map_err(container_err(output))?;
            bar.finish_and_clear();
            return Ok(Rewritten {
                layout,
                reason,
                bytes: plan.len(),
            });
        }
    }
    let file = parse_program(&map).map_err(pte_err(input))?;
    // Nothing broken is written (a layout the runtime refuses may be kept, or upgraded).
    file.verify_consistency().map_err(pte_err(input))?;
    let (plan, layout, reason) = if relaying {
        // Options not given keep what the input used where that can be told from it.
        let kept = pack_options_to_keep(&file).map_err(pte_err(input))?;
        let defaults = SerializeOptions::default();
        let options = SerializeOptions {
            segment_alignment: args.segment_alignment.unwrap_or(defaults.segment_alignment),
            constant_tensor_alignment: Some(args.tensor_alignment.unwrap_or(kept.tensor_alignment)),
            delegate_alignment: Some(args.delegate_alignment.unwrap_or(kept.delegate_alignment)),
            ..defaults
        };
        let plan = relayout(&file, &options).map_err(pte_err(input))?;
        (plan, "relayout", None)
    } else {
        match plan_rewrite(&file).map_err(pte_err(input))? {
            (plan, RewriteLayout::Exact) => (plan, "exact", None),
            (plan, RewriteLayout::Canonical { reason }) => (plan, "canonical", Some(reason)),
        }
    };
    let bar = bytes_bar(plan.len(), "rewrite");
    let mut progress = |done: u64, _total: u64| bar.set_position(done);
    plan.write_atomic(output, &write, Some(&mut progress))
        .map_err(pte_err(output))?;
    bar.finish_and_clear();
    Ok(Rewritten {
        layout,
        reason,
        bytes: plan.len(),
    })
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

/// `ptekit bundle make PROGRAM.pte --method NAME IN.npz OUT.npz [...] -o OUT.bpte`: every
/// array is checked against the method's inputs or outputs before its data is read, and
/// all archives together expand to at most `--max-npz-bytes`.
pub fn bundle_make(program_path: &Path, spec: &BundleSpec) -> Result<(), CliError> {
    let program_map = MappedFile::open(program_path).map_err(container_err(program_path))?;
    let program = program_map.bytes();
    let parsed = PteFile::parse(program, &ReadOptions::default()).map_err(pte_err(program_path))?;
    let limit = spec.max_npz_bytes;
    let mut left = limit;
    let mut read = |path: &Path, method: &str, case: usize, which| -> Result<_, CliError> {
        let map = MappedFile::open(path).map_err(container_err(path))?;
        bundled::read_test_arrays(
            parsed.program(),
            method,
            case,
            map.bytes(),
            which,
            limit,
            &mut left,
        )
        .map_err(bundled_err(path))
    };
    let mut suites = Vec::new();
    for (name, files) in &spec.methods {
        bundled::find_plan(parsed.program(), name).map_err(bundled_err(program_path))?;
        let mut suite = MethodTestSuiteInput {
            method_name: name.clone(),
            test_cases: Vec::new(),
        };
        for (case, pair) in files.chunks(2).enumerate() {
            let [ins, outs] = pair else { continue };
            let inputs = read(ins, name, case, TestArrays::Inputs)?;
            let outputs = read(outs, name, case, TestArrays::Outputs)?;
            let case = bundled::test_case_from_npz(&inputs, &outputs).map_err(bundled_err(ins))?;
            suite.test_cases.push(case);
        }
        suites.push(suite);
    }
    let out = bundled::make(program, &suites).map_err(bundled_err(program_path))?;
    write_atomic(&spec.output, &out, true)
}

/// The manual page of `cmd` (roff), and with `dir` of each subcommand, as clap_mangen
/// renders them: printed (the main page), or written into `dir` as `NAME.1` through the
/// atomic writer.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> Result<(), CliError> {
    fn render(cmd: &clap::Command) -> Vec<u8> {
        let mut page = Vec::new();
        // Rendering into memory cannot fail.
        let _ = clap_mangen::Man::new(cmd.clone()).render(&mut page);
        page
    }
    fn write_all(cmd: &clap::Command, dir: &Path) -> Result<(), CliError> {
        let man = clap_mangen::Man::new(cmd.clone());
        let path = dir.join(man.get_filename());
        write_atomic(&path, &render(cmd), false)?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write_all(sub, dir)?;
        }
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    match dir {
        None => {
            out!("{}", String::from_utf8_lossy(&render(&cmd)));
            Ok(())
        }
        Some(dir) => write_all(&cmd, dir),
    }
}
