//! Bundled programs (`.bpte`): the reference's schema dataclasses
//! (`executorch.devtools.bundled_program.schema`, executorch 1.5.1) to the Rust model
//! ([`from_schema`]) and back ([`to_schema`]).
//!
//! [`from_schema`] applies the conversions of the reference's `_convert_*` functions
//! (`serialize/__init__.py`): `int(scalar_type)`, `list(sizes)`, byte fields through
//! `_coerce_bytes` (borrowed here, see [`Keep`]), the union member chosen with
//! `isinstance` in the order `Tensor`, `Int`, `Bool`, `Double`, anything else packed
//! as `NONE`; every list is required (the reference iterates it).
//!
//! [`to_schema`] builds what `deserialize_from_flatbuffer_to_bundled_program` returns.
//! The reference reads the file through `flatc --json --defaults-json`, so its result has
//! two quirks reproduced here:
//! - `Double.double_val` is the stored double printed in fixed notation with 12 decimals
//!   and parsed back ([`flatc_double`]): `1/3` reads as `0.333333333333`, `1e-13` as
//!   `0.0` (large values are exact);
//! - fields absent from the flatbuffer (vectors, strings, a `NONE` union) make it fail;
//!   here they raise [`PteError`](crate::error::PteError) naming the field.
//!
//! Where the reference fails for reasons of its JSON path only, ptekit returns the value:
//! infinite or NaN doubles (`json.loads` rejects flatc's `inf`/`nan`) and the scalar
//! types whose flatc name differs from the Python enum's (`QUINT4X2`, `QUINT2X4`) or
//! that the schema lacks (8, 9, 10) are returned as `float` and `ScalarType` members.

use std::collections::HashMap;

use pyo3::exceptions::PyKeyError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

use ptekit_format::bundled::{
    Bool, BundledMethodTestCase, BundledMethodTestSuite, BundledProgram, Double, Int, Tensor,
    Value, ValueUnion,
};
use ptekit_format::program::ScalarType;

use crate::bytes::Keep;
use crate::error::{BindError, ConvError, ConvResult, Seg};
use crate::result::PteBinary;
use crate::to_rust::{boolean, bytes, field, float, int, list, opt_string, type_name};

type Any<'py> = Bound<'py, PyAny>;

// ---------------------------------------------------------------------------------------
// Python → Rust.

/// How union members are recognized: the reference's classes (`isinstance`, like the
/// reference), or by class name when executorch is not importable.
pub enum Members<'py> {
    /// `(Tensor, Int, Bool, Double)` of `bp_schema`.
    Classes([Any<'py>; 4]),
    /// Class names `Tensor`, `Int`, `Bool`, `Double`.
    Names,
}

impl<'py> Members<'py> {
    /// From the tuple the Python layer passes (`None` for [`Members::Names`]).
    pub fn new(obj: &Any<'py>) -> PyResult<Self> {
        if obj.is_none() {
            return Ok(Members::Names);
        }
        let t = obj.cast::<PyTuple>()?;
        let get = |i: usize| t.get_item(i);
        Ok(Members::Classes([get(0)?, get(1)?, get(2)?, get(3)?]))
    }

    /// Index of the member `obj` is (0 Tensor, 1 Int, 2 Bool, 3 Double), if any.
    fn which(&self, obj: &Any<'py>) -> ConvResult<Option<usize>> {
        match self {
            Members::Classes(classes) => {
                for (i, cls) in classes.iter().enumerate() {
                    let hit = obj
                        .is_instance(cls)
                        .map_err(|e| ConvError::from_py(obj.py(), "isinstance failed", e))?;
                    if hit {
                        return Ok(Some(i));
                    }
                }
                Ok(None)
            }
            Members::Names => {
                let name = type_name(obj);
                Ok(["Tensor", "Int", "Bool", "Double"]
                    .iter()
                    .position(|n| *n == name))
            }
        }
    }
}

/// Where a bundled program's `.pte` bytes come from.
pub enum ProgramSource<'py> {
    /// Bytes (borrowed from the object, or converted).
    Bytes(std::borrow::Cow<'static, [u8]>),
    /// A [`PteBinary`]: the exporter's planned file under `install()`, streamed from its
    /// pieces (weights borrowed from the model) instead of being assembled.
    Planned(Bound<'py, PteBinary>),
}

/// Converts a `bp_schema.BundledProgram`. Byte data is borrowed into `keep`; the
/// returned model has no `program`, which is returned as its source.
pub fn from_schema<'py>(
    obj: &Any<'py>,
    members: &Members<'_>,
    keep: &mut Keep,
) -> ConvResult<(BundledProgram<'static>, ProgramSource<'py>)> {
    let version = field!(obj, "version", int::<u32>)?;
    let suites = field!(obj, "method_test_suites", |v: &Any<'_>| list(v, |s| suite(
        s, members, keep
    )))?;
    let program = field!(obj, "program", |v: &Any<'py>| match v.cast::<PteBinary>() {
        Ok(planned) => Ok(ProgramSource::Planned(planned.clone())),
        Err(_) => bytes(v, keep).map(ProgramSource::Bytes),
    })?;
    let model = BundledProgram {
        version,
        method_test_suites: Some(suites),
        program: None,
    };
    Ok((model, program))
}

fn suite(
    obj: &Any<'_>,
    members: &Members<'_>,
    keep: &mut Keep,
) -> ConvResult<BundledMethodTestSuite<'static>> {
    Ok(BundledMethodTestSuite {
        method_name: field!(obj, "method_name", opt_string)?,
        test_cases: Some(field!(obj, "test_cases", |v: &Any<'_>| list(v, |c| {
            case(c, members, keep)
        }))?),
    })
}

fn case(
    obj: &Any<'_>,
    members: &Members<'_>,
    keep: &mut Keep,
) -> ConvResult<BundledMethodTestCase<'static>> {
    Ok(BundledMethodTestCase {
        inputs: Some(field!(obj, "inputs", |v: &Any<'_>| list(v, |x| value(
            x, members, keep
        )))?),
        expected_outputs: Some(field!(obj, "expected_outputs", |v: &Any<'_>| list(
            v,
            |x| value(x, members, keep)
        ))?),
    })
}

fn value(obj: &Any<'_>, members: &Members<'_>, keep: &mut Keep) -> ConvResult<Value<'static>> {
    let val = field!(obj, "val", |v: &Any<'_>| {
        let val = match members.which(v)? {
            Some(0) => ValueUnion::Tensor(tensor(v, keep)?),
            Some(1) => ValueUnion::Int(Int {
                int_val: field!(v, "int_val", int::<i64>)?,
            }),
            Some(2) => ValueUnion::Bool(Bool {
                bool_val: field!(v, "bool_val", boolean)?,
            }),
            Some(3) => ValueUnion::Double(Double {
                double_val: field!(v, "double_val", float)?,
            }),
            // The reference packs anything else (None included) as the union's NONE.
            _ => return Ok(None),
        };
        Ok(Some(val))
    })?;
    Ok(Value { val })
}

/// `int(x)` range-checked as an int8, like `int(val.scalar_type)` then the builder's
/// `PrependInt8Slot`.
fn int8_of(obj: &Any<'_>) -> ConvResult<i8> {
    if let Ok(v) = int::<i8>(obj) {
        return Ok(v);
    }
    let converted = obj
        .py()
        .get_type::<PyInt>()
        .call1((obj,))
        .map_err(|e| ConvError::from_py(obj.py(), "int() failed", e))?;
    int::<i8>(&converted)
}

fn tensor(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<Tensor<'static>> {
    let scalar_type = ScalarType(field!(obj, "scalar_type", int8_of)?);
    let sizes = field!(obj, "sizes", |v: &Any<'_>| list(v, int::<i32>))?;
    let data = field!(obj, "data", |v: &Any<'_>| bytes(v, keep))?;
    let dim_order = field!(obj, "dim_order", |v: &Any<'_>| bytes(v, keep))?;
    Ok(Tensor {
        scalar_type,
        sizes: Some(sizes),
        data: Some(data),
        dim_order: Some(dim_order.into_owned()),
    })
}

// ---------------------------------------------------------------------------------------
// Rust → Python.

/// What the reference's reader makes of a stored double: `flatc` prints it with
/// `std::fixed` and 12 decimals (round half to even on the exact value, as Rust's
/// formatting does), then `float()` parses the text.
pub fn flatc_double(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.12}").parse::<f64>().unwrap_or(x)
}

/// Adds the step `seg` to the path of a conversion error.
fn at(seg: Seg) -> impl FnOnce(BindError) -> BindError {
    move |e| match e {
        BindError::Convert(c) => BindError::Convert(c.at(seg)),
        other => other,
    }
}

/// A field the reference's reader requires but the file does not have.
fn absent(name: &'static str) -> BindError {
    BindError::Convert(
        ConvError::new(
            "absent from the file (the reference's reader requires it and fails; ptekit too)",
        )
        .at(Seg::Field(name)),
    )
}

fn class<'py>(dict: &Bound<'py, PyDict>, name: &'static str) -> PyResult<Any<'py>> {
    dict.get_item(name)?
        .ok_or_else(|| PyKeyError::new_err(name))
}

struct Builder<'py> {
    py: Python<'py>,
    object_new: Any<'py>,
    bundled_program: Any<'py>,
    suite: Any<'py>,
    case: Any<'py>,
    value: Any<'py>,
    tensor: Any<'py>,
    int: Any<'py>,
    bool_: Any<'py>,
    double: Any<'py>,
    scalar_type: Any<'py>,
    scalar_types: HashMap<i8, Any<'py>>,
}

/// Builds the reference's `bp_schema.BundledProgram` from `bp`; `classes` maps the
/// class names (`BundledProgram`, `BundledMethodTestSuite`, `BundledMethodTestCase`,
/// `Value`, `Tensor`, `Int`, `Bool`, `Double`, `ScalarType`) to the classes.
pub fn to_schema<'py>(
    py: Python<'py>,
    bp: &BundledProgram<'_>,
    classes: &Bound<'py, PyDict>,
) -> Result<Any<'py>, BindError> {
    let mut b = Builder {
        py,
        object_new: py
            .get_type::<pyo3::types::PyAny>()
            .getattr(intern!(py, "__new__"))?,
        bundled_program: class(classes, "BundledProgram")?,
        suite: class(classes, "BundledMethodTestSuite")?,
        case: class(classes, "BundledMethodTestCase")?,
        value: class(classes, "Value")?,
        tensor: class(classes, "Tensor")?,
        int: class(classes, "Int")?,
        bool_: class(classes, "Bool")?,
        double: class(classes, "Double")?,
        scalar_type: class(classes, "ScalarType")?,
        scalar_types: HashMap::new(),
    };
    b.bundled_program(bp)
}

impl<'py> Builder<'py> {
    /// `object.__new__(cls)` with the given attributes (the dataclasses' `__init__` only
    /// assigns them).
    fn make(
        &self,
        cls: &Any<'py>,
        fields: &[(&Bound<'py, pyo3::types::PyString>, Any<'py>)],
    ) -> Result<Any<'py>, BindError> {
        let obj = self.object_new.call1((cls,))?;
        for (name, value) in fields {
            obj.setattr(*name, value)?;
        }
        Ok(obj)
    }

    fn list<T>(
        &mut self,
        name: &'static str,
        items: &Option<Vec<T>>,
        mut f: impl FnMut(&mut Self, &T) -> Result<Any<'py>, BindError>,
    ) -> Result<Any<'py>, BindError> {
        let items = items.as_ref().ok_or_else(|| absent(name))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(f(self, item).map_err(|e| at(Seg::Field(name))(at(Seg::Index(i))(e)))?);
        }
        Ok(PyList::new(self.py, out)?.into_any())
    }

    fn bytes(
        &self,
        name: &'static str,
        b: &Option<std::borrow::Cow<'_, [u8]>>,
    ) -> Result<Any<'py>, BindError> {
        let b = b.as_ref().ok_or_else(|| absent(name))?;
        Ok(PyBytes::new(self.py, b).into_any())
    }

    fn bundled_program(&mut self, bp: &BundledProgram<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let version = bp.version.into_bound_py_any(py)?;
        let suites = self.list("method_test_suites", &bp.method_test_suites, |b, s| {
            b.suite(s)
        })?;
        let program = self.bytes("program", &bp.program)?;
        let cls = self.bundled_program.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "version"), version),
                (intern!(py, "method_test_suites"), suites),
                (intern!(py, "program"), program),
            ],
        )
    }

    fn suite(&mut self, s: &BundledMethodTestSuite<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let name = match &s.method_name {
            Some(n) => pyo3::types::PyString::new(py, n).into_any(),
            None => return Err(absent("method_name")),
        };
        let cases = self.list("test_cases", &s.test_cases, |b, c| b.case(c))?;
        let cls = self.suite.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "method_name"), name),
                (intern!(py, "test_cases"), cases),
            ],
        )
    }

    fn case(&mut self, c: &BundledMethodTestCase<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let inputs = self.list("inputs", &c.inputs, |b, v| b.value(v))?;
        let outputs = self.list("expected_outputs", &c.expected_outputs, |b, v| b.value(v))?;
        let cls = self.case.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "inputs"), inputs),
                (intern!(py, "expected_outputs"), outputs),
            ],
        )
    }

    fn value(&mut self, v: &Value<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let val = match &v.val {
            None => {
                return Err(BindError::Convert(
                    ConvError::new(
                        "union type NONE (the reference's reader cannot read it and fails; \
                         ptekit too)",
                    )
                    .at(Seg::Field("val")),
                ))
            }
            Some(ValueUnion::Tensor(t)) => self.tensor(t).map_err(at(Seg::Field("val")))?,
            Some(ValueUnion::Int(x)) => {
                let cls = self.int.clone();
                let x = x.int_val.into_bound_py_any(py)?;
                self.make(&cls, &[(intern!(py, "int_val"), x)])?
            }
            Some(ValueUnion::Bool(x)) => {
                let cls = self.bool_.clone();
                let x = pyo3::types::PyBool::new(py, x.bool_val)
                    .to_owned()
                    .into_any();
                self.make(&cls, &[(intern!(py, "bool_val"), x)])?
            }
            Some(ValueUnion::Double(x)) => {
                let cls = self.double.clone();
                let x = pyo3::types::PyFloat::new(py, flatc_double(x.double_val)).into_any();
                self.make(&cls, &[(intern!(py, "double_val"), x)])?
            }
        };
        let cls = self.value.clone();
        self.make(&cls, &[(intern!(py, "val"), val)])
    }

    fn scalar_type(&mut self, v: i8) -> Result<Any<'py>, BindError> {
        if let Some(m) = self.scalar_types.get(&v) {
            return Ok(m.clone());
        }
        let member = self.scalar_type.call1((v,)).map_err(|e| {
            BindError::Convert(
                ConvError::from_py(self.py, &format!("{v} is not a valid ScalarType"), e)
                    .at(Seg::Field("scalar_type")),
            )
        })?;
        self.scalar_types.insert(v, member.clone());
        Ok(member)
    }

    fn tensor(&mut self, t: &Tensor<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let scalar_type = self.scalar_type(t.scalar_type.0)?;
        let sizes = match &t.sizes {
            Some(s) => PyList::new(py, s)?.into_any(),
            None => return Err(absent("sizes")),
        };
        let data = self.bytes("data", &t.data)?;
        // `dim_order: List[bytes]` in the dataclass, but the reader stores the JSON
        // numbers: a list of ints.
        let dim_order = match &t.dim_order {
            Some(d) => PyList::new(py, d)?.into_any(),
            None => return Err(absent("dim_order")),
        };
        let cls = self.tensor.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "scalar_type"), scalar_type),
                (intern!(py, "sizes"), sizes),
                (intern!(py, "data"), data),
                (intern!(py, "dim_order"), dim_order),
            ],
        )
    }
}
