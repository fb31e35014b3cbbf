//! The object `serialize_pte_binary` returns: a planned `.pte` file that borrows the
//! weights from the Python objects it was made from, used like the reference's `Cord`
//! (`bytes(x)`, `len(x)`, `x.write_to_file(f)`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ptekit_format::pte::PlannedPte;

use crate::bytes::Keep;
use crate::error::BindError;

/// A serialized `.pte` file, not assembled in memory.
///
/// Holds the packed program flatbuffer and references to the weight bytes of the objects
/// it was serialized from (kept alive by this object; `bytes` objects are immutable,
/// other buffers are exported and cannot be resized while held).
#[pyclass(module = "ptekit", name = "PteBinary", frozen)]
pub struct PteBinary {
    // Declared before `keep`: fields drop in order, so the plan (which borrows from the
    // objects in `keep`) is dropped first.
    plan: PlannedPte<'static>,
    _keep: Keep,
}

impl PteBinary {
    /// Wraps a plan and the objects it borrows from.
    pub fn new(plan: PlannedPte<'static>, keep: Keep) -> Self {
        Self { plan, _keep: keep }
    }

    /// The planned file.
    pub fn file(&self) -> &ptekit_format::write::PlannedFile<'static> {
        self.plan.as_file()
    }

    /// Writes the file to `path` atomically, with the GIL released.
    pub fn write_path(&self, py: Python<'_>, path: &std::path::Path) -> PyResult<u64> {
        let plan = &self.plan;
        py.detach(|| plan.write_atomic(path, &Default::default(), None))
            .map_err(|e| PyErr::from(BindError::from(e)))
    }
}

#[pymethods]
impl PteBinary {
    /// The file size in bytes.
    fn __len__(&self) -> PyResult<usize> {
        usize::try_from(self.plan.len())
            .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("file too large"))
    }

    /// The whole file as one `bytes` object.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        crate::planned::to_pybytes(py, self.plan.as_file())
    }

    /// The whole file as `bytes` (same as `bytes(self)`).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.__bytes__(py)
    }

    /// Writes the file to a binary file object (anything with `write(bytes)`), like the
    /// reference's `Cord.write_to_file`: large pieces (weights) as memoryviews of the
    /// memory they live in, small ones gathered.
    fn write_to_file(&self, py: Python<'_>, outfile: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::planned::write_to_file(py, self.plan.as_file(), outfile)
    }

    /// Writes the file to `path` atomically (temporary file, fsync, rename); returns the
    /// number of bytes written.
    fn write(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<u64> {
        self.write_path(py, &path)
    }

    /// Size of the packed program flatbuffer (without the extended header and segments).
    #[getter]
    fn flatbuffer_size(&self) -> usize {
        self.plan.flatbuffer().len()
    }

    fn __repr__(&self) -> String {
        format!("<ptekit.PteBinary of {} bytes>", self.plan.len())
    }
}
