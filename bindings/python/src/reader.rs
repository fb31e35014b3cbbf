//! Reading without torch or executorch: `ptekit.inspect` (the JSON of `ptekit inspect
//! --json`), `ptekit.verify` (the checks of `ptekit verify`) and the index behind `ptekit.safe_open` (which tensors a file stores and
//! where).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use ptekit_format::flat_tensor::{parse_verified, ReadOptions};
use ptekit_format::inspect::{inspect_with, verify, InspectError, InspectOptions, VerifyError};
use ptekit_format::mapped::MappedFile;
use ptekit_format::tensors::stored_tensors;

use crate::bytes::Keep;
use crate::error::{BindError, PteError};

impl From<InspectError> for BindError {
    fn from(e: InspectError) -> Self {
        match e {
            InspectError::Pte(e) => BindError::Pte(e),
            InspectError::Bundled(e) => BindError::Bundled(e),
            InspectError::FlatTensor(e) => BindError::FlatTensor(e),
            other @ InspectError::UnknownKind(_) => {
                BindError::Python(PteError::new_err(other.to_string()))
            }
        }
    }
}

/// Runs `f` on the bytes of `data`: a path (`str` / `os.PathLike`, memory-mapped; a
/// FIFO or directory is refused) or any object exporting a contiguous buffer (read in
/// place). `f` runs with the GIL held: it releases it (`py.detach`) around the work.
pub(crate) fn with_input<T>(
    data: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8]) -> PyResult<T>,
) -> PyResult<T> {
    let py = data.py();
    let is_path = data.is_instance_of::<PyString>()
        || data
            .getattr(pyo3::intern!(py, "__fspath__"))
            .is_ok_and(|f| f.is_callable());
    if is_path {
        let path: PathBuf = data.extract()?;
        let map = py
            .detach(|| MappedFile::open(&path))
            .map_err(|e| PyErr::from(BindError::Pte(e.into())))?;
        return f(map.bytes());
    }
    if let Ok(b) = data.cast::<PyBytes>() {
        return f(b.as_bytes());
    }
    let mut keep = Keep::default();
    let bytes: &[u8] = keep.borrow_buffer(data)?;
    let out = f(bytes);
    // Whatever `f` made from the bytes is gone; release the buffer last.
    drop(keep);
    out
}

/// `inspect_json(data, top=0)`: the text of `ptekit inspect --json [--top N]` for `data`
/// (path or bytes).
#[pyfunction]
#[pyo3(signature = (data, top=0))]
fn inspect_json(data: &Bound<'_, PyAny>, top: usize) -> PyResult<String> {
    let py = data.py();
    with_input(data, |bytes| {
        let options = InspectOptions { top, data: None };
        py.detach(|| inspect_with(bytes, &options).map(|i| i.to_json().to_string()))
            .map_err(|e| PyErr::from(BindError::from(e)))
    })
}

/// `tensor_entries(buffer)`: the tensors stored in `buffer` (a `.ptd`, `.pte` or
/// `.bpte`), as `(name, ScalarType name or None, sizes, dim_order, offset, nbytes)`
/// tuples in file order.
#[pyfunction]
fn tensor_entries<'py>(data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    let py = data.py();
    let entries = with_input(data, |bytes| {
        py.detach(|| stored_tensors(bytes))
            .map_err(|e| PyErr::from(BindError::from(e)))
    })?;
    let items = entries
        .into_iter()
        .map(|t| {
            let dtype = t.scalar_type.map(|s| {
                s.name()
                    .map_or_else(|| format!("ScalarType({})", s.0), str::to_string)
            });
            PyTuple::new(
                py,
                [
                    t.name.into_pyobject(py)?.into_any(),
                    dtype.into_pyobject(py)?.into_any(),
                    PyList::new(py, t.sizes)?.into_any(),
                    PyList::new(py, t.dim_order)?.into_any(),
                    t.offset.into_pyobject(py)?.into_any(),
                    t.nbytes.into_pyobject(py)?.into_any(),
                ],
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

impl From<VerifyError> for BindError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Read(e) => e.into(),
            other => BindError::Python(PteError::new_err(other.to_string())),
        }
    }
}

/// `verify_json(data, ptd=None)`: what `ptekit verify [--data PTD]` checks, for `data`
/// (path or bytes; `ptd` likewise); the JSON of what was checked, or `PteError`.
#[pyfunction]
#[pyo3(signature = (data, ptd=None))]
fn verify_json(data: &Bound<'_, PyAny>, ptd: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    let py = data.py();
    with_input(data, |bytes| {
        let run = |ptd_bytes: Option<&[u8]>| -> PyResult<String> {
            py.detach(|| -> Result<String, BindError> {
                // The .ptd is verified too, as `ptekit verify --data` does.
                let ptd_file = ptd_bytes
                    .map(|b| parse_verified(b, &ReadOptions::default()))
                    .transpose()?;
                Ok(verify(bytes, ptd_file.as_ref())?.to_string())
            })
            .map_err(PyErr::from)
        };
        match ptd {
            Some(p) => with_input(p, |pb| run(Some(pb))),
            None => run(None),
        }
    })
}

/// Adds the functions of this module to the native module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(inspect_json, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_entries, m)?)?;
    m.add_function(wrap_pyfunction!(verify_json, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
