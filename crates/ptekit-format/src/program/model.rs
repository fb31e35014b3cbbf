//! Owned model of every table and union of the ExecuTorch program schema
//! (`executorch/exir/_serialize/program.fbs`, file identifier `ET12`).
//!
//! Conventions:
//! - Struct and field names follow the schema (the `String` table is [`StringValue`]).
//! - Strings, vectors and sub-tables are `Option`s: `None` means "field not written",
//!   `Some(vec![])` means "an empty vector written". Both occur in reference files and
//!   both must survive a decode → pack round trip byte for byte.
//! - Scalars are plain values; `Default` gives the schema default. Scalars equal to their
//!   default are not written by the reference packer, so "absent" and "default" are the
//!   same thing for scalars.
//! - The three byte vectors that can be large ([`Buffer::storage`],
//!   [`BackendDelegateInlineData::data`], [`CompileSpec::value`]) are
//!   `Cow<'a, [u8]>`, borrowed from the input buffer after decoding.

use std::borrow::Cow;

use super::enums::{DataLocation, DeviceType, ScalarType, TensorDataLocation, TensorShapeDynamism};

/// Root table: a complete program.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program<'a> {
    /// Schema version (the reference writes 0; `ET12` files carry 0 here).
    pub version: u32,
    /// The methods of the program.
    pub execution_plan: Option<Vec<ExecutionPlan<'a>>>,
    /// Deprecated inline constant data (index 0 is the reserved empty entry).
    pub constant_buffer: Option<Vec<Buffer<'a>>>,
    /// Inline delegate blobs, referenced by [`BackendDelegateDataReference`] with
    /// location [`DataLocation::INLINE`].
    pub backend_delegate_data: Option<Vec<BackendDelegateInlineData<'a>>>,
    /// Segments following the flatbuffer in the file.
    pub segments: Option<Vec<DataSegment>>,
    /// Where the constant tensors live inside a segment.
    pub constant_segment: Option<SubsegmentOffsets>,
    /// Initial state of mutable tensors.
    pub mutable_data_segments: Option<Vec<SubsegmentOffsets>>,
    /// Named blobs stored in segments.
    pub named_data: Option<Vec<NamedData>>,
}

/// One method (entry point) of a program.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionPlan<'a> {
    /// Method name, e.g. `forward`.
    pub name: Option<String>,
    /// Pytree specs used to flatten/unflatten inputs and outputs.
    pub container_meta_type: Option<ContainerMetadata>,
    /// All values of the method.
    pub values: Option<Vec<EValue>>,
    /// Indices into `values` of the method inputs.
    pub inputs: Option<Vec<i32>>,
    /// Indices into `values` of the method outputs.
    pub outputs: Option<Vec<i32>>,
    /// Instruction chains (today always one).
    pub chains: Option<Vec<Chain>>,
    /// Operators referenced by [`KernelCall::op_index`].
    pub operators: Option<Vec<Operator>>,
    /// Delegates referenced by [`DelegateCall::delegate_index`].
    pub delegates: Option<Vec<BackendDelegate<'a>>>,
    /// Sizes of the planned memory buffers (entry 0 is unused by the runtime).
    pub non_const_buffer_sizes: Option<Vec<i64>>,
    /// Optional per-buffer device placement, parallel to `non_const_buffer_sizes`.
    pub non_const_buffer_device: Option<Vec<NonConstBufferDevice>>,
}

/// Pytree metadata of a method's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMetadata {
    /// Encoded input spec.
    pub encoded_inp_str: Option<String>,
    /// Encoded output spec.
    pub encoded_out_str: Option<String>,
}

/// A sequence of instructions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chain {
    /// Indices of the chain's input values.
    pub inputs: Option<Vec<i32>>,
    /// Indices of the chain's output values.
    pub outputs: Option<Vec<i32>>,
    /// Instructions, executed in order.
    pub instructions: Option<Vec<Instruction>>,
    /// Optional stack trace per instruction.
    pub stacktrace: Option<Vec<FrameList>>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instruction {
    /// The instruction's payload; `None` is union type `NONE`.
    pub instr_args: Option<InstructionArguments>,
}

/// The `InstructionArguments` union.
#[derive(Debug, Clone, PartialEq)]
pub enum InstructionArguments {
    /// Call a kernel.
    KernelCall(KernelCall),
    /// Call a delegate.
    DelegateCall(DelegateCall),
    /// Move one value into another.
    MoveCall(MoveCall),
    /// Conditional jump.
    JumpFalseCall(JumpFalseCall),
    /// Free a tensor's data.
    FreeCall(FreeCall),
}

impl InstructionArguments {
    /// The union tag value as stored in the file (`NONE` = 0 is `Option::None`).
    pub fn type_tag(&self) -> u8 {
        match self {
            Self::KernelCall(_) => 1,
            Self::DelegateCall(_) => 2,
            Self::MoveCall(_) => 3,
            Self::JumpFalseCall(_) => 4,
            Self::FreeCall(_) => 5,
        }
    }

    /// The schema name of the member type (`"KernelCall"`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::KernelCall(_) => "KernelCall",
            Self::DelegateCall(_) => "DelegateCall",
            Self::MoveCall(_) => "MoveCall",
            Self::JumpFalseCall(_) => "JumpFalseCall",
            Self::FreeCall(_) => "FreeCall",
        }
    }
}

/// Arguments of a kernel call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelCall {
    /// Index into [`ExecutionPlan::operators`].
    pub op_index: i32,
    /// Value indices of the arguments (inputs and outputs).
    pub args: Option<Vec<i32>>,
}

/// Arguments of a delegate call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DelegateCall {
    /// Index into [`ExecutionPlan::delegates`].
    pub delegate_index: i32,
    /// Value indices of the arguments (inputs and outputs).
    pub args: Option<Vec<i32>>,
}

/// Move one value into another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MoveCall {
    /// Source value index.
    pub move_from: i32,
    /// Destination value index.
    pub move_to: i32,
}

/// Jump to `destination_instruction` when the boolean value is false.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JumpFalseCall {
    /// Value index of the condition.
    pub cond_value_index: i32,
    /// Instruction index to jump to.
    pub destination_instruction: i32,
}

/// Free a tensor's data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FreeCall {
    /// Value index of the tensor.
    pub value_index: i32,
}

/// A stack frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// File name.
    pub filename: Option<String>,
    /// Line number.
    pub lineno: i32,
    /// Function name.
    pub name: Option<String>,
    /// Source line.
    pub context: Option<String>,
}

/// The stack trace of one instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameList {
    /// Frames, outermost first.
    pub items: Option<Vec<Frame>>,
}

/// An operator (kernel) name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operator {
    /// Operator name, e.g. `aten::add`.
    pub name: Option<String>,
    /// Overload name, e.g. `out`.
    pub overload: Option<String>,
}

/// A value of a method.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EValue {
    /// The value; `None` is union type `NONE`.
    pub val: Option<KernelTypes>,
}

/// The `KernelTypes` union.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelTypes {
    /// `None`.
    Null(Null),
    /// A 64-bit integer.
    Int(Int),
    /// A boolean.
    Bool(Bool),
    /// A double.
    Double(Double),
    /// A tensor.
    Tensor(Tensor),
    /// A string (schema table `String`).
    String(StringValue),
    /// A list of integers.
    IntList(IntList),
    /// A list of doubles.
    DoubleList(DoubleList),
    /// A list of booleans.
    BoolList(BoolList),
    /// A list of tensors (value indices).
    TensorList(TensorList),
    /// A list of optional tensors (value indices; -1 = None).
    OptionalTensorList(OptionalTensorList),
}

impl KernelTypes {
    /// The union tag value as stored in the file (`NONE` = 0 is `Option::None`).
    pub fn type_tag(&self) -> u8 {
        match self {
            Self::Null(_) => 1,
            Self::Int(_) => 2,
            Self::Bool(_) => 3,
            Self::Double(_) => 4,
            Self::Tensor(_) => 5,
            Self::String(_) => 6,
            Self::IntList(_) => 7,
            Self::DoubleList(_) => 8,
            Self::BoolList(_) => 9,
            Self::TensorList(_) => 10,
            Self::OptionalTensorList(_) => 11,
        }
    }

    /// The schema name of the member type (`"Tensor"`, `"String"`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Null(_) => "Null",
            Self::Int(_) => "Int",
            Self::Bool(_) => "Bool",
            Self::Double(_) => "Double",
            Self::Tensor(_) => "Tensor",
            Self::String(_) => "String",
            Self::IntList(_) => "IntList",
            Self::DoubleList(_) => "DoubleList",
            Self::BoolList(_) => "BoolList",
            Self::TensorList(_) => "TensorList",
            Self::OptionalTensorList(_) => "OptionalTensorList",
        }
    }
}

/// The empty `Null` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Null;

/// `Int` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Int {
    /// The value.
    pub int_val: i64,
}

/// `Bool` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bool {
    /// The value.
    pub bool_val: bool,
}

/// `Double` table.
///
/// The reference's Python dataclass stores infinities as the strings `"inf"`/`"-inf"`
/// and converts them back to floats before packing; here the value is always an `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Double {
    /// The value.
    pub double_val: f64,
}

/// The schema's `String` table (renamed to avoid clashing with `std::string::String`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringValue {
    /// The value.
    pub string_val: Option<String>,
}

/// `IntList` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntList {
    /// The items.
    pub items: Option<Vec<i64>>,
}

/// `DoubleList` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DoubleList {
    /// The items.
    pub items: Option<Vec<f64>>,
}

/// `BoolList` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoolList {
    /// The items.
    pub items: Option<Vec<bool>>,
}

/// `TensorList` table: value indices of tensors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TensorList {
    /// Value indices.
    pub items: Option<Vec<i32>>,
}

/// `OptionalTensorList` table: value indices of tensors, `-1` for None.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptionalTensorList {
    /// Value indices.
    pub items: Option<Vec<i32>>,
}

/// A tensor value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    /// Element type.
    pub scalar_type: ScalarType,
    /// Offset (in elements) into the data buffer; the runtime supports only 0.
    pub storage_offset: i32,
    /// Sizes (upper bounds for dynamic shapes).
    pub sizes: Option<Vec<i32>>,
    /// Dimension order, outermost first.
    pub dim_order: Option<Vec<u8>>,
    /// Whether the tensor requires gradients.
    pub requires_grad: bool,
    /// Index of the constant data (0 = none).
    pub data_buffer_idx: u32,
    /// Memory planning information for non-constant tensors.
    pub allocation_info: Option<AllocationDetails>,
    /// Layout (unused, 0).
    pub layout: i8,
    /// How `sizes` is to be interpreted.
    pub shape_dynamism: TensorShapeDynamism,
    /// Rarely needed extra information.
    pub extra_tensor_info: Option<ExtraTensorInfo>,
}

/// Where a non-constant tensor's memory is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocationDetails {
    /// Index of the memory (planned buffer).
    pub memory_id: u32,
    /// Low 32 bits of the offset inside that memory.
    pub memory_offset_low: u32,
    /// High 32 bits of the offset inside that memory.
    pub memory_offset_high: u32,
}

impl AllocationDetails {
    /// The full 64-bit offset.
    pub fn memory_offset(&self) -> u64 {
        (u64::from(self.memory_offset_high) << 32) | u64::from(self.memory_offset_low)
    }
}

/// Extra information about a tensor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtraTensorInfo {
    /// Index into `Program.mutable_data_segments`.
    pub mutable_data_segments_idx: u64,
    /// Fully qualified name (key for external data).
    pub fully_qualified_name: Option<String>,
    /// Where the data is.
    pub location: TensorDataLocation,
    /// Device type.
    pub device_type: DeviceType,
    /// Device index.
    pub device_index: i8,
}

/// A reference to a delegate's processed blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendDelegateDataReference {
    /// Which list `index` refers to.
    pub location: DataLocation,
    /// Index into `Program.backend_delegate_data` (INLINE) or `Program.segments` (SEGMENT).
    pub index: u32,
}

/// One compile spec of a delegate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompileSpec<'a> {
    /// Key.
    pub key: Option<String>,
    /// Value bytes.
    pub value: Option<Cow<'a, [u8]>>,
}

/// A lowered backend module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendDelegate<'a> {
    /// Backend id, e.g. `XnnpackBackend`.
    pub id: Option<String>,
    /// Where the processed blob is.
    pub processed: Option<BackendDelegateDataReference>,
    /// Compile specs.
    pub compile_specs: Option<Vec<CompileSpec<'a>>>,
}

/// Device placement of one planned memory buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NonConstBufferDevice {
    /// Index into `non_const_buffer_sizes`.
    pub buffer_idx: i32,
    /// Device type.
    pub device_type: DeviceType,
    /// Device index.
    pub device_index: i8,
}

/// Inline constant data (deprecated storage of constants).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Buffer<'a> {
    /// The bytes; packed as one vector aligned to the tensor alignment.
    pub storage: Option<Cow<'a, [u8]>>,
}

/// Inline delegate data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendDelegateInlineData<'a> {
    /// The bytes; packed as one vector aligned to the delegate alignment.
    pub data: Option<Cow<'a, [u8]>>,
}

/// A segment after the flatbuffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataSegment {
    /// Offset relative to the segment base offset.
    pub offset: u64,
    /// Size in bytes (without padding).
    pub size: u64,
}

/// Offsets of sub-blobs inside one segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubsegmentOffsets {
    /// Index into `Program.segments`.
    pub segment_index: u32,
    /// Offsets inside that segment.
    pub offsets: Option<Vec<u64>>,
}

/// A named blob in a segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedData {
    /// Unique key.
    pub key: Option<String>,
    /// Index into `Program.segments`.
    pub segment_index: u32,
}

fn own_bytes(b: Option<Cow<'_, [u8]>>) -> Option<Cow<'static, [u8]>> {
    b.map(|c| Cow::Owned(c.into_owned()))
}

impl Program<'_> {
    /// Copies all borrowed byte data so the program no longer borrows the input buffer.
    pub fn into_owned(self) -> Program<'static> {
        Program {
            version: self.version,
            execution_plan: self
                .execution_plan
                .map(|v| v.into_iter().map(ExecutionPlan::into_owned).collect()),
            constant_buffer: self
                .constant_buffer
                .map(|v| v.into_iter().map(Buffer::into_owned).collect()),
            backend_delegate_data: self.backend_delegate_data.map(|v| {
                v.into_iter()
                    .map(BackendDelegateInlineData::into_owned)
                    .collect()
            }),
            segments: self.segments,
            constant_segment: self.constant_segment,
            mutable_data_segments: self.mutable_data_segments,
            named_data: self.named_data,
        }
    }
}

impl ExecutionPlan<'_> {
    /// Copies all borrowed byte data.
    pub fn into_owned(self) -> ExecutionPlan<'static> {
        ExecutionPlan {
            name: self.name,
            container_meta_type: self.container_meta_type,
            values: self.values,
            inputs: self.inputs,
            outputs: self.outputs,
            chains: self.chains,
            operators: self.operators,
            delegates: self
                .delegates
                .map(|v| v.into_iter().map(BackendDelegate::into_owned).collect()),
            non_const_buffer_sizes: self.non_const_buffer_sizes,
            non_const_buffer_device: self.non_const_buffer_device,
        }
    }
}

impl BackendDelegate<'_> {
    /// Copies all borrowed byte data.
    pub fn into_owned(self) -> BackendDelegate<'static> {
        BackendDelegate {
            id: self.id,
            processed: self.processed,
            compile_specs: self
                .compile_specs
                .map(|v| v.into_iter().map(CompileSpec::into_owned).collect()),
        }
    }
}

impl CompileSpec<'_> {
    /// Copies all borrowed byte data.
    pub fn into_owned(self) -> CompileSpec<'static> {
        CompileSpec {
            key: self.key,
            value: own_bytes(self.value),
        }
    }
}

impl Buffer<'_> {
    /// Copies all borrowed byte data.
    pub fn into_owned(self) -> Buffer<'static> {
        Buffer {
            storage: own_bytes(self.storage),
        }
    }
}

impl BackendDelegateInlineData<'_> {
    /// Copies all borrowed byte data.
    pub fn into_owned(self) -> BackendDelegateInlineData<'static> {
        BackendDelegateInlineData {
            data: own_bytes(self.data),
        }
    }
}
