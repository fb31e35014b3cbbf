//! Tensor-data files (`.ptd`): the reference's `DataPayload`
//! (`executorch.exir._serialize.data_serializer`) to the Rust payload ([`payload`]), the
//! serialized file object ([`FlatTensorBinary`]), and a parsed file back to the
//! reference's `DataPayload` ([`to_payload`]), like
//! `executorch.extension.flat_tensor.serialize.serialize.FlatTensorSerializer`
//! (executorch 1.5.1).

use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::exceptions::PyKeyError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use pyo3::IntoPyObjectExt;

use ptekit_format::flat_tensor::{
    DataEntry, DataPayload, FlatTensorFile, PlannedFile, TensorLayout, FLAT_TENSOR_VERSION,
};
use ptekit_format::program::ScalarType;

use crate::bytes::Keep;
use crate::error::{BindError, ConvError, ConvResult, Seg};
use crate::to_rust::{bytes, data_entry_place, field, int, list, type_name};

type Any<'py> = Bound<'py, PyAny>;

// ---------------------------------------------------------------------------------------
// Python → Rust.

/// Converts the reference's `DataPayload` (`buffers`, `named_data: {key: DataEntry}`).
///
/// Like the reference's `_extract_named_data`, only the buffers some entry points at are
/// read (`buffers[i]`, any sequence); the others are left empty. Buffers are borrowed
/// into `keep` (`bytes`, any C-contiguous buffer, `FileBackedData` memory-mapped, else
/// `bytes(x)`, e.g. a `Cord`).
pub fn payload<'py>(obj: &Any<'py>, keep: &mut Keep) -> ConvResult<DataPayload<'static>> {
    let named_data = field!(obj, "named_data", |v: &Any<'_>| entries(v))?;
    let buffers_obj = field!(obj, "buffers", |v: &Any<'py>| Ok(v.clone()))?;
    let n = buffers_obj.len().map_err(|e| {
        ConvError::from_py(obj.py(), "expected a sequence", e).at(Seg::Field("buffers"))
    })?;
    let mut buffers: Vec<Cow<'static, [u8]>> = (0..n).map(|_| Cow::Borrowed(&[][..])).collect();
    let mut read = vec![false; n];
    for (key, entry) in &named_data {
        let i = entry.buffer_index;
        let Some(done) = read.get_mut(i) else {
            return Err(ConvError::new(format!("{i} is out of range ({n} buffers)"))
                .at(Seg::Field("buffer_index"))
                .at(Seg::Key(key.clone()))
                .at(Seg::Field("named_data")));
        };
        if std::mem::replace(done, true) {
            continue;
        }
        let data = buffers_obj
            .get_item(i)
            .map_err(|e| ConvError::from_py(obj.py(), "cannot read the buffer", e))
            .and_then(|b| bytes(&b, keep))
            .map_err(|e| e.at(Seg::Index(i)).at(Seg::Field("buffers")))?;
        if let Some(slot) = buffers.get_mut(i) {
            *slot = data;
        }
    }
    Ok(DataPayload {
        buffers,
        named_data: named_data
            .into_iter()
            .map(|(key, mut e)| {
                e.key = key;
                e
            })
            .collect(),
    })
}

/// `named_data`: a mapping (`.items()`) of `str` keys to `DataEntry`s, in its order.
fn entries(obj: &Any<'_>) -> ConvResult<Vec<(String, DataEntry)>> {
    let py = obj.py();
    let items = obj
        .call_method0(intern!(py, "items"))
        .map_err(|e| ConvError::from_py(py, "expected a dict", e))?;
    let iter = items
        .try_iter()
        .map_err(|e| ConvError::from_py(py, "expected a dict", e))?;
    let mut out = Vec::new();
    for item in iter {
        let item = item.map_err(|e| ConvError::from_py(py, "iteration failed", e))?;
        let (k, entry): (Any<'_>, Any<'_>) = item
            .extract()
            .map_err(|e| ConvError::from_py(py, "expected (key, DataEntry) items", e))?;
        let key: String = k
            .cast::<PyString>()
            .map_err(|_| ConvError::new(format!("key is not a str but {}", type_name(&k))))
            .and_then(|s| {
                s.to_str()
                    .map(str::to_owned)
                    .map_err(|e| ConvError::from_py(py, "key is not valid UTF-8", e))
            })?;
        let convert = || -> ConvResult<DataEntry> {
            let (buffer_index, alignment) = data_entry_place(&entry)?;
            let tensor_layout = field!(&entry, "tensor_layout", |t: &Any<'_>| {
                if t.is_none() {
                    Ok(None)
                } else {
                    layout(t).map(Some)
                }
            })?;
            Ok(DataEntry {
                key: String::new(),
                buffer_index,
                alignment,
                tensor_layout,
            })
        };
        let entry = convert().map_err(|e| e.at(Seg::Key(key.clone())))?;
        out.push((key, entry));
    }
    Ok(out)
}

/// `TensorLayout(scalar_type, sizes, dim_order)`, as `json.dumps` + `flatc` read it:
/// the enum by its integer value, the lists element by element.
fn layout(obj: &Any<'_>) -> ConvResult<TensorLayout> {
    Ok(TensorLayout {
        scalar_type: ScalarType(field!(obj, "scalar_type", int::<i8>)?),
        sizes: Some(field!(obj, "sizes", |v: &Any<'_>| list(v, int::<i32>))?),
        dim_order: Some(field!(obj, "dim_order", |v: &Any<'_>| list(v, int::<u8>))?),
    })
}

// ---------------------------------------------------------------------------------------
// The serialized file.

/// A serialized `.ptd` file, not assembled in memory; usable like the reference's `Cord`
/// (`bytes(x)`, `len(x)`, `x.write_to_file(f)`); also accepted by
/// `FlatTensorSerializer.deserialize`.
///
/// Holds the packed flatbuffer and references to the buffers of the `DataPayload` it was
/// serialized from (kept alive by this object; `bytes` objects are immutable, other
/// buffers are exported and cannot be resized while held), like
/// [`PteBinary`](crate::result::PteBinary).
#[pyclass(module = "ptekit", name = "FlatTensorBinary", frozen)]
pub struct FlatTensorBinary {
    // Declared before `keep`: fields drop in order, so the plan (which borrows from the
    // objects in `keep`) is dropped first.
    plan: PlannedFile<'static>,
    _keep: Keep,
}

impl FlatTensorBinary {
    /// Wraps a plan and the objects it borrows from.
    pub fn new(plan: PlannedFile<'static>, keep: Keep) -> Self {
        Self { plan, _keep: keep }
    }

    /// The whole file assembled in memory.
    pub fn to_vec(&self) -> Result<Vec<u8>, BindError> {
        self.plan
            .to_vec()
            .map_err(|e| BindError::FlatTensor(e.into()))
    }

    fn len(&self) -> PyResult<usize> {
        usize::try_from(self.plan.len())
            .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("file too large"))
    }
}

#[pymethods]
impl FlatTensorBinary {
    /// The file size in bytes.
    fn __len__(&self) -> PyResult<usize> {
        self.len()
    }

    /// The whole file as one `bytes` object.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        crate::planned::to_pybytes(py, &self.plan)
    }

    /// The whole file as `bytes` (same as `bytes(self)`).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.__bytes__(py)
    }

    /// Writes the file to a binary file object (anything with `write(bytes)`), like the
    /// reference's `Cord.write_to_file`: large pieces (weights) as memoryviews of the
    /// memory they live in, small ones gathered.
    fn write_to_file(&self, py: Python<'_>, outfile: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::planned::write_to_file(py, &self.plan, outfile)
    }

    fn __repr__(&self) -> String {
        format!("<ptekit.FlatTensorBinary of {} bytes>", self.plan.len())
    }
}

// ---------------------------------------------------------------------------------------
// Rust → Python.

fn class<'py>(dict: &Bound<'py, PyDict>, name: &'static str) -> PyResult<Any<'py>> {
    dict.get_item(name)?
        .ok_or_else(|| PyKeyError::new_err(name))
}

/// A field the reference's reader requires (it raises `TypeError` through its JSON
/// path) but the file does not have.
fn absent(path: String) -> BindError {
    BindError::Convert(ConvError::new(format!(
        "{path} is absent from the file (the reference's reader requires it and fails; ptekit too)"
    )))
}

/// What the reference's `FlatTensorSerializer.deserialize` returns for a parsed file:
/// `DataPayload(buffers=[bytes per segment], named_data={key: DataEntry(segment_index, 1,
/// TensorLayout or None)})`. `classes` maps `DataPayload`, `DataEntry`, `TensorLayout`,
/// `ScalarType` to the reference's classes.
pub fn to_payload<'py>(
    py: Python<'py>,
    file: &FlatTensorFile<'_>,
    classes: &Bound<'py, PyDict>,
) -> Result<Any<'py>, BindError> {
    let ft = file.flat_tensor();
    if ft.version > FLAT_TENSOR_VERSION {
        return Err(BindError::Convert(ConvError::new(format!(
            "version {} is newer than this reader supports (max {FLAT_TENSOR_VERSION}); \
             the reference raises NotImplementedError",
            ft.version
        ))));
    }
    if ft.segments.is_none() {
        return Err(absent("segments".into()));
    }
    let named = ft
        .named_data
        .as_deref()
        .ok_or_else(|| absent("named_data".into()))?;
    let object_new = py
        .get_type::<pyo3::types::PyAny>()
        .getattr(intern!(py, "__new__"))?;
    let make = |cls: &Any<'py>, fields: &[(&Bound<'py, PyString>, Any<'py>)]| {
        let obj = object_new.call1((cls,))?;
        for (name, value) in fields {
            obj.setattr(*name, value)?;
        }
        Ok::<_, PyErr>(obj)
    };
    let data_entry = class(classes, "DataEntry")?;
    let tensor_layout = class(classes, "TensorLayout")?;
    let scalar_type_cls = class(classes, "ScalarType")?;
    let mut scalar_types: HashMap<i8, Any<'py>> = HashMap::new();

    let buffers = PyList::new(py, file.segments().iter().map(|s| PyBytes::new(py, s.data)))?;
    let named_dict = PyDict::new(py);
    let one = 1u32.into_bound_py_any(py)?;
    for (i, n) in named.iter().enumerate() {
        let key = n
            .key
            .as_deref()
            .ok_or_else(|| absent(format!("named_data[{i}].key")))?;
        let layout = match &n.tensor_layout {
            None => py.None().into_bound(py),
            Some(l) => {
                let v = l.scalar_type.0;
                let st = match scalar_types.get(&v) {
                    Some(m) => m.clone(),
                    None => {
                        let m = scalar_type_cls.call1((v,)).map_err(|e| {
                            BindError::Convert(ConvError::from_py(
                                py,
                                &format!(
                                    "named_data[{i}].tensor_layout.scalar_type: {v} is not a valid ScalarType"
                                ),
                                e,
                            ))
                        })?;
                        scalar_types.insert(v, m.clone());
                        m
                    }
                };
                let sizes = l
                    .sizes
                    .as_ref()
                    .ok_or_else(|| absent(format!("named_data[{i}].tensor_layout.sizes")))?;
                let dim_order = l
                    .dim_order
                    .as_ref()
                    .ok_or_else(|| absent(format!("named_data[{i}].tensor_layout.dim_order")))?;
                make(
                    &tensor_layout,
                    &[
                        (intern!(py, "scalar_type"), st),
                        (intern!(py, "sizes"), PyList::new(py, sizes)?.into_any()),
                        (
                            intern!(py, "dim_order"),
                            PyList::new(py, dim_order)?.into_any(),
                        ),
                    ],
                )?
            }
        };
        let entry = make(
            &data_entry,
            &[
                (
                    intern!(py, "buffer_index"),
                    n.segment_index.into_bound_py_any(py)?,
                ),
                (intern!(py, "alignment"), one.clone()),
                (intern!(py, "tensor_layout"), layout),
            ],
        )?;
        // A repeated key keeps its first position and takes the last value, like the
        // reference's dict assignment.
        named_dict.set_item(key, entry)?;
    }
    let payload_cls = class(classes, "DataPayload")?;
    Ok(make(
        &payload_cls,
        &[
            (intern!(py, "buffers"), buffers.into_any()),
            (intern!(py, "named_data"), named_dict.into_any()),
        ],
    )?)
}
