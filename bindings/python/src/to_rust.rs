//! Reading the reference's `PTEFile` object graph (the dataclasses of
//! `executorch.exir.schema`) into a [`PteModel`], with the conversions the reference's
//! packer applies: enums and `bool`s through their integer value, `Double` strings
//! (`"inf"`) through `float`, any sequence for a list, byte data borrowed.
//!
//! Values are checked against the schema's types (integer ranges included); a mismatch
//! is a [`ConvError`] naming the field path. Union members are chosen by class name, like
//! the reference (`type(value).__name__`).

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple};

use ptekit_format::program::{
    AllocationDetails, BackendDelegate, BackendDelegateDataReference, BackendDelegateInlineData,
    Bool, BoolList, Buffer, Chain, CompileSpec, ContainerMetadata, DataLocation, DataSegment,
    DelegateCall, DeviceType, Double, DoubleList, EValue, ExecutionPlan, ExtraTensorInfo, Frame,
    FrameList, FreeCall, Instruction, InstructionArguments, Int, IntList, JumpFalseCall,
    KernelCall, KernelTypes, MoveCall, NamedData, NonConstBufferDevice, Null, Operator,
    OptionalTensorList, Program, ScalarType, StringValue, SubsegmentOffsets, Tensor,
    TensorDataLocation, TensorList, TensorShapeDynamism,
};
use ptekit_format::pte::{DataEntry, NamedDataStore, PteModel};

use crate::bytes::{Data, Keep};
use crate::error::{ConvError, ConvResult, Seg};

type Any<'py> = Bound<'py, PyAny>;

/// Reads attribute `$name` of `$obj`, recording the field in the path of any error of
/// `$conv` (a function of the attribute's value).
macro_rules! field {
    ($obj:expr, $name:literal, $conv:expr) => {{
        let obj: &Any<'_> = $obj;
        let value = obj
            .getattr(intern!(obj.py(), $name))
            .map_err(|e| ConvError::from_py(obj.py(), "cannot read attribute", e))
            .and_then(|v| $conv(&v));
        value.map_err(|e: ConvError| e.at(Seg::Field($name)))
    }};
}
pub(crate) use field;

/// Converts a whole `PTEFile`. Byte data is borrowed into `keep`.
pub fn pte_file(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<PteModel<'static>> {
    let program = field!(obj, "program", |v: &Any<'_>| program(v, keep))?;
    let mutable_data = field!(obj, "mutable_data", |v: &Any<'_>| opt_list(v, |b| buffer(
        b, keep
    )))?;
    let named_data = field!(obj, "named_data", |v: &Any<'_>| {
        if v.is_none() {
            Ok(None)
        } else {
            named_data_store(v, keep).map(Some)
        }
    })?;
    Ok(PteModel {
        program,
        mutable_data,
        named_data,
    })
}

fn program(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<Program<'static>> {
    Ok(Program {
        version: field!(obj, "version", int::<u32>)?,
        execution_plan: field!(obj, "execution_plan", |v: &Any<'_>| opt_list(v, |p| {
            execution_plan(p, keep)
        }))?,
        constant_buffer: field!(obj, "constant_buffer", |v: &Any<'_>| opt_list(v, |b| {
            buffer(b, keep)
        }))?,
        backend_delegate_data: field!(obj, "backend_delegate_data", |v: &Any<'_>| opt_list(
            v,
            |b| inline_data(b, keep)
        ))?,
        segments: field!(obj, "segments", |v: &Any<'_>| opt_list(v, data_segment))?,
        constant_segment: field!(obj, "constant_segment", |v: &Any<'_>| opt(v, subsegment))?,
        mutable_data_segments: field!(obj, "mutable_data_segments", |v: &Any<'_>| opt_list(
            v, subsegment
        ))?,
        named_data: field!(obj, "named_data", |v: &Any<'_>| opt_list(v, named_data))?,
    })
}

fn execution_plan(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<ExecutionPlan<'static>> {
    Ok(ExecutionPlan {
        name: field!(obj, "name", opt_string)?,
        container_meta_type: field!(obj, "container_meta_type", |v: &Any<'_>| opt(
            v,
            container_metadata
        ))?,
        values: field!(obj, "values", |v: &Any<'_>| opt_list(v, evalue))?,
        inputs: field!(obj, "inputs", |v: &Any<'_>| opt_list(v, int::<i32>))?,
        outputs: field!(obj, "outputs", |v: &Any<'_>| opt_list(v, int::<i32>))?,
        chains: field!(obj, "chains", |v: &Any<'_>| opt_list(v, chain))?,
        operators: field!(obj, "operators", |v: &Any<'_>| opt_list(v, operator))?,
        delegates: field!(obj, "delegates", |v: &Any<'_>| opt_list(v, |d| {
            backend_delegate(d, keep)
        }))?,
        non_const_buffer_sizes: field!(obj, "non_const_buffer_sizes", |v: &Any<'_>| opt_list(
            v, int::<i64>
        ))?,
        non_const_buffer_device: field!(obj, "non_const_buffer_device", |v: &Any<'_>| {
            opt_list(v, non_const_buffer_device)
        })?,
    })
}

fn container_metadata(obj: &Any<'_>) -> ConvResult<ContainerMetadata> {
    Ok(ContainerMetadata {
        encoded_inp_str: field!(obj, "encoded_inp_str", opt_string)?,
        encoded_out_str: field!(obj, "encoded_out_str", opt_string)?,
    })
}

/// The class name of a union member.
fn union_kind(obj: &Any<'_>) -> ConvResult<String> {
    let name = obj
        .get_type()
        .name()
        .map_err(|e| ConvError::from_py(obj.py(), "cannot read the type name", e))?;
    Ok(name.to_string())
}

fn evalue(obj: &Any<'_>) -> ConvResult<EValue> {
    let val = field!(obj, "val", |v: &Any<'_>| {
        if v.is_none() {
            return Ok(None);
        }
        let kind = union_kind(v)?;
        let val = match kind.as_str() {
            "Tensor" => KernelTypes::Tensor(tensor(v)?),
            "Int" => KernelTypes::Int(Int {
                int_val: field!(v, "int_val", int::<i64>)?,
            }),
            "Null" => KernelTypes::Null(Null),
            "Bool" => KernelTypes::Bool(Bool {
                bool_val: field!(v, "bool_val", boolean)?,
            }),
            "Double" => KernelTypes::Double(Double {
                double_val: field!(v, "double_val", double)?,
            }),
            "String" => KernelTypes::String(StringValue {
                string_val: field!(v, "string_val", opt_string)?,
            }),
            "IntList" => KernelTypes::IntList(IntList {
                items: field!(v, "items", |x: &Any<'_>| opt_list(x, int::<i64>))?,
            }),
            "DoubleList" => KernelTypes::DoubleList(DoubleList {
                items: field!(v, "items", |x: &Any<'_>| opt_list(x, float))?,
            }),
            "BoolList" => KernelTypes::BoolList(BoolList {
                items: field!(v, "items", |x: &Any<'_>| opt_list(x, boolean))?,
            }),
            "TensorList" => KernelTypes::TensorList(TensorList {
                items: field!(v, "items", |x: &Any<'_>| opt_list(x, int::<i32>))?,
            }),
            "OptionalTensorList" => KernelTypes::OptionalTensorList(OptionalTensorList {
                items: field!(v, "items", |x: &Any<'_>| opt_list(x, int::<i32>))?,
            }),
            other => {
                return Err(ConvError::new(format!(
                    "{other} is not a member of the KernelTypes union"
                )))
            }
        };
        Ok(Some(val))
    })?;
    Ok(EValue { val })
}

fn tensor(obj: &Any<'_>) -> ConvResult<Tensor> {
    Ok(Tensor {
        scalar_type: ScalarType(field!(obj, "scalar_type", int::<i8>)?),
        storage_offset: field!(obj, "storage_offset", int::<i32>)?,
        sizes: field!(obj, "sizes", |v: &Any<'_>| opt_list(v, int::<i32>))?,
        dim_order: field!(obj, "dim_order", |v: &Any<'_>| opt_list(v, int::<u8>))?,
        requires_grad: field!(obj, "requires_grad", boolean)?,
        data_buffer_idx: field!(obj, "data_buffer_idx", int::<u32>)?,
        allocation_info: field!(obj, "allocation_info", |v: &Any<'_>| opt(
            v,
            allocation_details
        ))?,
        layout: field!(obj, "layout", int::<i8>)?,
        shape_dynamism: TensorShapeDynamism(field!(obj, "shape_dynamism", int::<i8>)?),
        extra_tensor_info: field!(obj, "extra_tensor_info", |v: &Any<'_>| opt(
            v,
            extra_tensor_info
        ))?,
    })
}

fn allocation_details(obj: &Any<'_>) -> ConvResult<AllocationDetails> {
    Ok(AllocationDetails {
        memory_id: field!(obj, "memory_id", int::<u32>)?,
        memory_offset_low: field!(obj, "memory_offset_low", int::<u32>)?,
        memory_offset_high: field!(obj, "memory_offset_high", int::<u32>)?,
    })
}

fn extra_tensor_info(obj: &Any<'_>) -> ConvResult<ExtraTensorInfo> {
    Ok(ExtraTensorInfo {
        mutable_data_segments_idx: field!(obj, "mutable_data_segments_idx", int::<u64>)?,
        fully_qualified_name: field!(obj, "fully_qualified_name", opt_string)?,
        location: TensorDataLocation(field!(obj, "location", int::<i8>)?),
        device_type: DeviceType(field!(obj, "device_type", int::<i8>)?),
        device_index: field!(obj, "device_index", int::<i8>)?,
    })
}

fn chain(obj: &Any<'_>) -> ConvResult<Chain> {
    Ok(Chain {
        inputs: field!(obj, "inputs", |v: &Any<'_>| opt_list(v, int::<i32>))?,
        outputs: field!(obj, "outputs", |v: &Any<'_>| opt_list(v, int::<i32>))?,
        instructions: field!(obj, "instructions", |v: &Any<'_>| opt_list(v, instruction))?,
        stacktrace: field!(obj, "stacktrace", |v: &Any<'_>| opt_list(v, frame_list))?,
    })
}

fn instruction(obj: &Any<'_>) -> ConvResult<Instruction> {
    let instr_args = field!(obj, "instr_args", |v: &Any<'_>| {
        if v.is_none() {
            return Ok(None);
        }
        let kind = union_kind(v)?;
        let args = match kind.as_str() {
            "KernelCall" => InstructionArguments::KernelCall(KernelCall {
                op_index: field!(v, "op_index", int::<i32>)?,
                args: field!(v, "args", |x: &Any<'_>| opt_list(x, int::<i32>))?,
            }),
            "DelegateCall" => InstructionArguments::DelegateCall(DelegateCall {
                delegate_index: field!(v, "delegate_index", int::<i32>)?,
                args: field!(v, "args", |x: &Any<'_>| opt_list(x, int::<i32>))?,
            }),
            "MoveCall" => InstructionArguments::MoveCall(MoveCall {
                move_from: field!(v, "move_from", int::<i32>)?,
                move_to: field!(v, "move_to", int::<i32>)?,
            }),
            "JumpFalseCall" => InstructionArguments::JumpFalseCall(JumpFalseCall {
                cond_value_index: field!(v, "cond_value_index", int::<i32>)?,
                destination_instruction: field!(v, "destination_instruction", int::<i32>)?,
            }),
            "FreeCall" => InstructionArguments::FreeCall(FreeCall {
                value_index: field!(v, "value_index", int::<i32>)?,
            }),
            other => {
                return Err(ConvError::new(format!(
                    "{other} is not a member of the InstructionArguments union"
                )))
            }
        };
        Ok(Some(args))
    })?;
    Ok(Instruction { instr_args })
}

fn frame_list(obj: &Any<'_>) -> ConvResult<FrameList> {
    Ok(FrameList {
        items: field!(obj, "items", |v: &Any<'_>| opt_list(v, frame))?,
    })
}

fn frame(obj: &Any<'_>) -> ConvResult<Frame> {
    Ok(Frame {
        filename: field!(obj, "filename", opt_string)?,
        lineno: field!(obj, "lineno", int::<i32>)?,
        name: field!(obj, "name", opt_string)?,
        context: field!(obj, "context", opt_string)?,
    })
}

fn operator(obj: &Any<'_>) -> ConvResult<Operator> {
    Ok(Operator {
        name: field!(obj, "name", opt_string)?,
        overload: field!(obj, "overload", opt_string)?,
    })
}

fn backend_delegate(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<BackendDelegate<'static>> {
    Ok(BackendDelegate {
        id: field!(obj, "id", opt_string)?,
        processed: field!(obj, "processed", |v: &Any<'_>| opt(v, |r| {
            Ok(BackendDelegateDataReference {
                location: DataLocation(field!(r, "location", int::<i8>)?),
                index: field!(r, "index", int::<u32>)?,
            })
        }))?,
        compile_specs: field!(obj, "compile_specs", |v: &Any<'_>| opt_list(v, |c| {
            Ok(CompileSpec {
                key: field!(c, "key", opt_string)?,
                value: field!(c, "value", |b: &Any<'_>| opt_bytes(b, keep))?,
            })
        }))?,
    })
}

fn non_const_buffer_device(obj: &Any<'_>) -> ConvResult<NonConstBufferDevice> {
    Ok(NonConstBufferDevice {
        buffer_idx: field!(obj, "buffer_idx", int::<i32>)?,
        device_type: DeviceType(field!(obj, "device_type", int::<i8>)?),
        device_index: field!(obj, "device_index", int::<i8>)?,
    })
}

fn buffer(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<Buffer<'static>> {
    Ok(Buffer {
        storage: field!(obj, "storage", |v: &Any<'_>| opt_bytes(v, keep))?,
    })
}

fn inline_data(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<BackendDelegateInlineData<'static>> {
    Ok(BackendDelegateInlineData {
        data: field!(obj, "data", |v: &Any<'_>| opt_bytes(v, keep))?,
    })
}

fn data_segment(obj: &Any<'_>) -> ConvResult<DataSegment> {
    Ok(DataSegment {
        offset: field!(obj, "offset", int::<u64>)?,
        size: field!(obj, "size", int::<u64>)?,
    })
}

fn subsegment(obj: &Any<'_>) -> ConvResult<SubsegmentOffsets> {
    Ok(SubsegmentOffsets {
        segment_index: field!(obj, "segment_index", int::<u32>)?,
        offsets: field!(obj, "offsets", |v: &Any<'_>| opt_list(v, int::<u64>))?,
    })
}

fn named_data(obj: &Any<'_>) -> ConvResult<NamedData> {
    Ok(NamedData {
        key: field!(obj, "key", opt_string)?,
        segment_index: field!(obj, "segment_index", int::<u32>)?,
    })
}

/// `NamedDataStoreOutput`: `buffers` (list of blobs) and `pte_data` (`{key: DataEntry}`);
/// `external_data` is not part of a `.pte` and is ignored, like the reference does.
fn named_data_store(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<NamedDataStore<'static>> {
    let buffers = field!(obj, "buffers", |v: &Any<'_>| list(v, |b| bytes(b, keep)))?;
    let pte_data = field!(obj, "pte_data", |v: &Any<'_>| {
        let dict = v
            .cast::<PyDict>()
            .map_err(|_| ConvError::new(format!("expected a dict, got {}", type_name(v))))?;
        let mut out = Vec::with_capacity(dict.len());
        for (k, entry) in dict.iter() {
            let key: String = k
                .extract()
                .map_err(|e| ConvError::from_py(v.py(), "key is not a str", e))?;
            let convert = || -> ConvResult<DataEntry> {
                let (buffer_index, alignment) = data_entry_place(&entry)?;
                Ok(DataEntry {
                    buffer_index,
                    alignment,
                })
            };
            let entry = convert().map_err(|e| e.at(Seg::Key(key.clone())))?;
            out.push((key, entry));
        }
        Ok(out)
    })?;
    Ok(NamedDataStore {
        buffers,
        pte_data,
        external_data: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------
// Leaves.

/// `buffer_index` and `alignment` of a reference `DataEntry` (of a `.pte`'s or a `.ptd`'s
/// named data); `AlignedData(data, alignment)` uses `alignment or 1`.
pub(crate) fn data_entry_place(entry: &Any<'_>) -> ConvResult<(usize, u64)> {
    let index = field!(entry, "buffer_index", int::<u64>)?;
    let buffer_index = usize::try_from(index).map_err(|_| {
        ConvError::new(format!("{index} is out of range")).at(Seg::Field("buffer_index"))
    })?;
    let alignment = field!(entry, "alignment", |a: &Any<'_>| {
        if a.is_none() {
            Ok(1)
        } else {
            int::<u64>(a).map(|n| n.max(1))
        }
    })?;
    Ok((buffer_index, alignment))
}

pub(crate) fn type_name(obj: &Any<'_>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// An integer of the schema type `T` (Python `int`, `bool`, `IntEnum`, or anything with
/// `__index__`; not `float`), range-checked.
pub(crate) fn int<T>(obj: &Any<'_>) -> ConvResult<T>
where
    for<'a, 'py> T: FromPyObject<'a, 'py>,
{
    obj.extract::<T>().map_err(|_| {
        let range = match std::any::type_name::<T>() {
            "i8" => "int8",
            "u8" => "uint8",
            "i32" => "int32",
            "u32" => "uint32",
            "i64" => "int64",
            "u64" => "uint64",
            other => other,
        };
        match obj.extract::<i128>() {
            Ok(v) => ConvError::new(format!("{v} is out of range for {range}")),
            Err(_) => ConvError::new(format!(
                "expected an integer ({range}), got {}",
                type_name(obj)
            )),
        }
    })
}

pub(crate) fn boolean(obj: &Any<'_>) -> ConvResult<bool> {
    if let Ok(b) = obj.extract::<bool>() {
        return Ok(b);
    }
    match obj.extract::<i64>() {
        Ok(0) => Ok(false),
        Ok(1) => Ok(true),
        _ => Err(ConvError::new(format!(
            "expected a bool, got {}",
            type_name(obj)
        ))),
    }
}

pub(crate) fn float(obj: &Any<'_>) -> ConvResult<f64> {
    if obj.is_instance_of::<PyString>() || obj.is_none() {
        return Err(ConvError::new(format!(
            "expected a float, got {}",
            type_name(obj)
        )));
    }
    obj.extract::<f64>()
        .map_err(|_| ConvError::new(format!("expected a float, got {}", type_name(obj))))
}

/// `Double.double_val`: a float, or the strings `"inf"` / `"-inf"` the dataclass stores
/// for infinities (the reference converts any string with `float(...)`).
fn double(obj: &Any<'_>) -> ConvResult<f64> {
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s
            .to_cow()
            .map_err(|e| ConvError::from_py(obj.py(), "bad str", e))?;
        return text
            .trim()
            .parse::<f64>()
            .map_err(|_| ConvError::new(format!("could not convert string to float: {text:?}")));
    }
    if obj.is_instance_of::<PyFloat>() {
        return float(obj);
    }
    float(obj)
}

pub(crate) fn opt_string(obj: &Any<'_>) -> ConvResult<Option<String>> {
    if obj.is_none() {
        return Ok(None);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|e| ConvError::from_py(obj.py(), "string is not valid UTF-8", e));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        // The flatbuffers builder's CreateString also takes bytes.
        return std::str::from_utf8(b.as_bytes())
            .map(|s| Some(s.to_owned()))
            .map_err(|e| ConvError::new(format!("bytes are not valid UTF-8: {e}")));
    }
    Err(ConvError::new(format!(
        "expected a str, got {}",
        type_name(obj)
    )))
}

pub(crate) fn bytes(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<Cow<'static, [u8]>> {
    if obj.is_none() || obj.is_instance_of::<PyString>() {
        return Err(ConvError::new(format!(
            "expected bytes, got {}",
            type_name(obj)
        )));
    }
    match keep.borrow(obj) {
        Ok(Data::Borrowed(b)) => Ok(Cow::Borrowed(b)),
        Ok(Data::Owned(v)) => Ok(Cow::Owned(v)),
        Err(e) => Err(ConvError::from_py(
            obj.py(),
            &format!("expected bytes, got {}", type_name(obj)),
            e,
        )),
    }
}

fn opt_bytes(obj: &Any<'_>, keep: &mut Keep) -> ConvResult<Option<Cow<'static, [u8]>>> {
    if obj.is_none() {
        return Ok(None);
    }
    bytes(obj, keep).map(Some)
}

fn opt<'py, T>(
    obj: &Any<'py>,
    f: impl FnOnce(&Any<'py>) -> ConvResult<T>,
) -> ConvResult<Option<T>> {
    if obj.is_none() {
        Ok(None)
    } else {
        f(obj).map(Some)
    }
}

fn opt_list<'py, T>(
    obj: &Any<'py>,
    f: impl FnMut(&Any<'py>) -> ConvResult<T>,
) -> ConvResult<Option<Vec<T>>> {
    if obj.is_none() {
        Ok(None)
    } else {
        list(obj, f).map(Some)
    }
}

/// A list: `list`, `tuple`, or another iterable that is not a str, bytes, dict or set
/// (numpy arrays are accepted for integer vectors, like the generated packer does).
pub(crate) fn list<'py, T>(
    obj: &Any<'py>,
    mut f: impl FnMut(&Any<'py>) -> ConvResult<T>,
) -> ConvResult<Vec<T>> {
    if let Ok(l) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        // Index-based: the list may not change while we hold the GIL, except through
        // code we call (an item's __getattr__); `get_item` re-checks the length.
        let mut i = 0;
        while let Ok(item) = l.get_item(i) {
            out.push(f(&item).map_err(|e| e.at(Seg::Index(i)))?);
            i += 1;
        }
        return Ok(out);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(t.len());
        for (i, item) in t.iter().enumerate() {
            out.push(f(&item).map_err(|e| e.at(Seg::Index(i)))?);
        }
        return Ok(out);
    }
    let plain = obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyDict>()
        || obj.is_instance_of::<pyo3::types::PySet>()
        || obj.is_instance_of::<pyo3::types::PyFrozenSet>();
    let iter = if plain { None } else { obj.try_iter().ok() };
    let Some(iter) = iter else {
        return Err(ConvError::new(format!(
            "expected a list, got {}",
            type_name(obj)
        )));
    };
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item
            .map_err(|e| ConvError::from_py(obj.py(), "iteration failed", e).at(Seg::Index(i)))?;
        out.push(f(&item).map_err(|e| e.at(Seg::Index(i)))?);
    }
    Ok(out)
}
