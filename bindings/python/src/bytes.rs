//! Borrowing byte data from Python objects without copying it.
//!
//! The reference serializer takes weights as `bytes` (sometimes `bytearray`,
//! `memoryview`, numpy arrays or `FileBackedData`). [`Keep`] borrows each of them for
//! the lifetime of a serialization: `bytes` directly (immutable), any other object
//! through the buffer protocol (an exported buffer cannot be resized or freed until it
//! is released), `FileBackedData` through a read-only memory map of its file. Only
//! objects that offer none of these are converted with `tobytes()` / `bytes(...)`, like
//! the reference's `_coerce_bytes`.
//!
//! PyO3 only offers the buffer protocol when built for the 3.11 stable ABI; this crate
//! targets 3.10, so the two functions (part of CPython's C API since 3.0 and of the
//! stable ABI since 3.11, with the same `Py_buffer` layout in every CPython 3 release)
//! are declared here.

#![allow(
    unsafe_code,
    reason = "memory-maps files and exposes buffers through the Python buffer protocol"
)]

use std::ffi::{c_char, c_int, c_void};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// CPython's `Py_buffer` (`Include/pybuffer.h`), unchanged since Python 3.3.
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: ffi::Py_ssize_t,
    itemsize: ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut ffi::Py_ssize_t,
    strides: *mut ffi::Py_ssize_t,
    suboffsets: *mut ffi::Py_ssize_t,
    internal: *mut c_void,
}

/// `PyBUF_SIMPLE`: a C-contiguous run of unsigned bytes, or an error.
const PYBUF_SIMPLE: c_int = 0;

extern "C" {
    fn PyObject_GetBuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// An exported buffer, released when dropped.
struct Exported {
    view: Box<RawBuffer>,
}

// SAFETY: the view is only a pointer pair plus a reference owned by the export; it is
// released with the GIL held (see `Drop`), and its memory is read only while the export
// is alive.
unsafe impl Send for Exported {}
// SAFETY: shared access only reads the exported memory.
unsafe impl Sync for Exported {}

impl Exported {
    /// Exports `obj`'s buffer as C-contiguous bytes.
    fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view = Box::new(RawBuffer {
            buf: std::ptr::null_mut(),
            obj: std::ptr::null_mut(),
            len: 0,
            itemsize: 0,
            readonly: 0,
            ndim: 0,
            format: std::ptr::null_mut(),
            shape: std::ptr::null_mut(),
            strides: std::ptr::null_mut(),
            suboffsets: std::ptr::null_mut(),
            internal: std::ptr::null_mut(),
        });
        // SAFETY: `obj` is a valid object and the GIL is held (`Bound`); `view` points to
        // writable memory of the `Py_buffer` layout. On failure the view is untouched
        // and a Python exception is set.
        let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *view, PYBUF_SIMPLE) };
        if rc != 0 {
            return Err(PyErr::take(obj.py())
                .unwrap_or_else(|| PyBufferError::new_err("buffer export failed")));
        }
        let ok = view.len >= 0 && (!view.buf.is_null() || view.len == 0);
        let exported = Self { view };
        if !ok {
            return Err(PyBufferError::new_err("invalid buffer"));
        }
        Ok(exported)
    }

    fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a successful PyBUF_SIMPLE export guarantees `len` contiguous readable
        // bytes at `buf`, valid until `PyBuffer_Release`, which only `Drop` calls.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        Python::attach(|_py| {
            // SAFETY: the view was filled by a successful `PyObject_GetBuffer` and is
            // released exactly once, with the GIL held.
            unsafe { PyBuffer_Release(&mut *self.view) }
        });
    }
}

/// One kept-alive source of bytes.
enum Held {
    Bytes(Py<PyBytes>),
    Buffer(Exported),
    Map(ptekit_format::mapped::MappedFile),
}

impl Held {
    /// The held bytes. Called with the GIL held, once, when the object is added.
    fn as_slice<'s>(&'s self, py: Python<'_>) -> &'s [u8] {
        match self {
            Held::Bytes(b) => b.as_bytes(py),
            Held::Buffer(e) => e.as_slice(),
            Held::Map(m) => m.bytes(),
        }
    }
}

/// Keeps the Python objects (and memory maps) whose bytes a model borrows alive and
/// unmovable. Slices handed out by [`Keep::borrow`] are valid for as long as the `Keep`
/// is; the owner must drop everything borrowing from it first.
#[derive(Default)]
pub struct Keep {
    held: Vec<Held>,
}

/// The bytes of one Python object: borrowed (valid while the [`Keep`] lives) or owned.
pub enum Data {
    /// Borrowed from an object in the [`Keep`].
    Borrowed(&'static [u8]),
    /// Copied (objects without a buffer).
    Owned(Vec<u8>),
}

impl Keep {
    /// Borrows `obj`'s bytes: `bytes`, objects with a `__ptekit_buffer__()` method (the
    /// buffer it returns), buffer-protocol objects (C-contiguous), `FileBackedData`
    /// (memory-mapped), else `obj.tobytes()` or `bytes(obj)`.
    pub fn borrow(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<Data> {
        let py = obj.py();
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Data::Borrowed(
                self.hold(py, Held::Bytes(b.clone().unbind())),
            ));
        }
        if let Ok(f) = obj.getattr(pyo3::intern!(py, "__ptekit_buffer__")) {
            // ptekit's own views (e.g. the exporter's `TensorBytes`, a `FileBackedData`
            // over a tensor's storage): the buffer they hand out, in place.
            let view = f.call0()?;
            let e = Exported::new(&view)?;
            return Ok(Data::Borrowed(self.hold(py, Held::Buffer(e))));
        }
        let plain = obj.is_instance_of::<PyString>()
            || obj.is_instance_of::<PyList>()
            || obj.is_instance_of::<PyTuple>();
        if !plain {
            // bytearray, memoryview, array.array, numpy arrays, ...; objects without a
            // (contiguous) buffer fall through to the conversions below.
            if let Ok(e) = Exported::new(obj) {
                return Ok(Data::Borrowed(self.hold(py, Held::Buffer(e))));
            }
        }
        if let Ok(path) = obj.getattr(pyo3::intern!(py, "_path")) {
            if obj.hasattr(pyo3::intern!(py, "write_to_file"))? {
                // FileBackedData: map the file instead of reading it into memory.
                let path: std::path::PathBuf = path.extract()?;
                return self.map_file(py, &path);
            }
        }
        let converted = match obj.getattr(pyo3::intern!(py, "tobytes")) {
            Ok(f) if f.is_callable() => f.call0()?,
            _ => py.get_type::<PyBytes>().call1((obj,))?,
        };
        let b = converted.cast_into::<PyBytes>().map_err(PyErr::from)?;
        Ok(Data::Borrowed(self.hold(py, Held::Bytes(b.unbind()))))
    }

    /// Borrows the bytes of an object that exports a buffer (`bytes`, `bytearray`,
    /// `memoryview`, ...), without any conversion: other objects are a `TypeError`.
    pub fn borrow_buffer(&mut self, obj: &Bound<'_, PyAny>) -> PyResult<&'static [u8]> {
        let py = obj.py();
        let held = if let Ok(b) = obj.cast::<PyBytes>() {
            Held::Bytes(b.clone().unbind())
        } else {
            let e = Exported::new(obj).map_err(|e| {
                let err = pyo3::exceptions::PyTypeError::new_err(format!(
                    "expected a bytes-like object or a path, got {}",
                    obj.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ));
                err.set_cause(py, Some(e));
                err
            })?;
            Held::Buffer(e)
        };
        Ok(self.hold(py, held))
    }

    /// Maps a file read-only (a regular file only: see `MappedFile::open`) and borrows
    /// its content.
    pub fn map_file(&mut self, py: Python<'_>, path: &std::path::Path) -> PyResult<Data> {
        let map = py
            .detach(|| ptekit_format::mapped::MappedFile::open(path))
            .map_err(|e| {
                PyErr::from(crate::error::BindError::from(
                    ptekit_format::pte::PteError::from(e),
                ))
            })?;
        if map.bytes().is_empty() {
            return Ok(Data::Owned(Vec::new()));
        }
        Ok(Data::Borrowed(self.hold(py, Held::Map(map))))
    }

    fn hold(&mut self, py: Python<'_>, held: Held) -> &'static [u8] {
        let slice = held.as_slice(py);
        let (ptr, len) = (slice.as_ptr(), slice.len());
        // Moving `held` into the vector does not move the data: it lives in the Python
        // object's heap allocation, the exporter's memory or the mapping.
        self.held.push(held);
        // SAFETY: `ptr..ptr + len` is memory owned by a Python object, an export or a
        // memory map that `self` keeps alive and unchanged (a `bytes` object is
        // immutable, an exported buffer cannot be resized or freed, a private read-only
        // map stays mapped) until `self` is dropped; owners drop every borrower before
        // the `Keep` (see `Keep`), so the 'static lifetime never outlives the data.
        let slice: &'static [u8] = unsafe { std::slice::from_raw_parts(ptr, len) };
        slice
    }
}
