//! Verified, zero-copy decoding of an `ET12` program flatbuffer into the
//! [model](super::model).
//!
//! [`decode_program`] takes a buffer that starts at the file start (a whole `.pte` file
//! or a prefix of it): the extended header the container inserts at byte 8 sits inside
//! the buffer harmlessly because the reference adjusts the root offset and all other
//! offsets are relative. Every read goes through [`ptekit_flatbuffers::Verifier`]:
//! bounds, alignment, vtables, zero offsets, string terminators and UTF-8, and the
//! caller's depth, table-count and apparent-size [`Limits`] (these stop self-referencing
//! offsets and blow-ups through shared sub-tables: every visit counts). Union tags are
//! checked here against the schema. Nothing is allocated by a length the verifier has
//! not proven to be backed by bytes. The three byte fields that can be large
//! (`Buffer.storage`, `BackendDelegateInlineData.data`,
//! `CompileSpec.value`) borrow from the input.
//!
//! Errors name the absolute byte offset in the buffer and the field path, e.g.
//! `execution_plan[0].values[17].val.Tensor.sizes`. The path is built while the error
//! unwinds, so the happy path pays nothing for it.
//!
//! Differences from what the reference (Python object API) accepts, on purpose:
//! - A union whose type is set but whose value is absent is an error here (Python reads
//!   the value as `None` and would re-pack the union as `NONE`); a union type outside the
//!   schema is an error too (the model has no variant to keep it). A value present with
//!   type `NONE` is ignored, as everywhere else.
//! - Strings must be valid UTF-8 (Python would raise `UnicodeDecodeError` later).
//! - Scalar vector elements must be aligned to their size relative to the buffer start
//!   (the verifier's rule); everything the reference writes is, with or without the
//!   extended header, because the inserted header block is a multiple of 16 bytes.
//! - A `bool` byte other than 0/1 reads as `true` (like Python and C++), so such a file
//!   does not re-pack to the same bytes.
//! - Enum fields keep any stored value (the model's enums are newtypes); the Python
//!   reader raises on values its `IntEnum`s lack. [`validate`](fn@super::validate) reports them.
//!
//! For large files pass the program prefix (`program_size` bytes from the extended
//! header) rather than the whole file: [`Limits::max_buffer_size`] and the default
//! apparent-size budget (4 x the buffer length) are computed from `buf`.

use ptekit_flatbuffers::{Error as FbError, ErrorKind, Limits, Table, Verifier};

use crate::fields::{bytes, get, named, scalars, string, table, tables, R};

use super::enums::{DataLocation, DeviceType, ScalarType, TensorDataLocation, TensorShapeDynamism};
use super::model::*;

/// Which file identifiers (bytes 4..8) the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentifierPolicy {
    /// `ET` followed by two ASCII letters or digits (what readers of the reference
    /// accept; the version seen is reported by [`file_identifier`]).
    #[default]
    AnyEt,
    /// Exactly these four bytes.
    Exact([u8; 4]),
    /// Do not look at the identifier.
    Ignore,
}

impl IdentifierPolicy {
    /// Whether `id` is acceptable under this policy.
    pub fn accepts(&self, id: [u8; 4]) -> bool {
        match self {
            Self::AnyEt => is_et_identifier(id),
            Self::Exact(want) => *want == id,
            Self::Ignore => true,
        }
    }
}

/// Whether `id` is `ET` plus two ASCII alphanumerics.
pub fn is_et_identifier(id: [u8; 4]) -> bool {
    let [a, b, c, d] = id;
    a == b'E' && b == b'T' && c.is_ascii_alphanumeric() && d.is_ascii_alphanumeric()
}

/// The four identifier bytes at offset 4, if the buffer is long enough (no check of
/// their content).
pub fn file_identifier(buf: &[u8]) -> Option<[u8; 4]> {
    let bytes = buf.get(4..8)?;
    let mut id = [0u8; 4];
    id.copy_from_slice(bytes);
    Some(id)
}

/// Renders an identifier for messages (printable ASCII as is, other bytes escaped).
pub fn identifier_display(id: [u8; 4]) -> String {
    id.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// A decoding failure: the [`ptekit_flatbuffers::Error`] with its absolute byte offset
/// ([`DecodeError::offset`]) and the field path from the root `Program`
/// ([`DecodeError::path`], e.g. `execution_plan[0].values[17].val.Tensor.sizes`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct DecodeError(#[from] pub FbError);

impl DecodeError {
    /// Absolute byte offset in the input buffer where the problem was found.
    pub fn offset(&self) -> usize {
        self.0.offset()
    }

    /// The rendered field path (empty for the root itself).
    pub fn path(&self) -> String {
        self.0.path_string()
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        self.0.kind()
    }
}

/// Options of [`decode_program_with`].
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions<'l> {
    /// Depth, table, size and alignment limits of the verifier.
    pub limits: &'l Limits,
    /// Which identifiers are accepted.
    pub identifier: IdentifierPolicy,
}

/// Decodes and verifies a program, accepting any `ET??` identifier
/// ([`IdentifierPolicy::AnyEt`]).
///
/// `buf` starts at the file start; it may be a whole `.pte` or just its first
/// `program_size` bytes (preferable for large files: [`Limits::max_buffer_size`] applies
/// to `buf`).
pub fn decode_program<'a>(buf: &'a [u8], limits: &Limits) -> Result<Program<'a>, DecodeError> {
    decode_program_with(
        buf,
        &DecodeOptions {
            limits,
            identifier: IdentifierPolicy::AnyEt,
        },
    )
}

/// Decodes and verifies a program with an explicit identifier policy.
pub fn decode_program_with<'a>(
    buf: &'a [u8],
    options: &DecodeOptions<'_>,
) -> Result<Program<'a>, DecodeError> {
    let verifier = Verifier::new(buf, *options.limits)?;
    let policy = options.identifier;
    let (root, _id) = verifier.root_with_identifier(|id| policy.accepts(*id))?;
    Ok(program(root)?)
}

/// Member names of `KernelTypes`, by tag - 1.
const KERNEL_TYPES: [&str; 11] = [
    "Null",
    "Int",
    "Bool",
    "Double",
    "Tensor",
    "String",
    "IntList",
    "DoubleList",
    "BoolList",
    "TensorList",
    "OptionalTensorList",
];

/// Member names of `InstructionArguments`, by tag - 1.
const INSTRUCTION_ARGUMENTS: [&str; 5] = [
    "KernelCall",
    "DelegateCall",
    "MoveCall",
    "JumpFalseCall",
    "FreeCall",
];

fn program<'b>(t: Table<'_, 'b>) -> R<Program<'b>> {
    Ok(Program {
        version: get(&t, 0, 0u32, "version")?,
        execution_plan: tables(&t, 1, "execution_plan", execution_plan)?,
        constant_buffer: tables(&t, 2, "constant_buffer", buffer)?,
        backend_delegate_data: tables(
            &t,
            3,
            "backend_delegate_data",
            backend_delegate_inline_data,
        )?,
        segments: tables(&t, 4, "segments", data_segment)?,
        constant_segment: table(&t, 5, "constant_segment", subsegment_offsets)?,
        mutable_data_segments: tables(&t, 6, "mutable_data_segments", subsegment_offsets)?,
        named_data: tables(&t, 7, "named_data", named_data)?,
    })
}

fn execution_plan<'b>(t: Table<'_, 'b>) -> R<ExecutionPlan<'b>> {
    Ok(ExecutionPlan {
        name: string(&t, 0, "name")?,
        container_meta_type: table(&t, 1, "container_meta_type", container_metadata)?,
        values: tables(&t, 2, "values", evalue)?,
        inputs: scalars(&t, 3, "inputs")?,
        outputs: scalars(&t, 4, "outputs")?,
        chains: tables(&t, 5, "chains", chain)?,
        operators: tables(&t, 6, "operators", operator)?,
        delegates: tables(&t, 7, "delegates", backend_delegate)?,
        non_const_buffer_sizes: scalars(&t, 8, "non_const_buffer_sizes")?,
        non_const_buffer_device: tables(&t, 9, "non_const_buffer_device", non_const_buffer_device)?,
    })
}

fn container_metadata(t: Table<'_, '_>) -> R<ContainerMetadata> {
    Ok(ContainerMetadata {
        encoded_inp_str: string(&t, 0, "encoded_inp_str")?,
        encoded_out_str: string(&t, 1, "encoded_out_str")?,
    })
}

fn evalue(t: Table<'_, '_>) -> R<EValue> {
    let Some(u) = t.union(0, 1).map_err(named("val"))? else {
        return Ok(EValue { val: None });
    };
    let Some(member) = KERNEL_TYPES.get(usize::from(u.tag()).saturating_sub(1)) else {
        return Err(u.unknown_tag().in_field("val"));
    };
    let v = u.table();
    let val = kernel_types(v, u.tag()).map_err(|e| e.in_union_member(*member).in_field("val"))?;
    Ok(EValue { val: Some(val) })
}

fn kernel_types(t: Table<'_, '_>, tag: u8) -> R<KernelTypes> {
    Ok(match tag {
        1 => KernelTypes::Null(Null),
        2 => KernelTypes::Int(Int {
            int_val: get(&t, 0, 0i64, "int_val")?,
        }),
        3 => KernelTypes::Bool(Bool {
            bool_val: get(&t, 0, false, "bool_val")?,
        }),
        4 => KernelTypes::Double(Double {
            double_val: get(&t, 0, 0.0f64, "double_val")?,
        }),
        5 => KernelTypes::Tensor(tensor(t)?),
        6 => KernelTypes::String(StringValue {
            string_val: string(&t, 0, "string_val")?,
        }),
        7 => KernelTypes::IntList(IntList {
            items: scalars(&t, 0, "items")?,
        }),
        8 => KernelTypes::DoubleList(DoubleList {
            items: scalars(&t, 0, "items")?,
        }),
        9 => KernelTypes::BoolList(BoolList {
            items: scalars(&t, 0, "items")?,
        }),
        10 => KernelTypes::TensorList(TensorList {
            items: scalars(&t, 0, "items")?,
        }),
        _ => KernelTypes::OptionalTensorList(OptionalTensorList {
            items: scalars(&t, 0, "items")?,
        }),
    })
}

fn tensor(t: Table<'_, '_>) -> R<Tensor> {
    Ok(Tensor {
        scalar_type: ScalarType(get(&t, 0, 0i8, "scalar_type")?),
        storage_offset: get(&t, 1, 0i32, "storage_offset")?,
        sizes: scalars(&t, 2, "sizes")?,
        dim_order: scalars(&t, 3, "dim_order")?,
        requires_grad: get(&t, 4, false, "requires_grad")?,
        data_buffer_idx: get(&t, 5, 0u32, "data_buffer_idx")?,
        allocation_info: table(&t, 6, "allocation_info", allocation_details)?,
        layout: get(&t, 7, 0i8, "layout")?,
        shape_dynamism: TensorShapeDynamism(get(&t, 8, 0i8, "shape_dynamism")?),
        extra_tensor_info: table(&t, 9, "extra_tensor_info", extra_tensor_info)?,
    })
}

fn allocation_details(t: Table<'_, '_>) -> R<AllocationDetails> {
    Ok(AllocationDetails {
        memory_id: get(&t, 0, 0u32, "memory_id")?,
        memory_offset_low: get(&t, 1, 0u32, "memory_offset_low")?,
        memory_offset_high: get(&t, 2, 0u32, "memory_offset_high")?,
    })
}

fn extra_tensor_info(t: Table<'_, '_>) -> R<ExtraTensorInfo> {
    Ok(ExtraTensorInfo {
        mutable_data_segments_idx: get(&t, 0, 0u64, "mutable_data_segments_idx")?,
        fully_qualified_name: string(&t, 1, "fully_qualified_name")?,
        location: TensorDataLocation(get(&t, 2, 0i8, "location")?),
        device_type: DeviceType(get(&t, 3, 0i8, "device_type")?),
        device_index: get(&t, 4, 0i8, "device_index")?,
    })
}

fn chain(t: Table<'_, '_>) -> R<Chain> {
    Ok(Chain {
        inputs: scalars(&t, 0, "inputs")?,
        outputs: scalars(&t, 1, "outputs")?,
        instructions: tables(&t, 2, "instructions", instruction)?,
        stacktrace: tables(&t, 3, "stacktrace", frame_list)?,
    })
}

fn instruction(t: Table<'_, '_>) -> R<Instruction> {
    let Some(u) = t.union(0, 1).map_err(named("instr_args"))? else {
        return Ok(Instruction { instr_args: None });
    };
    let Some(member) = INSTRUCTION_ARGUMENTS.get(usize::from(u.tag()).saturating_sub(1)) else {
        return Err(u.unknown_tag().in_field("instr_args"));
    };
    let args = instruction_arguments(u.table(), u.tag())
        .map_err(|e| e.in_union_member(*member).in_field("instr_args"))?;
    Ok(Instruction {
        instr_args: Some(args),
    })
}

fn instruction_arguments(t: Table<'_, '_>, tag: u8) -> R<InstructionArguments> {
    Ok(match tag {
        1 => InstructionArguments::KernelCall(KernelCall {
            op_index: get(&t, 0, 0i32, "op_index")?,
            args: scalars(&t, 1, "args")?,
        }),
        2 => InstructionArguments::DelegateCall(DelegateCall {
            delegate_index: get(&t, 0, 0i32, "delegate_index")?,
            args: scalars(&t, 1, "args")?,
        }),
        3 => InstructionArguments::MoveCall(MoveCall {
            move_from: get(&t, 0, 0i32, "move_from")?,
            move_to: get(&t, 1, 0i32, "move_to")?,
        }),
        4 => InstructionArguments::JumpFalseCall(JumpFalseCall {
            cond_value_index: get(&t, 0, 0i32, "cond_value_index")?,
            destination_instruction: get(&t, 1, 0i32, "destination_instruction")?,
        }),
        _ => InstructionArguments::FreeCall(FreeCall {
            value_index: get(&t, 0, 0i32, "value_index")?,
        }),
    })
}

fn frame_list(t: Table<'_, '_>) -> R<FrameList> {
    Ok(FrameList {
        items: tables(&t, 0, "items", frame)?,
    })
}

fn frame(t: Table<'_, '_>) -> R<Frame> {
    Ok(Frame {
        filename: string(&t, 0, "filename")?,
        lineno: get(&t, 1, 0i32, "lineno")?,
        name: string(&t, 2, "name")?,
        context: string(&t, 3, "context")?,
    })
}

fn operator(t: Table<'_, '_>) -> R<Operator> {
    Ok(Operator {
        name: string(&t, 0, "name")?,
        overload: string(&t, 1, "overload")?,
    })
}

fn backend_delegate<'b>(t: Table<'_, 'b>) -> R<BackendDelegate<'b>> {
    Ok(BackendDelegate {
        id: string(&t, 0, "id")?,
        processed: table(&t, 1, "processed", backend_delegate_data_reference)?,
        compile_specs: tables(&t, 2, "compile_specs", compile_spec)?,
    })
}

fn backend_delegate_data_reference(t: Table<'_, '_>) -> R<BackendDelegateDataReference> {
    Ok(BackendDelegateDataReference {
        location: DataLocation(get(&t, 0, 0i8, "location")?),
        index: get(&t, 1, 0u32, "index")?,
    })
}

fn compile_spec<'b>(t: Table<'_, 'b>) -> R<CompileSpec<'b>> {
    Ok(CompileSpec {
        key: string(&t, 0, "key")?,
        value: bytes(&t, 1, "value")?,
    })
}

fn non_const_buffer_device(t: Table<'_, '_>) -> R<NonConstBufferDevice> {
    Ok(NonConstBufferDevice {
        buffer_idx: get(&t, 0, 0i32, "buffer_idx")?,
        device_type: DeviceType(get(&t, 1, 0i8, "device_type")?),
        device_index: get(&t, 2, 0i8, "device_index")?,
    })
}

fn buffer<'b>(t: Table<'_, 'b>) -> R<Buffer<'b>> {
    Ok(Buffer {
        storage: bytes(&t, 0, "storage")?,
    })
}

fn backend_delegate_inline_data<'b>(t: Table<'_, 'b>) -> R<BackendDelegateInlineData<'b>> {
    Ok(BackendDelegateInlineData {
        data: bytes(&t, 0, "data")?,
    })
}

fn data_segment(t: Table<'_, '_>) -> R<DataSegment> {
    Ok(DataSegment {
        offset: get(&t, 0, 0u64, "offset")?,
        size: get(&t, 1, 0u64, "size")?,
    })
}

fn subsegment_offsets(t: Table<'_, '_>) -> R<SubsegmentOffsets> {
    Ok(SubsegmentOffsets {
        segment_index: get(&t, 0, 0u32, "segment_index")?,
        offsets: scalars(&t, 1, "offsets")?,
    })
}

fn named_data(t: Table<'_, '_>) -> R<NamedData> {
    Ok(NamedData {
        key: string(&t, 0, "key")?,
        segment_index: get(&t, 1, 0u32, "segment_index")?,
    })
}
