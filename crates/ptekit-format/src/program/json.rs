//! The program as JSON in the shape of the reference's `_program_to_json`
//! (`executorch.exir._serialize._program`, executorch 1.5.1: `json.dumps` of the
//! `executorch.exir.schema` dataclasses through `_DataclassEncoder`), and back.
//!
//! The shape, as the reference writes it:
//! - every dataclass is an object with all its fields, in the dataclass's order, `null`
//!   for an absent field (absent and empty lists stay apart: `null` vs `[]`);
//! - the two unions (`EValue.val`, `Instruction.instr_args`) are the member's object plus
//!   a sibling `<field>_type` naming the member class (`"Tensor"`, `"KernelCall"`, ...;
//!   `"NoneType"` with `null` for an empty union); `Null` is `{}`;
//! - enums (`ScalarType`, `TensorShapeDynamism`, ...) are their integer values;
//! - bytes (`Buffer.storage`, `BackendDelegateInlineData.data`, `CompileSpec.value`)
//!   are lists of integers 0..=255.
//!
//! Where `json.dumps` writes non-JSON literals this writes strings: a double that is
//! infinite is `"inf"` / `"-inf"` (as the reference's `Double` stores it), NaN is
//! `"nan"` (`"nan:0x<16 hex digits>"` for a NaN with other bits than the default), in
//! `Double` and `DoubleList` alike. Reading accepts these, plus enum names (`"FLOAT"`) in
//! place of enum integers.
//!
//! A byte list may be replaced by an elision marker `{"ptekit_elided": {"size": N,
//! "offset": O}}`: `N` bytes at offset `O` of the file the JSON was dumped from (`offset`
//! is `null` when the bytes did not come from a file). Reading resolves a marker against
//! that file when it is given, else fails naming the marker's path.
//!
//! Reading errors name the JSON path of the offending value (`$.execution_plan[0]
//! .values[3].val.sizes[1]`) and what is wrong with it.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::enums::{DataLocation, DeviceType, ScalarType, TensorDataLocation, TensorShapeDynamism};
use super::model::*;
use crate::json_text::J;

/// The key of an elision marker.
pub const ELIDED_KEY: &str = "ptekit_elided";

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// An object key.
    Key(Cow<'static, str>),
    /// An array index.
    Index(usize),
}

/// A JSON path, displayed like `$.execution_plan[0].values[3]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Seg>);

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.0 {
            match s {
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with a JSON value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonReason {
    /// A required key is absent.
    #[error("missing")]
    Missing,
    /// A key the schema does not have.
    #[error("unknown key")]
    UnknownKey,
    /// The value has the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    Type {
        /// What the schema wants.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// An integer outside the field's type.
    #[error("{value} does not fit {ty}")]
    Range {
        /// The value as written.
        value: String,
        /// The field's type.
        ty: &'static str,
    },
    /// A string that names no value of the enum.
    #[error("{name:?} is not a {ty} name")]
    EnumName {
        /// The string found.
        name: String,
        /// The enum.
        ty: &'static str,
    },
    /// A `<field>_type` naming no member of the union.
    #[error("{name:?} is not a member of {union}")]
    UnionMember {
        /// The name found.
        name: String,
        /// The union.
        union: &'static str,
    },
    /// `<field>_type` and the value disagree (`null` with a member, or a value with
    /// `"NoneType"`).
    #[error("{member} does not match the value ({found})")]
    UnionMismatch {
        /// The member named by `<field>_type`.
        member: String,
        /// The JSON type of the value.
        found: &'static str,
    },
    /// A string that is not a float (`"inf"`, `"-inf"`, `"nan"`, `"nan:0x..."`).
    #[error("{0:?} is not a number")]
    Float(String),
    /// Bytes elided by `ptekit dump` and no file to take them from.
    #[error("{size} bytes elided by `ptekit dump` (at offset {offset} of the dumped file): dump with --with-data, or build with --data-from THE_DUMPED_FILE")]
    Elided {
        /// Number of bytes elided.
        size: u64,
        /// Their offset in the dumped file (`?` when unknown).
        offset: OptionalOffset,
    },
    /// An elision marker whose range is not inside the `--data-from` file.
    #[error("elided bytes {offset}..{offset}+{size} are outside the data file ({file_len} bytes)")]
    ElidedOutside {
        /// Offset named by the marker.
        offset: u64,
        /// Size named by the marker.
        size: u64,
        /// Size of the data file.
        file_len: u64,
    },
    /// A hex string with a character that is not a hex digit (or an odd length).
    #[error("not hex: bad digit at character {0}")]
    Hex(usize),
    /// Segment data whose length differs from `segments[i].size`.
    #[error("{data} bytes of data, but $.segments[{index}].size is {size}")]
    SegmentSize {
        /// Index of the segment.
        index: usize,
        /// Bytes given.
        data: u64,
        /// `size` of the segment.
        size: u64,
    },
    /// Two segments share bytes.
    #[error("segment overlaps segment {other}")]
    SegmentOverlap {
        /// The other segment's index.
        other: usize,
    },
    /// The number of segment data entries differs from `segments`.
    #[error("{data} entries, but $.segments has {segments}")]
    SegmentCount {
        /// Entries given.
        data: usize,
        /// Entries of `segments`.
        segments: usize,
    },
    /// A value the file layout cannot hold (e.g. a header length other than 24 or 32,
    /// an alignment that is not a power of two).
    #[error("{0}")]
    Layout(&'static str),
}

/// An offset that may be unknown, displayed as `?` then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalOffset(pub Option<u64>);

impl fmt::Display for OptionalOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(o) => write!(f, "{o}"),
            None => f.write_str("?"),
        }
    }
}

/// An error reading JSON: a syntax error, or a value that does not fit the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON.
    #[error("JSON syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// Line (from 1).
        line: usize,
        /// Column (from 1).
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// A value does not fit the schema.
    #[error("{path}: {reason}")]
    Value {
        /// Where.
        path: JsonPath,
        /// What is wrong.
        reason: JsonReason,
    },
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// How byte vectors are written: given the bytes, a byte list or an elision marker.
pub(crate) type BytesOut<'a, 'f> = &'f dyn Fn(&'a [u8]) -> J<'a>;

/// The elision marker for `size` bytes at `offset` of the dumped file.
pub(crate) fn elided<'a>(size: usize, offset: Option<usize>) -> J<'a> {
    J::Obj(vec![(
        ELIDED_KEY,
        J::Obj(vec![
            ("size", J::Uint(crate::write::len64(size))),
            (
                "offset",
                J::opt(offset, |o| J::Uint(crate::write::len64(o))),
            ),
        ]),
    )])
}

/// A double as JSON: finite numbers as numbers, the others as strings.
fn double<'a>(x: f64) -> J<'a> {
    if x.is_nan() {
        if x.to_bits() == f64::NAN.to_bits() {
            J::Str("nan".into())
        } else {
            J::Str(format!("nan:0x{:016x}", x.to_bits()).into())
        }
    } else if x.is_infinite() {
        J::Str(if x > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        J::Float(x)
    }
}

fn ints<'a, T: Copy + Into<i64>>(v: Option<&'a [T]>) -> J<'a> {
    J::list(v, |x| J::Int((*x).into()))
}

fn uints<'a>(v: Option<&'a [u64]>) -> J<'a> {
    J::list(v, |x| J::Uint(*x))
}

fn enum_int<'a, T: Into<i8>>(v: T) -> J<'a> {
    J::Int(i64::from(v.into()))
}

fn tensor(t: &Tensor) -> J<'_> {
    J::Obj(vec![
        ("scalar_type", enum_int(t.scalar_type)),
        ("storage_offset", J::Int(t.storage_offset.into())),
        ("sizes", ints(t.sizes.as_deref())),
        (
            "dim_order",
            J::list(t.dim_order.as_deref(), |x| J::Uint(u64::from(*x))),
        ),
        ("requires_grad", J::Bool(t.requires_grad)),
        ("layout", J::Int(t.layout.into())),
        ("data_buffer_idx", J::Uint(t.data_buffer_idx.into())),
        (
            "allocation_info",
            J::opt(t.allocation_info.as_ref(), |a| {
                J::Obj(vec![
                    ("memory_id", J::Uint(a.memory_id.into())),
                    ("memory_offset_low", J::Uint(a.memory_offset_low.into())),
                    ("memory_offset_high", J::Uint(a.memory_offset_high.into())),
                ])
            }),
        ),
        ("shape_dynamism", enum_int(t.shape_dynamism)),
        (
            "extra_tensor_info",
            J::opt(t.extra_tensor_info.as_ref(), |e| {
                J::Obj(vec![
                    (
                        "mutable_data_segments_idx",
                        J::Uint(e.mutable_data_segments_idx),
                    ),
                    (
                        "fully_qualified_name",
                        J::str(e.fully_qualified_name.as_deref()),
                    ),
                    ("location", enum_int(e.location)),
                    ("device_type", enum_int(e.device_type)),
                    ("device_index", J::Int(e.device_index.into())),
                ])
            }),
        ),
    ])
}

fn items<'a>(items: J<'a>) -> J<'a> {
    J::Obj(vec![("items", items)])
}

fn evalue(v: &EValue) -> J<'_> {
    let (val, kind) = match &v.val {
        None => (J::Null, "NoneType"),
        Some(k) => {
            let body = match k {
                KernelTypes::Null(_) => J::Obj(vec![]),
                KernelTypes::Int(x) => J::Obj(vec![("int_val", J::Int(x.int_val))]),
                KernelTypes::Bool(x) => J::Obj(vec![("bool_val", J::Bool(x.bool_val))]),
                KernelTypes::Double(x) => J::Obj(vec![("double_val", double(x.double_val))]),
                KernelTypes::Tensor(t) => tensor(t),
                KernelTypes::String(s) => {
                    J::Obj(vec![("string_val", J::str(s.string_val.as_deref()))])
                }
                KernelTypes::IntList(l) => items(ints(l.items.as_deref())),
                KernelTypes::DoubleList(l) => items(J::list(l.items.as_deref(), |x| double(*x))),
                KernelTypes::BoolList(l) => items(J::list(l.items.as_deref(), |x| J::Bool(*x))),
                KernelTypes::TensorList(l) => items(ints(l.items.as_deref())),
                KernelTypes::OptionalTensorList(l) => items(ints(l.items.as_deref())),
            };
            (body, k.kind_name())
        }
    };
    J::Obj(vec![("val", val), ("val_type", J::Str(kind.into()))])
}

fn instruction(i: &Instruction) -> J<'_> {
    let (args, kind) = match &i.instr_args {
        None => (J::Null, "NoneType"),
        Some(a) => {
            let body = match a {
                InstructionArguments::KernelCall(k) => J::Obj(vec![
                    ("op_index", J::Int(k.op_index.into())),
                    ("args", ints(k.args.as_deref())),
                ]),
                InstructionArguments::DelegateCall(d) => J::Obj(vec![
                    ("delegate_index", J::Int(d.delegate_index.into())),
                    ("args", ints(d.args.as_deref())),
                ]),
                InstructionArguments::MoveCall(m) => J::Obj(vec![
                    ("move_from", J::Int(m.move_from.into())),
                    ("move_to", J::Int(m.move_to.into())),
                ]),
                InstructionArguments::JumpFalseCall(j) => J::Obj(vec![
                    ("cond_value_index", J::Int(j.cond_value_index.into())),
                    (
                        "destination_instruction",
                        J::Int(j.destination_instruction.into()),
                    ),
                ]),
                InstructionArguments::FreeCall(f) => {
                    J::Obj(vec![("value_index", J::Int(f.value_index.into()))])
                }
            };
            (body, a.kind_name())
        }
    };
    J::Obj(vec![
        ("instr_args", args),
        ("instr_args_type", J::Str(kind.into())),
    ])
}

fn chain(c: &Chain) -> J<'_> {
    J::Obj(vec![
        ("inputs", ints(c.inputs.as_deref())),
        ("outputs", ints(c.outputs.as_deref())),
        (
            "instructions",
            J::list(c.instructions.as_deref(), instruction),
        ),
        (
            "stacktrace",
            J::list(c.stacktrace.as_deref(), |fl| {
                items(J::list(fl.items.as_deref(), |f| {
                    J::Obj(vec![
                        ("filename", J::str(f.filename.as_deref())),
                        ("lineno", J::Int(f.lineno.into())),
                        ("name", J::str(f.name.as_deref())),
                        ("context", J::str(f.context.as_deref())),
                    ])
                }))
            }),
        ),
    ])
}

fn plan<'a>(p: &'a ExecutionPlan<'_>, bytes: BytesOut<'a, '_>) -> J<'a> {
    J::Obj(vec![
        ("name", J::str(p.name.as_deref())),
        (
            "container_meta_type",
            J::opt(p.container_meta_type.as_ref(), |c| {
                J::Obj(vec![
                    ("encoded_inp_str", J::str(c.encoded_inp_str.as_deref())),
                    ("encoded_out_str", J::str(c.encoded_out_str.as_deref())),
                ])
            }),
        ),
        ("values", J::list(p.values.as_deref(), evalue)),
        ("inputs", ints(p.inputs.as_deref())),
        ("outputs", ints(p.outputs.as_deref())),
        ("chains", J::list(p.chains.as_deref(), chain)),
        (
            "operators",
            J::list(p.operators.as_deref(), |o| {
                J::Obj(vec![
                    ("name", J::str(o.name.as_deref())),
                    ("overload", J::str(o.overload.as_deref())),
                ])
            }),
        ),
        (
            "delegates",
            J::list(p.delegates.as_deref(), |d| {
                J::Obj(vec![
                    ("id", J::str(d.id.as_deref())),
                    (
                        "processed",
                        J::opt(d.processed.as_ref(), |r| {
                            J::Obj(vec![
                                ("location", enum_int(r.location)),
                                ("index", J::Uint(r.index.into())),
                            ])
                        }),
                    ),
                    (
                        "compile_specs",
                        J::list(d.compile_specs.as_deref(), |c| {
                            J::Obj(vec![
                                ("key", J::str(c.key.as_deref())),
                                ("value", J::opt(c.value.as_deref(), bytes)),
                            ])
                        }),
                    ),
                ])
            }),
        ),
        (
            "non_const_buffer_sizes",
            ints(p.non_const_buffer_sizes.as_deref()),
        ),
        (
            "non_const_buffer_device",
            J::list(p.non_const_buffer_device.as_deref(), |d| {
                J::Obj(vec![
                    ("buffer_idx", J::Int(d.buffer_idx.into())),
                    ("device_type", enum_int(d.device_type)),
                    ("device_index", J::Int(d.device_index.into())),
                ])
            }),
        ),
    ])
}

fn subsegment(s: &SubsegmentOffsets) -> J<'_> {
    J::Obj(vec![
        ("segment_index", J::Uint(s.segment_index.into())),
        ("offsets", uints(s.offsets.as_deref())),
    ])
}

/// The fields of `Program` in the reference's order; byte vectors through `bytes`.
pub(crate) fn program_fields<'a>(
    p: &'a Program<'_>,
    bytes: BytesOut<'a, '_>,
) -> Vec<(&'static str, J<'a>)> {
    vec![
        ("version", J::Uint(p.version.into())),
        (
            "execution_plan",
            J::list(p.execution_plan.as_deref(), |e| plan(e, bytes)),
        ),
        (
            "constant_buffer",
            J::list(p.constant_buffer.as_deref(), |b| {
                J::Obj(vec![("storage", J::opt(b.storage.as_deref(), bytes))])
            }),
        ),
        (
            "backend_delegate_data",
            J::list(p.backend_delegate_data.as_deref(), |d| {
                J::Obj(vec![("data", J::opt(d.data.as_deref(), bytes))])
            }),
        ),
        (
            "segments",
            J::list(p.segments.as_deref(), |s| {
                J::Obj(vec![
                    ("offset", J::Uint(s.offset)),
                    ("size", J::Uint(s.size)),
                ])
            }),
        ),
        (
            "constant_segment",
            J::opt(p.constant_segment.as_ref(), subsegment),
        ),
        (
            "mutable_data_segments",
            J::list(p.mutable_data_segments.as_deref(), subsegment),
        ),
        (
            "named_data",
            J::list(p.named_data.as_deref(), |n| {
                J::Obj(vec![
                    ("key", J::str(n.key.as_deref())),
                    ("segment_index", J::Uint(n.segment_index.into())),
                ])
            }),
        ),
    ]
}

/// Writes `program` as the reference's `_program_to_json` does (see the module docs),
/// byte vectors in full, indented.
pub fn write_program_json<W: std::io::Write>(
    program: &Program<'_>,
    out: &mut W,
) -> std::io::Result<()> {
    J::Obj(program_fields(program, &J::Bytes)).write(out)
}

// ---------------------------------------------------------------------------------------
// Reading

/// Resolves elision markers: the bytes of the file the JSON was dumped from.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataFrom<'a>(pub Option<&'a [u8]>);

/// A reader of JSON values that knows where it is.
pub(crate) struct Reader<'d> {
    path: Vec<Seg>,
    data: DataFrom<'d>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) type R<T> = Result<T, JsonError>;

impl<'d> Reader<'d> {
    pub(crate) fn new(data: DataFrom<'d>) -> Self {
        Self {
            path: Vec::new(),
            data,
        }
    }

    /// An error at the current path.
    pub(crate) fn err(&self, reason: JsonReason) -> JsonError {
        JsonError::Value {
            path: JsonPath(self.path.clone()),
            reason,
        }
    }

    /// An error at the current path extended by `segs`.
    pub(crate) fn err_at(&mut self, segs: &[Seg], reason: JsonReason) -> JsonError {
        self.path.extend_from_slice(segs);
        self.err(reason)
    }

    fn wrong(&self, expected: &'static str, v: &Value) -> JsonError {
        self.err(JsonReason::Type {
            expected,
            found: type_name(v),
        })
    }

    /// `v` as an object with no keys but `allowed`.
    pub(crate) fn object<'v>(
        &mut self,
        v: &'v Value,
        allowed: &[&'static str],
    ) -> R<&'v Map<String, Value>> {
        let map = v.as_object().ok_or_else(|| self.wrong("an object", v))?;
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            self.path.push(Seg::Key(Cow::Owned(k.clone())));
            return Err(self.err(JsonReason::UnknownKey));
        }
        Ok(map)
    }

    /// Runs `f` on the value of `key` of `obj` (required), with the path extended.
    pub(crate) fn field<T>(
        &mut self,
        obj: &Map<String, Value>,
        key: &'static str,
        f: impl FnOnce(&mut Self, &Value) -> R<T>,
    ) -> R<T> {
        self.path.push(Seg::Key(Cow::Borrowed(key)));
        let v = obj.get(key).ok_or_else(|| self.err(JsonReason::Missing))?;
        let r = f(self, v)?;
        self.path.pop();
        Ok(r)
    }

    /// `null` as `None`, else `f`.
    pub(crate) fn opt<T>(
        &mut self,
        v: &Value,
        f: impl FnOnce(&mut Self, &Value) -> R<T>,
    ) -> R<Option<T>> {
        if v.is_null() {
            Ok(None)
        } else {
            f(self, v).map(Some)
        }
    }

    /// A list (`null` = `None`) of items read by `f`.
    pub(crate) fn list<T>(
        &mut self,
        v: &Value,
        mut f: impl FnMut(&mut Self, &Value) -> R<T>,
    ) -> R<Option<Vec<T>>> {
        if v.is_null() {
            return Ok(None);
        }
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong("an array or null", v))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            out.push(f(self, item)?);
            self.path.pop();
        }
        Ok(Some(out))
    }

    /// An integer of type `T`.
    pub(crate) fn int<T: TryFrom<i128>>(&self, v: &Value, ty: &'static str) -> R<T> {
        let wide = match v {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
            _ => None,
        };
        let Some(wide) = wide else {
            return Err(self.wrong("an integer", v));
        };
        T::try_from(wide).map_err(|_| {
            self.err(JsonReason::Range {
                value: wide.to_string(),
                ty,
            })
        })
    }

    pub(crate) fn boolean(&self, v: &Value) -> R<bool> {
        v.as_bool().ok_or_else(|| self.wrong("a boolean", v))
    }

    /// A string or `null`.
    pub(crate) fn string(&self, v: &Value) -> R<Option<String>> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(self.wrong("a string or null", v)),
        }
    }

    fn double(&self, v: &Value) -> R<f64> {
        match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| self.wrong("a number", v)),
            Value::String(s) => match s.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                other => other
                    .strip_prefix("nan:0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .map(f64::from_bits)
                    .filter(|x| x.is_nan())
                    .ok_or_else(|| self.err(JsonReason::Float(other.to_string()))),
            },
            _ => Err(self.wrong("a number", v)),
        }
    }

    /// An enum value: its integer, or its schema name.
    fn enumeration<T: From<i8>>(
        &self,
        v: &Value,
        ty: &'static str,
        from_name: fn(&str) -> Option<T>,
    ) -> R<T> {
        match v {
            Value::String(s) => from_name(s).ok_or_else(|| {
                self.err(JsonReason::EnumName {
                    name: s.clone(),
                    ty,
                })
            }),
            _ => self.int::<i8>(v, ty).map(T::from),
        }
    }

    /// Bytes: a list of integers 0..=255, or an elision marker resolved against the data
    /// file.
    pub(crate) fn bytes(&mut self, v: &Value) -> R<Cow<'d, [u8]>> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    out.push(self.int::<u8>(item, "a byte (0..=255)")?);
                    self.path.pop();
                }
                Ok(Cow::Owned(out))
            }
            Value::Object(_) => self.elided(v).map(Cow::Borrowed),
            _ => Err(self.wrong("an array of bytes or an elision marker", v)),
        }
    }

    /// The bytes an elision marker stands for.
    pub(crate) fn elided(&mut self, v: &Value) -> R<&'d [u8]> {
        let obj = self.object(v, &[ELIDED_KEY])?;
        let (size, offset) = self.field(obj, ELIDED_KEY, |r, m| {
            let m = r.object(m, &["size", "offset"])?;
            let size = r.field(m, "size", |r, v| r.int::<u64>(v, "u64"))?;
            let offset = r.field(m, "offset", |r, v| r.opt(v, |r, v| r.int::<u64>(v, "u64")))?;
            Ok((size, offset))
        })?;
        let Some(data) = self.data.0 else {
            return Err(self.err(JsonReason::Elided {
                size,
                offset: OptionalOffset(offset),
            }));
        };
        let file_len = crate::write::len64(data.len());
        offset
            .and_then(|o| Some((o, o.checked_add(size)?)))
            .and_then(|(o, e)| Some(usize::try_from(o).ok()?..usize::try_from(e).ok()?))
            .and_then(|r| data.get(r))
            .ok_or_else(|| {
                self.err(match offset {
                    Some(offset) => JsonReason::ElidedOutside {
                        offset,
                        size,
                        file_len,
                    },
                    None => JsonReason::Elided {
                        size,
                        offset: OptionalOffset(None),
                    },
                })
            })
    }

    /// Hex-encoded bytes, or an elision marker.
    pub(crate) fn hex(&mut self, v: &Value) -> R<Cow<'d, [u8]>> {
        match v {
            Value::String(s) => crate::json_text::decode_hex(s)
                .map(Cow::Owned)
                .map_err(|at| self.err(JsonReason::Hex(at))),
            Value::Object(_) => self.elided(v).map(Cow::Borrowed),
            _ => Err(self.wrong("a hex string or an elision marker", v)),
        }
    }
}

macro_rules! read_struct {
    ($r:ident, $v:ident, $ty:ident { $($field:ident : $read:expr),* $(,)? }) => {{
        let obj = $r.object($v, &[$(stringify!($field)),*])?;
        $ty {
            $($field: $r.field(obj, stringify!($field), $read)?,)*
        }
    }};
}

fn i32s(r: &mut Reader<'_>, v: &Value) -> R<Option<Vec<i32>>> {
    r.list(v, |r, v| r.int(v, "i32"))
}

fn u64s(r: &mut Reader<'_>, v: &Value) -> R<Option<Vec<u64>>> {
    r.list(v, |r, v| r.int(v, "u64"))
}

fn items_of<T>(
    r: &mut Reader<'_>,
    v: &Value,
    item: impl FnMut(&mut Reader<'_>, &Value) -> R<T>,
) -> R<Option<Vec<T>>> {
    let obj = r.object(v, &["items"])?;
    r.field(obj, "items", |r, v| r.list(v, item))
}

fn read_tensor(r: &mut Reader<'_>, v: &Value) -> R<Tensor> {
    Ok(read_struct!(
        r,
        v,
        Tensor {
            scalar_type: |r, v| r.enumeration(v, "ScalarType", ScalarType::from_name),
            storage_offset: |r, v| r.int(v, "i32"),
            sizes: i32s,
            dim_order: |r, v| r.list(v, |r, v| r.int(v, "u8")),
            requires_grad: |r, v| r.boolean(v),
            layout: |r, v| r.int(v, "i8"),
            data_buffer_idx: |r, v| r.int(v, "u32"),
            allocation_info: |r, v| r.opt(v, |r, v| Ok(read_struct!(
                r,
                v,
                AllocationDetails {
                    memory_id: |r, v| r.int(v, "u32"),
                    memory_offset_low: |r, v| r.int(v, "u32"),
                    memory_offset_high: |r, v| r.int(v, "u32"),
                }
            ))),
            shape_dynamism: |r, v| r.enumeration(
                v,
                "TensorShapeDynamism",
                TensorShapeDynamism::from_name
            ),
            extra_tensor_info: |r, v| r.opt(v, |r, v| Ok(read_struct!(
                r,
                v,
                ExtraTensorInfo {
                    mutable_data_segments_idx: |r, v| r.int(v, "u64"),
                    fully_qualified_name: |r, v| r.string(v),
                    location: |r, v| r.enumeration(
                        v,
                        "TensorDataLocation",
                        TensorDataLocation::from_name
                    ),
                    device_type: |r, v| r.enumeration(v, "DeviceType", DeviceType::from_name),
                    device_index: |r, v| r.int(v, "i8"),
                }
            ))),
        }
    ))
}

/// Reads `obj[field]` and `obj[field + "_type"]` as a union: `None` for `"NoneType"`,
/// else `member(name, value)`, which returns `None` for a name it does not know.
fn read_union<T>(
    r: &mut Reader<'_>,
    obj: &Map<String, Value>,
    field: &'static str,
    type_field: &'static str,
    union: &'static str,
    member: impl FnOnce(&mut Reader<'_>, &str, &Value) -> R<Option<T>>,
) -> R<Option<T>> {
    let name = r.field(obj, type_field, |r, v| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| r.wrong("a string", v))
    })?;
    r.field(obj, field, |r, v| {
        if name == "NoneType" {
            return if v.is_null() {
                Ok(None)
            } else {
                Err(r.err(JsonReason::UnionMismatch {
                    member: name.clone(),
                    found: type_name(v),
                }))
            };
        }
        if v.is_null() {
            return Err(r.err(JsonReason::UnionMismatch {
                member: name.clone(),
                found: "null",
            }));
        }
        match member(r, &name, v)? {
            Some(x) => Ok(Some(x)),
            None => Err(r.err(JsonReason::UnionMember {
                name: name.clone(),
                union,
            })),
        }
    })
}

fn read_evalue(r: &mut Reader<'_>, v: &Value) -> R<EValue> {
    let obj = r.object(v, &["val", "val_type"])?;
    let val = read_union(r, obj, "val", "val_type", "KernelTypes", |r, name, v| {
        Ok(Some(match name {
            "Null" => r.object(v, &[]).map(|_| KernelTypes::Null(Null))?,
            "Int" => KernelTypes::Int(read_struct!(
                r,
                v,
                Int {
                    int_val: |r, v| r.int(v, "i64"),
                }
            )),
            "Bool" => KernelTypes::Bool(read_struct!(
                r,
                v,
                Bool {
                    bool_val: |r, v| r.boolean(v),
                }
            )),
            "Double" => KernelTypes::Double(read_struct!(
                r,
                v,
                Double {
                    double_val: |r, v| r.double(v),
                }
            )),
            "String" => KernelTypes::String(read_struct!(
                r,
                v,
                StringValue {
                    string_val: |r, v| r.string(v),
                }
            )),
            "Tensor" => KernelTypes::Tensor(read_tensor(r, v)?),
            "IntList" => KernelTypes::IntList(IntList {
                items: items_of(r, v, |r, v| r.int(v, "i64"))?,
            }),
            "DoubleList" => KernelTypes::DoubleList(DoubleList {
                items: items_of(r, v, |r, v| r.double(v))?,
            }),
            "BoolList" => KernelTypes::BoolList(BoolList {
                items: items_of(r, v, |r, v| r.boolean(v))?,
            }),
            "TensorList" => KernelTypes::TensorList(TensorList {
                items: items_of(r, v, |r, v| r.int(v, "i32"))?,
            }),
            "OptionalTensorList" => KernelTypes::OptionalTensorList(OptionalTensorList {
                items: items_of(r, v, |r, v| r.int(v, "i32"))?,
            }),
            _ => return Ok(None),
        }))
    })?;
    Ok(EValue { val })
}

fn read_instruction(r: &mut Reader<'_>, v: &Value) -> R<Instruction> {
    let obj = r.object(v, &["instr_args", "instr_args_type"])?;
    let instr_args = read_union(
        r,
        obj,
        "instr_args",
        "instr_args_type",
        "InstructionArguments",
        |r, name, v| {
            Ok(Some(match name {
                "KernelCall" => InstructionArguments::KernelCall(read_struct!(
                    r,
                    v,
                    KernelCall {
                        op_index: |r, v| r.int(v, "i32"),
                        args: i32s,
                    }
                )),
                "DelegateCall" => InstructionArguments::DelegateCall(read_struct!(
                    r,
                    v,
                    DelegateCall {
                        delegate_index: |r, v| r.int(v, "i32"),
                        args: i32s,
                    }
                )),
                "MoveCall" => InstructionArguments::MoveCall(read_struct!(
                    r,
                    v,
                    MoveCall {
                        move_from: |r, v| r.int(v, "i32"),
                        move_to: |r, v| r.int(v, "i32"),
                    }
                )),
                "JumpFalseCall" => InstructionArguments::JumpFalseCall(read_struct!(
                    r,
                    v,
                    JumpFalseCall {
                        cond_value_index: |r, v| r.int(v, "i32"),
                        destination_instruction: |r, v| r.int(v, "i32"),
                    }
                )),
                "FreeCall" => InstructionArguments::FreeCall(read_struct!(
                    r,
                    v,
                    FreeCall {
                        value_index: |r, v| r.int(v, "i32"),
                    }
                )),
                _ => return Ok(None),
            }))
        },
    )?;
    Ok(Instruction { instr_args })
}

fn read_chain(r: &mut Reader<'_>, v: &Value) -> R<Chain> {
    Ok(read_struct!(
        r,
        v,
        Chain {
            inputs: i32s,
            outputs: i32s,
            instructions: |r, v| r.list(v, read_instruction),
            stacktrace: |r, v| r.list(v, |r, v| Ok(FrameList {
                items: items_of(r, v, |r, v| Ok(read_struct!(
                    r,
                    v,
                    Frame {
                        filename: |r, v| r.string(v),
                        lineno: |r, v| r.int(v, "i32"),
                        name: |r, v| r.string(v),
                        context: |r, v| r.string(v),
                    }
                )))?,
            })),
        }
    ))
}

fn read_subsegment(r: &mut Reader<'_>, v: &Value) -> R<SubsegmentOffsets> {
    Ok(read_struct!(
        r,
        v,
        SubsegmentOffsets {
            segment_index: |r, v| r.int(v, "u32"),
            offsets: u64s,
        }
    ))
}

fn read_plan<'d>(r: &mut Reader<'d>, v: &Value) -> R<ExecutionPlan<'d>> {
    Ok(read_struct!(
        r,
        v,
        ExecutionPlan {
            name: |r, v| r.string(v),
            container_meta_type: |r, v| r.opt(v, |r, v| Ok(read_struct!(
                r,
                v,
                ContainerMetadata {
                    encoded_inp_str: |r, v| r.string(v),
                    encoded_out_str: |r, v| r.string(v),
                }
            ))),
            values: |r, v| r.list(v, read_evalue),
            inputs: i32s,
            outputs: i32s,
            chains: |r, v| r.list(v, read_chain),
            operators: |r, v| r.list(v, |r, v| Ok(read_struct!(
                r,
                v,
                Operator {
                    name: |r, v| r.string(v),
                    overload: |r, v| r.string(v),
                }
            ))),
            delegates: |r, v| r.list(v, |r, v| Ok(read_struct!(
                r,
                v,
                BackendDelegate {
                    id: |r, v| r.string(v),
                    processed: |r, v| r.opt(v, |r, v| Ok(read_struct!(
                        r,
                        v,
                        BackendDelegateDataReference {
                            location: |r, v| r.enumeration(
                                v,
                                "DataLocation",
                                DataLocation::from_name
                            ),
                            index: |r, v| r.int(v, "u32"),
                        }
                    ))),
                    compile_specs: |r, v| r.list(v, |r, v| Ok(read_struct!(
                        r,
                        v,
                        CompileSpec {
                            key: |r, v| r.string(v),
                            value: |r, v| r.opt(v, Reader::bytes),
                        }
                    ))),
                }
            ))),
            non_const_buffer_sizes: |r, v| r.list(v, |r, v| r.int(v, "i64")),
            non_const_buffer_device: |r, v| r.list(v, |r, v| Ok(read_struct!(
                r,
                v,
                NonConstBufferDevice {
                    buffer_idx: |r, v| r.int(v, "i32"),
                    device_type: |r, v| r.enumeration(v, "DeviceType", DeviceType::from_name),
                    device_index: |r, v| r.int(v, "i8"),
                }
            ))),
        }
    ))
}

/// The keys of `Program`.
pub(crate) const PROGRAM_KEYS: [&str; 8] = [
    "version",
    "execution_plan",
    "constant_buffer",
    "backend_delegate_data",
    "segments",
    "constant_segment",
    "mutable_data_segments",
    "named_data",
];

/// Reads the `Program` fields of `obj` (other keys are the caller's business).
pub(crate) fn read_program_fields<'d>(
    r: &mut Reader<'d>,
    obj: &Map<String, Value>,
) -> R<Program<'d>> {
    Ok(Program {
        version: r.field(obj, "version", |r, v| r.int(v, "u32"))?,
        execution_plan: r.field(obj, "execution_plan", |r, v| r.list(v, read_plan))?,
        constant_buffer: r.field(obj, "constant_buffer", |r, v| {
            r.list(v, |r, v| {
                Ok(read_struct!(
                    r,
                    v,
                    Buffer {
                        storage: |r, v| r.opt(v, Reader::bytes)
                    }
                ))
            })
        })?,
        backend_delegate_data: r.field(obj, "backend_delegate_data", |r, v| {
            r.list(v, |r, v| {
                Ok(read_struct!(
                    r,
                    v,
                    BackendDelegateInlineData {
                        data: |r, v| r.opt(v, Reader::bytes),
                    }
                ))
            })
        })?,
        segments: r.field(obj, "segments", |r, v| {
            r.list(v, |r, v| {
                Ok(read_struct!(
                    r,
                    v,
                    DataSegment {
                        offset: |r, v| r.int(v, "u64"),
                        size: |r, v| r.int(v, "u64"),
                    }
                ))
            })
        })?,
        constant_segment: r.field(obj, "constant_segment", |r, v| r.opt(v, read_subsegment))?,
        mutable_data_segments: r.field(obj, "mutable_data_segments", |r, v| {
            r.list(v, read_subsegment)
        })?,
        named_data: r.field(obj, "named_data", |r, v| {
            r.list(v, |r, v| {
                Ok(read_struct!(
                    r,
                    v,
                    NamedData {
                        key: |r, v| r.string(v),
                        segment_index: |r, v| r.int(v, "u32"),
                    }
                ))
            })
        })?,
    })
}

/// Reads a program from the reference's `_program_to_json` shape (see the module docs);
/// elision markers are resolved against `data`.
pub fn read_program_json<'d>(value: &Value, data: DataFrom<'d>) -> Result<Program<'d>, JsonError> {
    let mut r = Reader::new(data);
    let obj = r.object(value, &PROGRAM_KEYS)?;
    read_program_fields(&mut r, obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(p: &Program<'_>) -> String {
        let mut out = Vec::new();
        write_program_json(p, &mut out).unwrap_or_default();
        String::from_utf8(out).unwrap_or_default()
    }

    fn sample() -> Program<'static> {
        Program {
            version: 0,
            execution_plan: Some(vec![ExecutionPlan {
                name: Some("forward".into()),
                values: Some(vec![
                    EValue { val: None },
                    EValue {
                        val: Some(KernelTypes::Double(Double {
                            double_val: f64::NEG_INFINITY,
                        })),
                    },
                    EValue {
                        val: Some(KernelTypes::DoubleList(DoubleList {
                            items: Some(vec![0.1, f64::NAN, f64::from_bits(0x7ff0_0000_0000_0001)]),
                        })),
                    },
                    EValue {
                        val: Some(KernelTypes::Tensor(Tensor {
                            scalar_type: ScalarType(9),
                            sizes: Some(vec![2, 3]),
                            dim_order: Some(vec![0, 1]),
                            ..Tensor::default()
                        })),
                    },
                    EValue {
                        val: Some(KernelTypes::Null(Null)),
                    },
                ]),
                chains: Some(vec![Chain {
                    instructions: Some(vec![Instruction {
                        instr_args: Some(InstructionArguments::MoveCall(MoveCall {
                            move_from: 1,
                            move_to: 2,
                        })),
                    }]),
                    ..Chain::default()
                }]),
                ..ExecutionPlan::default()
            }]),
            constant_buffer: Some(vec![Buffer {
                storage: Some(Cow::Borrowed(&[1, 2, 255])),
            }]),
            ..Program::default()
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let p = sample();
        let t = text(&p);
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        assert_eq!(v["execution_plan"][0]["values"][0]["val_type"], "NoneType");
        assert_eq!(
            v["execution_plan"][0]["values"][1]["val"]["double_val"],
            "-inf"
        );
        assert_eq!(
            v["execution_plan"][0]["values"][4]["val"],
            serde_json::json!({})
        );
        assert_eq!(v["execution_plan"][0]["values"][3]["val"]["scalar_type"], 9);
        assert_eq!(
            v["constant_buffer"][0]["storage"],
            serde_json::json!([1, 2, 255])
        );
        let back = read_program_json(&v, DataFrom(None));
        // NaN != NaN: compare the text of the re-read program instead.
        assert_eq!(back.as_ref().map(text).ok(), Some(t));
    }

    /// The error message of reading `p`'s JSON after `edit`.
    fn error_after(p: &Program<'_>, edit: impl FnOnce(&mut Value), data: Option<&[u8]>) -> String {
        let mut v: Value = serde_json::from_str(&text(p)).unwrap_or_default();
        edit(&mut v);
        read_program_json(&v, DataFrom(data))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_the_path() {
        let p = sample();
        let e = error_after(
            &p,
            |v| v["execution_plan"][0]["values"][3]["val"]["sizes"][1] = json!(1u64 << 40),
            None,
        );
        assert_eq!(
            e,
            "$.execution_plan[0].values[3].val.sizes[1]: 1099511627776 does not fit i32"
        );
        let e = error_after(
            &p,
            |v| {
                v["execution_plan"][0]["chains"][0]["instructions"][0]["instr_args_type"] =
                    json!("Jump");
            },
            None,
        );
        assert_eq!(
            e,
            "$.execution_plan[0].chains[0].instructions[0].instr_args: \"Jump\" is not a member of InstructionArguments"
        );
        let elide = |v: &mut Value| {
            v["constant_buffer"][0]["storage"] = json!({"ptekit_elided": {"size": 3, "offset": 7}});
        };
        let e = error_after(&p, elide, None);
        assert!(
            e.starts_with(
                "$.constant_buffer[0].storage: 3 bytes elided by `ptekit dump` (at offset 7"
            ),
            "{e}"
        );
        let data = [0u8, 0, 0, 0, 0, 0, 0, 1, 2, 255];
        let mut v: Value = serde_json::from_str(&text(&p)).unwrap_or_default();
        elide(&mut v);
        let back = read_program_json(&v, DataFrom(Some(&data)));
        assert_eq!(back.as_ref().map(text).ok(), Some(text(&p)));
        let e = error_after(&p, elide, Some(&data[..9]));
        assert_eq!(
            e,
            "$.constant_buffer[0].storage: elided bytes 7..7+3 are outside the data file (9 bytes)"
        );
        let e = error_after(
            &p,
            |v| {
                if let Some(o) = v["execution_plan"][0].as_object_mut() {
                    o.insert("bogus".into(), json!(1));
                }
            },
            None,
        );
        assert_eq!(e, "$.execution_plan[0].bogus: unknown key");
    }
}
