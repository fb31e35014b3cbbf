//! XNNPACK payloads from Python: the reference's `XNNGraph` dataclasses
//! (`executorch.backends.xnnpack.serialization.xnnpack_graph_schema`) to the Rust model
//! and back.
//!
//! The conversion accepts exactly the values whose meaning under the reference
//! (`json.dumps` with `_DataclassEncoder`, then `flatc --binary`) is known and
//! reproduced: `int` (not `bool`) in range for integer fields, `int`/`float` and the
//! strings `"inf"`, `"+inf"`, `"-inf"`, `"nan"` for float fields, `list`/`tuple` for
//! vectors, `str` for strings, `None` for absent vectors and strings, dataclass
//! instances with exactly the schema's fields, union members by class name. Anything
//! else (an out-of-range int, a `numpy` scalar, a numeric string, an unknown class...)
//! raises `ptekit.xnnpack.XnnpackUnsupported` naming the field path, so that a caller
//! can hand the graph to the reference, which then does what it does (flatc accepts it,
//! or `CalledProcessError`, or `TypeError` from `json.dumps`).

use std::collections::HashMap;

use pyo3::create_exception;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use ptekit_format::xnnpack::{
    self as x, flatc_f32, flatc_f32_from_decimal, FieldKind, FieldSink, FieldSource, XNNGraph,
};

use crate::error::{ConvError, ConvResult, PteError, Seg};

create_exception!(
    ptekit,
    XnnpackUnsupported,
    PteError,
    "An XNNGraph holds a value whose treatment by the reference (JSON + flatc) ptekit does \
     not reproduce, e.g. an integer out of range for its field (flatc fails), a numpy \
     scalar (json.dumps fails) or a numeric string. The message names the field path."
);

type Any<'py> = Bound<'py, PyAny>;

fn unsupported(msg: impl Into<String>) -> ConvError {
    ConvError::new(msg)
}

fn type_name(obj: &Any<'_>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The conversion state: which classes were checked to have exactly the expected
/// dataclass fields (by type object address).
struct Conv<'py> {
    py: Python<'py>,
    fields_fn: Any<'py>,
    checked: HashMap<(usize, usize), bool>,
    /// Interned attribute names, by the address of the `&'static str` (creating a
    /// Python string per `getattr` dominated the conversion of large graphs).
    names: HashMap<(usize, usize), Bound<'py, PyString>>,
}

impl<'py> Conv<'py> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Conv {
            py,
            fields_fn: py.import("dataclasses")?.getattr("fields")?,
            checked: HashMap::new(),
            names: HashMap::new(),
        })
    }

    /// Checks that `obj` is a dataclass instance whose fields are exactly `expected`, in
    /// order (so that the reference's JSON has exactly these keys, in this order).
    fn expect_fields(
        &mut self,
        obj: &Any<'py>,
        expected: &'static [&'static str],
    ) -> ConvResult<()> {
        let ty = obj.get_type();
        let key = (ty.as_ptr() as usize, expected.as_ptr() as usize);
        let ok = match self.checked.get(&key) {
            Some(ok) => *ok,
            None => {
                let ok = self
                    .fields_fn
                    .call1((&ty,))
                    .ok()
                    .and_then(|fs| {
                        let names: Option<Vec<String>> = fs
                            .try_iter()
                            .ok()?
                            .map(|f| f.ok()?.getattr("name").ok()?.extract::<String>().ok())
                            .collect();
                        names
                    })
                    .is_some_and(|names| {
                        names
                            .iter()
                            .map(String::as_str)
                            .eq(expected.iter().copied())
                    });
                self.checked.insert(key, ok);
                ok
            }
        };
        if ok {
            Ok(())
        } else {
            Err(unsupported(format!(
                "{} is not a dataclass with exactly the fields {expected:?}",
                type_name(obj)
            )))
        }
    }

    fn attr(&mut self, obj: &Any<'py>, name: &'static str) -> ConvResult<Any<'py>> {
        let py = self.py;
        let key = self
            .names
            .entry((name.as_ptr() as usize, name.len()))
            .or_insert_with(|| PyString::intern(py, name));
        obj.getattr(&*key).map_err(|e| {
            ConvError::from_py(self.py, "cannot read attribute", e).at(Seg::Field(name))
        })
    }

    fn field<T>(
        &mut self,
        obj: &Any<'py>,
        name: &'static str,
        f: impl FnOnce(&mut Self, &Any<'py>) -> ConvResult<T>,
    ) -> ConvResult<T> {
        let v = self.attr(obj, name)?;
        f(self, &v).map_err(|e| e.at(Seg::Field(name)))
    }
}

fn is_int(v: &Any<'_>) -> bool {
    v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>()
}

fn int<T: for<'a, 'py> FromPyObject<'a, 'py>>(v: &Any<'_>, what: &str) -> ConvResult<T> {
    if !is_int(v) {
        return Err(unsupported(format!(
            "expected an int for a {what} field, got {}",
            type_name(v)
        )));
    }
    v.extract::<T>()
        .map_err(|_| unsupported(format!("{v} is out of range for a {what} field")))
}

fn float(v: &Any<'_>) -> ConvResult<f32> {
    if v.is_instance_of::<PyFloat>() {
        let x: f64 = v
            .extract()
            .map_err(|e| ConvError::from_py(v.py(), "float", e))?;
        return Ok(flatc_f32(x));
    }
    if is_int(v) {
        // json.dumps writes int.__repr__: the exact decimal digits.
        let text = match v.extract::<i64>() {
            Ok(i) => i.to_string(),
            Err(_) => v
                .str()
                .map_err(|e| ConvError::from_py(v.py(), "str", e))?
                .to_string(),
        };
        return flatc_f32_from_decimal(&text)
            .ok_or_else(|| unsupported(format!("cannot read int {text} as a float")));
    }
    if let Ok(s) = v.cast::<PyString>() {
        match s.to_str().unwrap_or("") {
            "inf" | "+inf" => return Ok(f32::INFINITY),
            "-inf" => return Ok(f32::NEG_INFINITY),
            "nan" => return Ok(f32::from_bits(x::CANONICAL_NAN)),
            _ => {}
        }
    }
    Err(unsupported(format!(
        "expected an int, a float or \"inf\"/\"-inf\"/\"nan\" for a float field, got {}",
        v.repr().map(|r| r.to_string()).unwrap_or_default()
    )))
}

fn opt_list<'py, T>(
    v: &Any<'py>,
    mut f: impl FnMut(&Any<'py>) -> ConvResult<T>,
) -> ConvResult<Option<Vec<T>>> {
    if v.is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut each = |i: usize, item: Any<'py>| -> ConvResult<()> {
        out.push(f(&item).map_err(|e| e.at(Seg::Index(i)))?);
        Ok(())
    };
    if let Ok(l) = v.cast::<PyList>() {
        for (i, item) in l.iter().enumerate() {
            each(i, item)?;
        }
    } else if let Ok(t) = v.cast::<PyTuple>() {
        for (i, item) in t.iter().enumerate() {
            each(i, item)?;
        }
    } else {
        return Err(unsupported(format!(
            "expected a list, a tuple or None, got {}",
            type_name(v)
        )));
    }
    Ok(Some(out))
}

fn opt_string(v: &Any<'_>) -> ConvResult<Option<String>> {
    if v.is_none() {
        return Ok(None);
    }
    let s = v
        .cast::<PyString>()
        .map_err(|_| unsupported(format!("expected a str or None, got {}", type_name(v))))?;
    s.to_str()
        .map(|s| Some(s.to_owned()))
        .map_err(|_| unsupported("string is not valid UTF-8 (lone surrogate)"))
}

struct PySource<'a, 'py> {
    conv: &'a mut Conv<'py>,
    obj: &'a Any<'py>,
}

impl FieldSource for PySource<'_, '_> {
    type Error = ConvError;
    fn u32(&mut self, name: &'static str, _: usize) -> ConvResult<u32> {
        self.conv
            .field(self.obj, name, |_, v| int::<u32>(v, "uint"))
    }
    fn f32(&mut self, name: &'static str, _: usize) -> ConvResult<f32> {
        self.conv.field(self.obj, name, |_, v| float(v))
    }
    fn u32s(&mut self, name: &'static str, _: usize) -> ConvResult<Option<Vec<u32>>> {
        self.conv.field(self.obj, name, |_, v| {
            opt_list(v, |i| int::<u32>(i, "uint"))
        })
    }
}

/// The field names of the node tables, in slot order, as static lists for
/// [`Conv::expect_fields`].
fn node_field_names(fields: &'static [(&'static str, FieldKind)]) -> &'static [&'static str] {
    use std::sync::OnceLock;
    static CACHE: OnceLock<std::sync::Mutex<HashMap<usize, &'static [&'static str]>>> =
        OnceLock::new();
    let map = CACHE.get_or_init(Default::default);
    let mut guard = match map.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    guard.entry(fields.as_ptr() as usize).or_insert_with(|| {
        let names: Vec<&'static str> = fields.iter().map(|(n, _)| *n).collect();
        Box::leak(names.into_boxed_slice())
    })
}

impl<'py> Conv<'py> {
    fn graph(&mut self, g: &Any<'py>) -> ConvResult<XNNGraph> {
        self.expect_fields(
            g,
            &[
                "version",
                "xnodes",
                "xvalues",
                "num_externs",
                "input_ids",
                "output_ids",
                "constant_data",
            ],
        )?;
        Ok(XNNGraph {
            version: self.field(g, "version", |_, v| opt_string(v))?,
            xnodes: self.field(g, "xnodes", |c, v| opt_list(v, |n| c.xnode(n)))?,
            xvalues: self.field(g, "xvalues", |c, v| opt_list(v, |n| c.xvalue(n)))?,
            num_externs: self.field(g, "num_externs", |_, v| int(v, "uint"))?,
            input_ids: self.field(g, "input_ids", |_, v| opt_list(v, |i| int(i, "uint")))?,
            output_ids: self.field(g, "output_ids", |_, v| opt_list(v, |i| int(i, "uint")))?,
            constant_buffer: None,
            mem_buffer_sizes: None,
            constant_data: self.field(g, "constant_data", |c, v| {
                opt_list(v, |e| {
                    c.expect_fields(e, &["offset", "size", "named_key"])?;
                    Ok(x::ConstantDataOffset {
                        offset: c.field(e, "offset", |_, v| int(v, "uint64"))?,
                        size: c.field(e, "size", |_, v| int(v, "uint64"))?,
                        named_key: c.field(e, "named_key", |_, v| opt_string(v))?,
                    })
                })
            })?,
        })
    }

    fn xnode(&mut self, n: &Any<'py>) -> ConvResult<x::XNode> {
        self.expect_fields(n, &["xnode_union", "debug_handle", "output_min_max"])?;
        let xnode_union = self.field(n, "xnode_union", |c, u| {
            let name = type_name(u);
            let fields = x::XNodeUnion::fields_of(&name)
                .ok_or_else(|| unsupported(format!("{name} is not a member of XNodeUnion")))?;
            c.expect_fields(u, node_field_names(fields))?;
            let mut src = PySource { conv: c, obj: u };
            let node = x::XNodeUnion::take_named(&name, &mut src)
                .unwrap_or_else(|| Err(unsupported("unknown member")))?;
            Ok(node)
        })?;
        Ok(x::XNode {
            xnode_union: Some(xnode_union),
            debug_handle: self.field(n, "debug_handle", |_, v| int(v, "uint"))?,
            output_min_max: self.field(n, "output_min_max", |c, m| {
                if m.is_none() {
                    return Ok(None);
                }
                c.expect_fields(m, &["output_min", "output_max"])?;
                Ok(Some(x::OutputMinMax {
                    output_min: c.field(m, "output_min", |_, v| float(v))?,
                    output_max: c.field(m, "output_max", |_, v| float(v))?,
                }))
            })?,
        })
    }

    fn tensor(&mut self, t: &Any<'py>) -> ConvResult<x::XNNTensorValue> {
        self.expect_fields(
            t,
            &[
                "datatype",
                "num_dims",
                "dims",
                "constant_buffer_idx",
                "external_id",
                "flags",
                "id_out",
            ],
        )?;
        Ok(x::XNNTensorValue {
            datatype: self.field(t, "datatype", |_, v| {
                let d: i16 = int(v, "XNNDatatype")?;
                if !(0..=14).contains(&d) {
                    return Err(unsupported(format!("{d} is not an XNNDatatype value")));
                }
                Ok(x::XNNDatatype(d))
            })?,
            num_dims: self.field(t, "num_dims", |_, v| int(v, "uint"))?,
            dims: self.field(t, "dims", |_, v| opt_list(v, |i| int(i, "uint")))?,
            constant_buffer_idx: self.field(t, "constant_buffer_idx", |_, v| int(v, "uint"))?,
            external_id: self.field(t, "external_id", |_, v| int(v, "uint"))?,
            flags: self.field(t, "flags", |_, v| int(v, "uint"))?,
            id_out: self.field(t, "id_out", |_, v| int(v, "uint"))?,
            dq_datatype: x::XNNDatatype::INVALID,
        })
    }

    fn quant(&mut self, q: &Any<'py>) -> ConvResult<x::XNNQuantParams> {
        let name = type_name(q);
        let scales = |_: &mut Self, v: &Any<'py>| opt_list(v, float);
        Ok(match name.as_str() {
            "PerChannelQuant" => {
                self.expect_fields(
                    q,
                    &["scale", "channel_dim", "scale_buffer_idx", "num_scales"],
                )?;
                x::XNNQuantParams::PerChannelQuant(x::PerChannelQuant {
                    scale: self.field(q, "scale", scales)?,
                    channel_dim: self.field(q, "channel_dim", |_, v| int(v, "int"))?,
                    scale_buffer_idx: self.field(q, "scale_buffer_idx", |_, v| int(v, "uint"))?,
                    num_scales: self.field(q, "num_scales", |_, v| int(v, "uint"))?,
                })
            }
            "PerTensorQuant" => {
                self.expect_fields(q, &["scale", "zero_point"])?;
                x::XNNQuantParams::PerTensorQuant(x::PerTensorQuant {
                    scale: self.field(q, "scale", |_, v| float(v))?,
                    zero_point: self.field(q, "zero_point", |_, v| int(v, "int"))?,
                })
            }
            "PerTokenDynamicQuant" => {
                self.expect_fields(q, &["num_nonbatch_dims"])?;
                x::XNNQuantParams::PerTokenDynamicQuant(x::PerTokenDynamicQuant {
                    num_nonbatch_dims: self.field(q, "num_nonbatch_dims", |_, v| int(v, "int"))?,
                })
            }
            "PerChannelGroupQuant" => {
                self.expect_fields(
                    q,
                    &[
                        "scale",
                        "channel_dim",
                        "group_size",
                        "scale_bf16",
                        "scale_buffer_idx",
                        "num_scales",
                    ],
                )?;
                x::XNNQuantParams::PerChannelGroupQuant(x::PerChannelGroupQuant {
                    scale: self.field(q, "scale", scales)?,
                    channel_dim: self.field(q, "channel_dim", |_, v| int(v, "int"))?,
                    group_size: self.field(q, "group_size", |_, v| int(v, "int"))?,
                    scale_bf16: self
                        .field(q, "scale_bf16", |_, v| opt_list(v, |i| int(i, "ushort")))?,
                    scale_buffer_idx: self.field(q, "scale_buffer_idx", |_, v| int(v, "uint"))?,
                    num_scales: self.field(q, "num_scales", |_, v| int(v, "uint"))?,
                })
            }
            _ => {
                return Err(unsupported(format!(
                    "{name} is not a member of XNNQuantParams"
                )))
            }
        })
    }

    fn xvalue(&mut self, v: &Any<'py>) -> ConvResult<x::XValue> {
        self.expect_fields(v, &["xvalue_union"])?;
        let u = self.field(v, "xvalue_union", |c, u| {
            let name = type_name(u);
            match name.as_str() {
                "XNNTensorValue" => Ok(x::XValueUnion::XNNTensorValue(c.tensor(u)?)),
                "XNNQuantizedTensorValue" => {
                    c.expect_fields(u, &["tensor_value", "quant_params"])?;
                    let tv = c.field(u, "tensor_value", |c, t| {
                        if t.is_none() {
                            Err(unsupported("tensor_value is None"))
                        } else {
                            c.tensor(t)
                        }
                    })?;
                    let qp = c.field(u, "quant_params", Conv::quant)?;
                    Ok(x::XValueUnion::XNNQuantizedTensorValue(
                        x::XNNQuantizedTensorValue {
                            tensor_value: Some(tv),
                            quant_params: Some(qp),
                        },
                    ))
                }
                _ => Err(unsupported(format!(
                    "{name} is not a member of XValueUnion"
                ))),
            }
        })?;
        Ok(x::XValue {
            xvalue_union: Some(u),
        })
    }
}

fn to_graph(py: Python<'_>, graph: &Any<'_>) -> PyResult<XNNGraph> {
    let mut conv = Conv::new(py)?;
    conv.graph(graph)
        .map_err(|e| XnnpackUnsupported::new_err(e.at(Seg::Field("xnnpack_graph")).to_string()))
}

fn build_err(e: x::XnnpackError) -> PyErr {
    PteError::new_err(e.to_string())
}

/// `convert_to_flatbuffer(xnnpack_graph)`: the bytes of the reference's
/// `convert_to_flatbuffer` (flatc 24.3.25's), without JSON or flatc.
#[pyfunction]
pub fn xnnpack_convert_to_flatbuffer<'py>(
    py: Python<'py>,
    graph: &Any<'py>,
) -> PyResult<Bound<'py, PyBytes>> {
    let g = to_graph(py, graph)?;
    let fb = py
        .detach(|| x::convert_to_flatbuffer(&g))
        .map_err(build_err)?;
    Ok(PyBytes::new(py, &fb))
}

/// `serialize_xnnpack_binary(xnnpack_graph, constant_data_bytes)`: header, flatbuffer,
/// padding and constant data, as the reference.
#[pyfunction]
pub fn xnnpack_serialize_binary<'py>(
    py: Python<'py>,
    graph: &Any<'py>,
    constant_data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let g = to_graph(py, graph)?;
    let out = py
        .detach(|| x::serialize_xnnpack_binary(&g, constant_data))
        .map_err(build_err)?;
    Ok(PyBytes::new(py, &out))
}

// ------------------------------------------------------------------ Rust -> Python

struct Out<'py> {
    py: Python<'py>,
    schema: Any<'py>,
    new: Any<'py>,
    datatypes: Vec<Any<'py>>,
    classes: HashMap<&'static str, Any<'py>>,
}

impl<'py> Out<'py> {
    fn class(&mut self, name: &'static str) -> PyResult<Any<'py>> {
        if let Some(c) = self.classes.get(name) {
            return Ok(c.clone());
        }
        let c = self.schema.getattr(name)?;
        self.classes.insert(name, c.clone());
        Ok(c)
    }

    /// An instance of `name` without running `__init__`, with `fields` set.
    fn make(
        &mut self,
        name: &'static str,
        fields: &[(&'static str, Any<'py>)],
    ) -> PyResult<Any<'py>> {
        let cls = self.class(name)?;
        let obj = self.new.call1((&cls,))?;
        for (k, v) in fields {
            obj.setattr(*k, v)?;
        }
        Ok(obj)
    }

    fn int(&self, v: impl IntoPyObject<'py>) -> PyResult<Any<'py>> {
        v.into_bound_py_any(self.py)
    }

    fn float(&self, v: f32) -> Any<'py> {
        PyFloat::new(self.py, f64::from(v)).into_any()
    }

    fn opt<T>(&self, v: Option<T>, f: impl FnOnce(T) -> PyResult<Any<'py>>) -> PyResult<Any<'py>> {
        match v {
            None => Ok(self.py.None().into_bound(self.py)),
            Some(v) => f(v),
        }
    }

    fn ints<T: Copy + IntoPyObject<'py>>(&self, v: Option<&[T]>) -> PyResult<Any<'py>> {
        self.opt(v, |v| {
            Ok(PyList::new(self.py, v.iter().copied())?.into_any())
        })
    }

    fn datatype(&self, d: x::XNNDatatype) -> PyResult<Any<'py>> {
        match usize::try_from(d.0)
            .ok()
            .and_then(|i| self.datatypes.get(i))
        {
            Some(member) => Ok(member.clone()),
            None => self.int(d.0),
        }
    }

    fn tensor(&mut self, t: &x::XNNTensorValue) -> PyResult<Any<'py>> {
        let fields = [
            ("datatype", self.datatype(t.datatype)?),
            ("num_dims", self.int(t.num_dims)?),
            ("dims", self.ints(t.dims.as_deref())?),
            ("constant_buffer_idx", self.int(t.constant_buffer_idx)?),
            ("external_id", self.int(t.external_id)?),
            ("flags", self.int(t.flags)?),
            ("id_out", self.int(t.id_out)?),
        ];
        let obj = self.make("XNNTensorValue", &fields)?;
        if t.dq_datatype.0 != 0 {
            // Runtime-schema field the dataclass does not declare: kept as an extra
            // attribute (ignored by the serializers).
            obj.setattr("dq_datatype", self.datatype(t.dq_datatype)?)?;
        }
        Ok(obj)
    }

    fn floats(&self, v: Option<&[f32]>) -> PyResult<Any<'py>> {
        self.opt(v, |v| {
            Ok(PyList::new(self.py, v.iter().map(|x| f64::from(*x)))?.into_any())
        })
    }

    fn quant(&mut self, q: &x::XNNQuantParams) -> PyResult<Any<'py>> {
        match q {
            x::XNNQuantParams::PerChannelQuant(p) => {
                let f = [
                    ("scale", self.floats(p.scale.as_deref())?),
                    ("channel_dim", self.int(p.channel_dim)?),
                    ("scale_buffer_idx", self.int(p.scale_buffer_idx)?),
                    ("num_scales", self.int(p.num_scales)?),
                ];
                self.make("PerChannelQuant", &f)
            }
            x::XNNQuantParams::PerTensorQuant(p) => {
                let f = [
                    ("scale", self.float(p.scale)),
                    ("zero_point", self.int(p.zero_point)?),
                ];
                self.make("PerTensorQuant", &f)
            }
            x::XNNQuantParams::PerTokenDynamicQuant(p) => {
                let f = [("num_nonbatch_dims", self.int(p.num_nonbatch_dims)?)];
                self.make("PerTokenDynamicQuant", &f)
            }
            x::XNNQuantParams::PerChannelGroupQuant(p) => {
                let f = [
                    ("scale", self.floats(p.scale.as_deref())?),
                    ("channel_dim", self.int(p.channel_dim)?),
                    ("group_size", self.int(p.group_size)?),
                    ("scale_bf16", self.ints(p.scale_bf16.as_deref())?),
                    ("scale_buffer_idx", self.int(p.scale_buffer_idx)?),
                    ("num_scales", self.int(p.num_scales)?),
                ];
                self.make("PerChannelGroupQuant", &f)
            }
        }
    }

    fn node(&mut self, u: &x::XNodeUnion) -> PyResult<Any<'py>> {
        struct Sink<'a, 'py> {
            out: &'a Out<'py>,
            fields: Vec<(&'static str, Any<'py>)>,
            err: Option<PyErr>,
        }
        impl FieldSink for Sink<'_, '_> {
            fn u32(&mut self, name: &'static str, _: usize, value: u32) {
                match self.out.int(value) {
                    Ok(v) => self.fields.push((name, v)),
                    Err(e) => self.err = Some(e),
                }
            }
            fn f32(&mut self, name: &'static str, _: usize, value: f32) {
                self.fields.push((name, self.out.float(value)));
            }
            fn u32s(&mut self, name: &'static str, _: usize, value: Option<&[u32]>) {
                match self.out.ints(value) {
                    Ok(v) => self.fields.push((name, v)),
                    Err(e) => self.err = Some(e),
                }
            }
        }
        let mut sink = Sink {
            out: self,
            fields: Vec::with_capacity(20),
            err: None,
        };
        u.put(&mut sink);
        if let Some(e) = sink.err {
            return Err(e);
        }
        let fields = sink.fields;
        self.make(u.name(), &fields)
    }

    fn graph(&mut self, g: &XNNGraph) -> PyResult<Any<'py>> {
        let mut xnodes = None;
        if let Some(ns) = &g.xnodes {
            let mut v = Vec::with_capacity(ns.len());
            for n in ns {
                let union = match &n.xnode_union {
                    Some(u) => self.node(u)?,
                    None => self.py.None().into_bound(self.py),
                };
                let omm = match &n.output_min_max {
                    None => self.py.None().into_bound(self.py),
                    Some(m) => {
                        let f = [
                            ("output_min", self.float(m.output_min)),
                            ("output_max", self.float(m.output_max)),
                        ];
                        self.make("OutputMinMax", &f)?
                    }
                };
                let f = [
                    ("xnode_union", union),
                    ("debug_handle", self.int(n.debug_handle)?),
                    ("output_min_max", omm),
                ];
                v.push(self.make("XNode", &f)?);
            }
            xnodes = Some(PyList::new(self.py, v)?.into_any());
        }
        let mut xvalues = None;
        if let Some(vs) = &g.xvalues {
            let mut v = Vec::with_capacity(vs.len());
            for val in vs {
                let union = match &val.xvalue_union {
                    None => self.py.None().into_bound(self.py),
                    Some(x::XValueUnion::XNNTensorValue(t)) => self.tensor(t)?,
                    Some(x::XValueUnion::XNNQuantizedTensorValue(q)) => {
                        let tv = match &q.tensor_value {
                            None => self.py.None().into_bound(self.py),
                            Some(t) => self.tensor(t)?,
                        };
                        let qp = match &q.quant_params {
                            None => self.py.None().into_bound(self.py),
                            Some(p) => self.quant(p)?,
                        };
                        self.make(
                            "XNNQuantizedTensorValue",
                            &[("tensor_value", tv), ("quant_params", qp)],
                        )?
                    }
                };
                v.push(self.make("XValue", &[("xvalue_union", union)])?);
            }
            xvalues = Some(PyList::new(self.py, v)?.into_any());
        }
        let constant_data = match &g.constant_data {
            None => None,
            Some(cs) => {
                let mut v = Vec::with_capacity(cs.len());
                for c in cs {
                    let key = self.opt(c.named_key.as_deref(), |k| {
                        Ok(PyString::new(self.py, k).into_any())
                    })?;
                    let f = [
                        ("offset", self.int(c.offset)?),
                        ("size", self.int(c.size)?),
                        ("named_key", key),
                    ];
                    v.push(self.make("ConstantDataOffset", &f)?);
                }
                Some(PyList::new(self.py, v)?.into_any())
            }
        };
        let none = || self.py.None().into_bound(self.py);
        let f = [
            (
                "version",
                self.opt(g.version.as_deref(), |s| {
                    Ok(PyString::new(self.py, s).into_any())
                })?,
            ),
            ("xnodes", xnodes.unwrap_or_else(none)),
            ("xvalues", xvalues.unwrap_or_else(none)),
            ("num_externs", self.int(g.num_externs)?),
            ("input_ids", self.ints(g.input_ids.as_deref())?),
            ("output_ids", self.ints(g.output_ids.as_deref())?),
            ("constant_data", constant_data.unwrap_or_else(none)),
        ];
        let obj = self.make("XNNGraph", &f)?;
        if let Some(b) = &g.constant_buffer {
            let list: Vec<Any<'py>> = b
                .iter()
                .map(|b| {
                    self.opt(b.storage.as_deref(), |s| {
                        Ok(PyBytes::new(self.py, s).into_any())
                    })
                })
                .collect::<PyResult<_>>()?;
            obj.setattr("constant_buffer", PyList::new(self.py, list)?)?;
        }
        if g.mem_buffer_sizes.is_some() {
            obj.setattr(
                "mem_buffer_sizes",
                self.ints(g.mem_buffer_sizes.as_deref())?,
            )?;
        }
        Ok(obj)
    }
}

/// `deserialize_xnnpack_binary(blob, schema_module)`: verifies the payload (header,
/// flatbuffer, cross-references except named keys) and returns `(XNNGraph, constant
/// data bytes)` built from the classes of `schema_module`.
#[pyfunction]
pub fn xnnpack_deserialize_binary<'py>(
    py: Python<'py>,
    blob: &[u8],
    schema_module: &Any<'py>,
) -> PyResult<(Any<'py>, Bound<'py, PyBytes>)> {
    let payload = py
        .detach(|| {
            let p = x::decode_payload(blob, &ptekit_format::xnnpack::default_limits())?;
            x::validate_payload(&p, None)?;
            Ok::<_, x::XnnpackError>(p)
        })
        .map_err(build_err)?;
    let datatype_cls = schema_module.getattr(intern!(py, "XNNDatatype"))?;
    let datatypes = (0..15)
        .map(|i| datatype_cls.call1((i,)))
        .collect::<PyResult<Vec<_>>>()?;
    let mut out = Out {
        py,
        schema: schema_module.clone(),
        new: py
            .import("builtins")?
            .getattr("object")?
            .getattr("__new__")?,
        datatypes,
        classes: HashMap::new(),
    };
    let g = out.graph(&payload.graph)?;
    Ok((g, PyBytes::new(py, payload.constant_data)))
}

/// Registers the functions and the exception on the native module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(xnnpack_convert_to_flatbuffer, m)?)?;
    m.add_function(wrap_pyfunction!(xnnpack_serialize_binary, m)?)?;
    m.add_function(wrap_pyfunction!(xnnpack_deserialize_binary, m)?)?;
    m.add(
        "XnnpackUnsupported",
        m.py().get_type::<XnnpackUnsupported>(),
    )?;
    Ok(())
}
