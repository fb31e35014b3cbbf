//! The object `serialize_pte_binary` returns: a planned `.pte` file that borrows the
//! weights from the Python objects it was made from, used like the reference's `Cord`
//! (`bytes(x)`, `len(x)`, `x.write_to_file(f)`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ptekit_format::pte::PlannedPte;

use crate::bytes::Keep;
use crate::error::BindError;

/// Bytes passed to one `write()` call of a Python file object.
const WRITE_CHUNK: usize = 8 << 20;

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

    /// Copies output bytes `[start, start + out.len())` into `out`.
    fn fill(&self, start: u64, out: &mut [u8]) {
        self.plan.as_file().read_at(start, out);
    }

    /// Writes the file to `path` atomically, with the GIL released.
    pub fn write_path(&self, py: Python<'_>, path: &std::path::Path) -> PyResult<u64> {
        let plan = &self.plan;
        py.detach(|| plan.write_atomic(path, &Default::default(), None))
            .map_err(|e| PyErr::from(BindError::from(e)))
    }

    fn to_pybytes<'py>(
        &self,
        py: Python<'py>,
        start: u64,
        len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        PyBytes::new_with(py, len, |buf| {
            // The buffer is zero-initialized; filling it is pure Rust work.
            self.fill(start, buf);
            Ok(())
        })
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
        let len = self.__len__()?;
        self.to_pybytes(py, 0, len)
    }

    /// The whole file as `bytes` (same as `bytes(self)`).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.__bytes__(py)
    }

    /// Writes the file to a binary file object (anything with `write(bytes)`), in chunks
    /// of at most 8 MiB, like the reference's `Cord.write_to_file`.
    fn write_to_file(&self, py: Python<'_>, outfile: &Bound<'_, PyAny>) -> PyResult<()> {
        let total = self.plan.len();
        let write = outfile.getattr(pyo3::intern!(py, "write"))?;
        let mut start = 0u64;
        while start < total {
            let n = usize::try_from((total - start).min(WRITE_CHUNK as u64)).unwrap_or(WRITE_CHUNK);
            let chunk = self.to_pybytes(py, start, n)?;
            write.call1((chunk,))?;
            start += n as u64;
        }
        Ok(())
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
