//! `ptekit._native`: the PyO3 layer under the Python package `ptekit`, a drop-in for the
//! ExecuTorch exporter's `.pte` serialization (`serialize_pte_binary`,
//! `deserialize_pte_binary` of `executorch.exir._serialize._program`, executorch 1.5.1).
//!
//! - [`to_rust`]: the reference's `PTEFile` object graph → [`PteModel`], weights borrowed
//!   through [`bytes::Keep`];
//! - [`to_python`]: a restored [`PteModel`] → the reference's dataclasses;
//! - [`result`]: the serialized file object ([`result::PteBinary`]);
//! - [`planned`]: `bytes(x)` and `x.write_to_file(f)` of planned files;
//! - [`bundled`]: bundled programs (`.bpte`, `executorch.devtools.bundled_program`);
//! - [`flat_tensor`]: tensor-data files (`.ptd`, the reference's `FlatTensorSerializer`);
//! - [`reader`]: `ptekit.inspect` and the index of `ptekit.safe_open` (no torch needed);
//! - [`xnnpack`]: XNNPACK delegate payloads (`convert_to_flatbuffer` without flatc);
//! - [`error`]: `ptekit.PteError` and the field-path conversion error.
//!
//! The GIL is released while the Rust core packs, parses and writes.

pub mod bundled;
pub mod bytes;
pub mod error;
pub mod flat_tensor;
pub mod planned;
pub mod reader;
pub mod result;
pub mod to_python;
pub mod to_rust;
pub mod xnnpack;

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use ptekit_format::pte::{plan, restore, PteFile, PteModel, ReadOptions, SerializeOptions};
use ptekit_format::write::PlannedFile;

// Links the XNNPACK interposers into the extension (exported, inactive until
// `ptekit.runtime.enable_xnnpack_cache` puts the extension in global scope).
use ptekit_xnnpack as _;

use crate::bytes::Keep;
use crate::error::{BindError, PteError, Seg};
use crate::flat_tensor::FlatTensorBinary;
use crate::result::PteBinary;

/// The reference's keyword options; an option not given (or `None`) takes the
/// reference's default (`extract_delegate_segments=False`, `segment_alignment=128`).
fn options(
    extract_delegate_segments: Option<&Bound<'_, PyAny>>,
    segment_alignment: Option<&Bound<'_, PyAny>>,
    constant_tensor_alignment: Option<&Bound<'_, PyAny>>,
    delegate_alignment: Option<&Bound<'_, PyAny>>,
) -> PyResult<SerializeOptions> {
    fn positive<T: for<'a, 'py> FromPyObject<'a, 'py>>(
        name: &str,
        v: &Bound<'_, PyAny>,
    ) -> PyResult<T> {
        v.extract::<T>().map_err(|_| {
            PteError::new_err(format!(
                "bad option {name}: expected a positive integer, got {v}"
            ))
        })
    }
    let opt = |name: &str, v: Option<&Bound<'_, PyAny>>| -> PyResult<Option<usize>> {
        match v {
            Some(v) if !v.is_none() => positive::<usize>(name, v).map(Some),
            _ => Ok(None),
        }
    };
    let defaults = SerializeOptions::default();
    Ok(SerializeOptions {
        // Any truthy value, like the reference's `if extract_delegate_segments:`.
        extract_delegate_segments: match extract_delegate_segments {
            Some(v) => v.is_truthy()?,
            None => defaults.extract_delegate_segments,
        },
        segment_alignment: match segment_alignment {
            Some(v) if !v.is_none() => positive::<u64>("segment_alignment", v)?,
            _ => defaults.segment_alignment,
        },
        constant_tensor_alignment: opt("constant_tensor_alignment", constant_tensor_alignment)?,
        delegate_alignment: opt("delegate_alignment", delegate_alignment)?,
    })
}

/// Converts `pte_file` and plans the file (GIL released while planning).
fn plan_file(
    py: Python<'_>,
    pte_file: &Bound<'_, PyAny>,
    options: &SerializeOptions,
) -> Result<PteBinary, BindError> {
    let mut keep = Keep::default();
    let model: PteModel<'static> =
        to_rust::pte_file(pte_file, &mut keep).map_err(|e| e.at(error::Seg::Field("pte_file")))?;
    let planned = py.detach(|| plan(&model, options))?;
    drop(model);
    Ok(PteBinary::new(planned, keep))
}

/// `serialize_pte_binary(pte_file, ...)`: see the Python package's docstring.
#[pyfunction]
#[pyo3(signature = (pte_file, *, extract_delegate_segments=None, segment_alignment=None, constant_tensor_alignment=None, delegate_alignment=None))]
fn serialize_pte_binary(
    py: Python<'_>,
    pte_file: &Bound<'_, PyAny>,
    extract_delegate_segments: Option<&Bound<'_, PyAny>>,
    segment_alignment: Option<&Bound<'_, PyAny>>,
    constant_tensor_alignment: Option<&Bound<'_, PyAny>>,
    delegate_alignment: Option<&Bound<'_, PyAny>>,
) -> PyResult<PteBinary> {
    let opts = options(
        extract_delegate_segments,
        segment_alignment,
        constant_tensor_alignment,
        delegate_alignment,
    )?;
    Ok(plan_file(py, pte_file, &opts)?)
}

/// `write_pte(path, pte_file, ...)`: see the Python package's docstring.
#[pyfunction]
#[pyo3(signature = (path, pte_file, *, extract_delegate_segments=None, segment_alignment=None, constant_tensor_alignment=None, delegate_alignment=None))]
fn write_pte(
    py: Python<'_>,
    path: PathBuf,
    pte_file: &Bound<'_, PyAny>,
    extract_delegate_segments: Option<&Bound<'_, PyAny>>,
    segment_alignment: Option<&Bound<'_, PyAny>>,
    constant_tensor_alignment: Option<&Bound<'_, PyAny>>,
    delegate_alignment: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    let binary = serialize_pte_binary(
        py,
        pte_file,
        extract_delegate_segments,
        segment_alignment,
        constant_tensor_alignment,
        delegate_alignment,
    )?;
    binary.write_path(py, &path)
}

/// `deserialize_pte_binary(data, classes)`: parses `data` (bytes-like or a path) and
/// builds the reference's `PTEFile` from the classes named in `classes`.
#[pyfunction]
fn deserialize_pte_binary<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    classes: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let read = ReadOptions::default();
    reader::with_input(data, |bytes| {
        let model = py
            .detach(|| PteFile::parse(bytes, &read).and_then(|f| restore(&f)))
            .map_err(|e| PyErr::from(BindError::from(e)))?;
        Ok(to_python::pte_file(py, &model, classes)?)
    })
}

/// Packs the reference's schema `BundledProgram` (`bundled`) around its program and
/// calls `emit` with the planned file: the flatbuffer without the program's bytes, and
/// the program streamed from where it lives (bytes, or a [`PteBinary`]'s pieces).
/// `members` is the tuple of the schema's `(Tensor, Int, Bool, Double)` classes, or
/// `None` to recognize union members by class name.
fn with_bundled_plan<'py, R>(
    py: Python<'py>,
    bundled: &Bound<'py, PyAny>,
    members: &Bound<'py, PyAny>,
    emit: impl FnOnce(&PlannedFile<'_>) -> PyResult<R>,
) -> PyResult<R> {
    use ptekit_format::write::Piece;

    let members = bundled::Members::new(members)?;
    let mut keep = Keep::default();
    let (model, program) = bundled::from_schema(bundled, &members, &mut keep)
        .map_err(|e| PyErr::from(BindError::from(e.at(Seg::Field("bundled_program")))))?;
    let planned_program = match &program {
        bundled::ProgramSource::Planned(p) => Some(p.get()),
        bundled::ProgramSource::Bytes(_) => None,
    };
    let program_len = match (&program, planned_program) {
        (_, Some(p)) => usize::try_from(p.file().len())
            .map_err(|_| PteError::new_err("bundled_program.program: too large"))?,
        (bundled::ProgramSource::Bytes(b), None) => b.len(),
        (bundled::ProgramSource::Planned(_), None) => 0,
    };
    let packed = py
        .detach(|| ptekit_format::bundled::pack_bundled_around_program(&model, program_len))
        .map_err(|e| {
            PyErr::from(BindError::from(ptekit_format::bundled::BundledError::from(
                e,
            )))
        })?;
    let (buf, head, tail) = packed.into_parts();
    let mut pieces = vec![Piece::Flatbuffer(head)];
    match (&program, planned_program) {
        (_, Some(p)) => {
            let file = p.file();
            pieces.extend(file.pieces().iter().map(|piece| match piece {
                Piece::Zeros(n) => Piece::Zeros(*n),
                other => Piece::Bytes(file.piece_bytes(other)),
            }));
        }
        (bundled::ProgramSource::Bytes(b), None) => pieces.push(Piece::Bytes(b)),
        (bundled::ProgramSource::Planned(_), None) => {}
    }
    pieces.push(Piece::Flatbuffer(tail));
    let file = PlannedFile::new(buf, pieces).map_err(|e| PteError::new_err(e.to_string()))?;
    let out = emit(&file);
    drop(file);
    drop(model);
    drop(keep);
    out
}

/// `serialize_from_bundled_program_to_flatbuffer`: the `.bpte` file as exactly one
/// `bytes` object of its size (see [`with_bundled_plan`]).
#[pyfunction]
fn serialize_bundled_program<'py>(
    py: Python<'py>,
    bundled: &Bound<'py, PyAny>,
    members: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    with_bundled_plan(py, bundled, members, |file| planned::to_pybytes(py, file))
}

/// `write_bundled_program(bundled, members, out)`: streams the `.bpte` file to `out`, a
/// path (written atomically) or a binary file object; returns the bytes written.
#[pyfunction]
fn write_bundled_program<'py>(
    py: Python<'py>,
    bundled: &Bound<'py, PyAny>,
    members: &Bound<'py, PyAny>,
    out: &Bound<'py, PyAny>,
) -> PyResult<u64> {
    let is_path = out.is_instance_of::<PyString>()
        || out
            .getattr(pyo3::intern!(py, "__fspath__"))
            .is_ok_and(|f| f.is_callable());
    with_bundled_plan(py, bundled, members, |file| {
        if is_path {
            let path: PathBuf = out.extract()?;
            py.detach(|| file.write_atomic(&path, &Default::default(), None))
                .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
        } else {
            planned::write_to_file(py, file, out)?;
            Ok(file.len())
        }
    })
}

/// `deserialize_from_flatbuffer_to_bundled_program`: decodes `data` (bytes-like) and
/// builds the reference's schema dataclasses from the classes named in `classes`.
#[pyfunction]
fn deserialize_bundled_program<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    classes: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let limits = ReadOptions::default().limits;
    let mut keep = Keep::default();
    let bytes: &[u8] = match data.cast::<PyBytes>() {
        Ok(b) => b.as_bytes(),
        Err(_) => keep.borrow_buffer(data)?,
    };
    let model = py
        .detach(|| ptekit_format::bundled::decode_bundled(bytes, &limits))
        .map_err(|e| {
            PyErr::from(BindError::from(ptekit_format::bundled::BundledError::from(
                e,
            )))
        })?;
    let out = bundled::to_schema(py, &model, classes)?;
    // The model borrows from `keep`: drop it first.
    drop(model);
    drop(keep);
    Ok(out)
}

/// `FlatTensorSerializer(config).serialize(data)`: `data` is the reference's
/// `DataPayload`, `segment_alignment` the config's.
#[pyfunction]
fn serialize_flat_tensor(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    segment_alignment: &Bound<'_, PyAny>,
) -> PyResult<FlatTensorBinary> {
    let segment_alignment: u64 = segment_alignment
        .extract()
        .ok()
        .filter(|a| *a > 0)
        .ok_or_else(|| {
            PteError::new_err(format!(
                "config.segment_alignment: expected a positive integer, got {segment_alignment}"
            ))
        })?;
    let config = ptekit_format::flat_tensor::FlatTensorConfig { segment_alignment };
    let mut keep = Keep::default();
    let payload = flat_tensor::payload(data, &mut keep)
        .map_err(|e| PyErr::from(BindError::from(e.at(Seg::Field("data")))))?;
    let plan = py
        .detach(|| ptekit_format::flat_tensor::plan(&payload, &config))
        .map_err(|e| PyErr::from(BindError::from(e)))?;
    drop(payload);
    // The plan borrows the buffers held by `keep`; the binary keeps both (no copy).
    Ok(FlatTensorBinary::new(plan, keep))
}

/// `FlatTensorSerializer().deserialize(blob)`: parses `blob` (bytes-like, a
/// `FlatTensorBinary`, or anything `bytes(blob)` accepts, e.g. a `Cord`) and builds the
/// reference's `DataPayload` from the classes named in `classes`.
#[pyfunction]
fn deserialize_flat_tensor<'py>(
    py: Python<'py>,
    blob: &Bound<'py, PyAny>,
    classes: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let options = ptekit_format::flat_tensor::ReadOptions::default();
    let mut keep = Keep::default();
    let converted;
    let assembled;
    let bytes: &[u8] = if let Ok(b) = blob.cast::<PyBytes>() {
        b.as_bytes()
    } else if let Ok(f) = blob.cast::<FlatTensorBinary>() {
        // A planned file is not contiguous: assemble it (the segments are copied into
        // `bytes` objects by the result anyway).
        let f = f.get();
        assembled = py.detach(|| f.to_vec())?;
        assembled.as_slice()
    } else if let Ok(b) = keep.borrow_buffer(blob) {
        b
    } else {
        // The reference starts with `bytes(blob)` (a Cord joins its pieces).
        converted = py
            .get_type::<PyBytes>()
            .call1((blob,))?
            .cast_into::<PyBytes>()?;
        converted.as_bytes()
    };
    let file = py
        .detach(|| ptekit_format::flat_tensor::FlatTensorFile::parse(bytes, &options))
        .map_err(|e| PyErr::from(BindError::from(e)))?;
    let out = flat_tensor::to_payload(py, &file, classes)?;
    // The file borrows from `keep`: drop it first.
    drop(file);
    drop(keep);
    Ok(out)
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(serialize_pte_binary, m)?)?;
    m.add_function(wrap_pyfunction!(write_pte, m)?)?;
    m.add_function(wrap_pyfunction!(deserialize_pte_binary, m)?)?;
    m.add_function(wrap_pyfunction!(serialize_bundled_program, m)?)?;
    m.add_function(wrap_pyfunction!(write_bundled_program, m)?)?;
    m.add_function(wrap_pyfunction!(deserialize_bundled_program, m)?)?;
    m.add_function(wrap_pyfunction!(serialize_flat_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(deserialize_flat_tensor, m)?)?;
    xnnpack::register(m)?;
    reader::register(m)?;
    m.add_class::<PteBinary>()?;
    m.add_class::<FlatTensorBinary>()?;
    m.add("PteError", m.py().get_type::<PteError>())?;
    Ok(())
}
