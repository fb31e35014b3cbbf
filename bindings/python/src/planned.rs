//! A planned file (header, flatbuffer, borrowed weights, padding) handed to Python:
//! `bytes(x)` and `x.write_to_file(f)` of [`crate::result::PteBinary`] and
//! [`crate::flat_tensor::FlatTensorBinary`].
//!
//! - [`to_pybytes`] allocates the `bytes` object uninitialized and fills it straight from
//!   the pieces (PyO3's `PyBytes::new_with` zero-fills first, which costs a full extra
//!   pass over a weight-sized buffer), with the GIL released;
//! - [`write_to_file`] hands large pieces to `outfile.write` as read-only memoryviews of
//!   the memory they already live in (no copy), and gathers small pieces (headers,
//!   padding, small tensors) into one `bytes` per few MiB to keep `write` calls few.

#![allow(
    unsafe_code,
    reason = "fills an uninitialized Python bytes object and builds memoryviews through the C API"
)]

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ptekit_format::write::{Piece, PlannedFile};

/// Pieces at least this large are written from where they live; smaller ones are
/// gathered.
const DIRECT_PIECE: usize = 1 << 20;
/// Gathered bytes are written once they reach this size.
const GATHER_LIMIT: usize = 4 << 20;
/// `PyBUF_READ` (`Include/memoryobject.h`).
const PYBUF_READ: std::ffi::c_int = 0x100;

fn too_large() -> PyErr {
    pyo3::exceptions::PyOverflowError::new_err("file too large for this platform")
}

/// The whole file as one new `bytes` object.
pub fn to_pybytes<'py>(py: Python<'py>, file: &PlannedFile<'_>) -> PyResult<Bound<'py, PyBytes>> {
    let len = usize::try_from(file.len()).map_err(|_| too_large())?;
    let ssize = ffi::Py_ssize_t::try_from(len).map_err(|_| too_large())?;
    // SAFETY: the GIL is held; a NULL source asks CPython for an uninitialized `bytes`
    // of `ssize` bytes (documented C API); NULL is returned with an exception set on
    // failure, which `from_owned_ptr_or_err` turns into the error.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), ssize))?
    };
    let bytes = obj.cast_into::<PyBytes>()?;
    // SAFETY: `bytes` is a `bytes` object; its buffer is `len` writable bytes (plus the
    // terminating NUL CPython adds) that nobody else can see until we return it.
    let dst = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) }.cast::<u8>();
    if dst.is_null() {
        return Err(PyErr::fetch(py));
    }
    let addr = dst as usize;
    // The new object is referenced only here, so it can be filled without the GIL.
    py.detach(|| fill(file, addr, len))?;
    Ok(bytes)
}

/// Copies the pieces of `file` to the `len` bytes at address `dst`, never forming a
/// reference to the uninitialized destination.
fn fill(file: &PlannedFile<'_>, dst: usize, len: usize) -> PyResult<()> {
    let dst = dst as *mut u8;
    let mut pos = 0usize;
    for piece in file.pieces() {
        let n = usize::try_from(piece.len()).map_err(|_| too_large())?;
        let end = pos
            .checked_add(n)
            .filter(|e| *e <= len)
            .ok_or_else(too_large)?;
        match piece {
            // SAFETY: `pos..end` lies within the `len` bytes at `dst` (checked above).
            Piece::Zeros(_) => unsafe { std::ptr::write_bytes(dst.add(pos), 0, n) },
            other => {
                let src = file.piece_bytes(other);
                if src.len() != n {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err(
                        "planned piece out of range",
                    ));
                }
                // SAFETY: `src` is `n` readable bytes of the plan; `pos..end` lies within
                // the destination, which is a fresh allocation and cannot overlap them.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.add(pos), n) }
            }
        }
        pos = end;
    }
    if pos != len {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "planned size mismatch",
        ));
    }
    Ok(())
}

/// Writes the whole file with `outfile.write(...)`, large pieces from where they live.
///
/// The caller must keep everything `file` borrows alive during the call (the binary
/// objects hold it). Each memoryview is released after its `write` returns, so a file
/// object that kept it could not read freed memory later (it would get an error).
pub fn write_to_file(
    py: Python<'_>,
    file: &PlannedFile<'_>,
    outfile: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let write = outfile.getattr(pyo3::intern!(py, "write"))?;
    let mut gathered: Vec<u8> = Vec::new();
    let flush = |gathered: &mut Vec<u8>| -> PyResult<()> {
        if !gathered.is_empty() {
            write.call1((PyBytes::new(py, gathered),))?;
            gathered.clear();
        }
        Ok(())
    };
    for piece in file.pieces() {
        let n = usize::try_from(piece.len()).map_err(|_| too_large())?;
        match piece {
            Piece::Zeros(_) if n < DIRECT_PIECE => gathered.resize(gathered.len() + n, 0),
            Piece::Zeros(_) => {
                flush(&mut gathered)?;
                let zeros = vec![0u8; n.min(GATHER_LIMIT)];
                let mut left = n;
                while left > 0 {
                    let k = left.min(zeros.len());
                    write.call1((PyBytes::new(py, &zeros[..k]),))?;
                    left -= k;
                }
            }
            other => {
                let src = file.piece_bytes(other);
                if src.len() < DIRECT_PIECE {
                    gathered.extend_from_slice(src);
                } else {
                    flush(&mut gathered)?;
                    write_view(py, &write, src)?;
                }
            }
        }
        if gathered.len() >= GATHER_LIMIT {
            flush(&mut gathered)?;
        }
    }
    flush(&mut gathered)
}

/// `write(memoryview(src))` with a read-only view of `src`, released afterwards.
fn write_view(py: Python<'_>, write: &Bound<'_, PyAny>, src: &[u8]) -> PyResult<()> {
    let size = ffi::Py_ssize_t::try_from(src.len()).map_err(|_| too_large())?;
    // SAFETY: the GIL is held; the view is read-only (PyBUF_READ) over `src.len()`
    // readable bytes that outlive it: it is released below before `src` can go away, and
    // a released memoryview refuses every access.
    let view = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyMemoryView_FromMemory(src.as_ptr().cast_mut().cast(), size, PYBUF_READ),
        )?
    };
    let written = write.call1((&view,));
    let released = view.call_method0(pyo3::intern!(py, "release"));
    written?;
    released.map(|_| ())
}
