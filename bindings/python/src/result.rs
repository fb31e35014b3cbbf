//! The object `serialize_pte_binary` returns: a planned `.pte` file that borrows the
//! weights from the Python objects it was made from, used like the reference's `Cord`
//! (`bytes(x)`, `len(x)`, `x.write_to_file(f)`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ptekit_format::pte::{Piece, PlannedPte};

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
        let mut pos: u64 = 0;
        let mut written = 0usize;
        let end = start.saturating_add(out.len() as u64);
        for piece in self.plan.pieces() {
            if pos >= end {
                break;
            }
            let (len, bytes): (u64, Option<&[u8]>) = match piece {
                Piece::Bytes(b) => (b.len() as u64, Some(b)),
                Piece::Owned(v) => (v.len() as u64, Some(v.as_slice())),
                Piece::Flatbuffer(r) => {
                    let b = self.plan.flatbuffer().get(r.clone()).unwrap_or(&[]);
                    (b.len() as u64, Some(b))
                }
                Piece::Zeros(n) => (*n, None),
            };
            let piece_end = pos.saturating_add(len);
            if piece_end > start {
                let from = start.saturating_sub(pos);
                let to = len.min(end - pos);
                let n = usize::try_from(to - from).unwrap_or(0);
                let dst = out.get_mut(written..written + n).unwrap_or(&mut []);
                match bytes {
                    Some(b) => {
                        let from = usize::try_from(from).unwrap_or(usize::MAX);
                        if let Some(src) = b.get(from..from.saturating_add(dst.len())) {
                            dst.copy_from_slice(src);
                        }
                    }
                    None => dst.fill(0),
                }
                written += n;
            }
            pos = piece_end;
        }
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
