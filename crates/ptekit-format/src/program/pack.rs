//! Packing a [`Program`] into flatbuffer bytes identical to the reference serializer's
//! (`executorch.exir._serialize._flatbuffer_program._program_to_flatbuffer`, executorch
//! 1.5.1 with Python `flatbuffers` 25.12.19).
//!
//! The reference packs through the flatc-generated Python object API (`XxxT.Pack`).
//! Every table's `Pack` first creates its children in field-declaration order (strings
//! via `CreateString`, scalar vectors via `StartVector(size, n, size)` with the elements
//! prepended last to first, vectors of tables by packing each element first to last and
//! then a vector of their offsets, sub-tables and union values by recursion), then
//! `Start`s the table and adds every field in declaration order: scalars through
//! `PrependXSlot`, which skips a value equal to the schema default (all defaults are 0
//! here), children only when they are not `None`. The functions below mirror that order
//! table by table; each comment names the generated method it follows.
//!
//! Reference behaviour worth knowing (all reproduced here):
//! - `Buffer.storage` and `BackendDelegateInlineData.data` do not go through the generated
//!   packers: `_flatbuffer_program.py` overrides them with `_create_aligned_byte_vector`,
//!   one `StartVector(1, len, alignment)` plus a bulk copy, with alignment = the tensor
//!   resp. delegate alignment (default 16, both validated to be powers of two).
//!   `CompileSpec.value` and `Tensor.dim_order` are ordinary `[ubyte]` vectors (alignment 1).
//! - The scalar default test is Python's `x != default`: a `Double` of `-0.0` compares
//!   equal to the default `0.0` and is therefore *not written* (it decodes as `+0.0`);
//!   a NaN is always written.
//! - Union type fields are written before the union value (`val_type` slot 0, `val`
//!   slot 1); a union of type `NONE` writes neither.
//! - `Double` values that the Python dataclass holds as strings (`"inf"`, `"-inf"`) are
//!   converted with `float()` before packing; here they are plain `f64`s already.
//! - The Python builder refuses to grow beyond 2 GiB (`BuilderSizeError`); since its
//!   buffer only grows, that happens exactly when the finished buffer would exceed
//!   2^31 bytes. [`pack_program`] returns [`PackError::TooLarge`] in that case.

use ptekit_flatbuffers::{BuildError, Builder, UOffset};

use super::model::*;

/// The largest flatbuffer the reference can write (`flatbuffers.Builder.MAX_BUFFER_SIZE`).
pub const MAX_FLATBUFFER_SIZE: u64 = 1 << 31;

/// The file identifier the reference writes (`file_identifier "ET12"` in `program.fbs`).
pub const PROGRAM_FILE_IDENTIFIER: [u8; 4] = *b"ET12";

/// Largest alignment accepted for the two aligned byte vectors.
///
/// The reference accepts any power of two, but anything above 2 GiB cannot produce a
/// buffer within the 2 GiB limit anyway.
pub const MAX_ALIGNMENT: usize = 1 << 30;

/// Options of [`pack_program`]: the `force_align` values the reference patches into its
/// schema (`constant_tensor_alignment`, `delegate_alignment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackOptions {
    /// Alignment of every `Buffer.storage` vector (reference default 16).
    pub tensor_alignment: usize,
    /// Alignment of every `BackendDelegateInlineData.data` vector (reference default 16).
    pub delegate_alignment: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self {
            tensor_alignment: 16,
            delegate_alignment: 16,
        }
    }
}

impl PackOptions {
    /// Checks both alignments like the reference (`_is_valid_alignment`: a power of two,
    /// so zero is rejected too), additionally capped at [`MAX_ALIGNMENT`].
    pub fn validate(&self) -> Result<(), PackError> {
        check_alignment("tensor", self.tensor_alignment)?;
        check_alignment("delegate", self.delegate_alignment)
    }
}

fn check_alignment(what: &'static str, value: usize) -> Result<(), PackError> {
    if value.is_power_of_two() && value <= MAX_ALIGNMENT {
        Ok(())
    } else {
        Err(PackError::BadAlignment { what, value })
    }
}

/// What the reference's `_FlatbufferResult.max_alignment` reports for these options: the
/// largest `force_align` in the patched schema, i.e. the larger of the two alignments
/// (the schema has no other `force_align`). The container pads the inserted extended
/// header to a multiple of this so that the aligned vectors stay aligned.
pub fn max_alignment(options: &PackOptions) -> usize {
    options.tensor_alignment.max(options.delegate_alignment)
}

/// Errors of [`pack_program`].
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// An alignment option is not a power of two (or is absurdly large).
    #[error("bad {what} alignment {value}: must be a power of two no larger than 2^30")]
    BadAlignment {
        /// Which option (`"tensor"` or `"delegate"`).
        what: &'static str,
        /// The rejected value.
        value: usize,
    },
    /// The flatbuffer would exceed the reference's 2 GiB limit.
    #[error(
        "program too large: the flatbuffer needs at least {size} bytes, \
         more than the reference's limit of {limit} bytes (store data in segments instead)"
    )]
    TooLarge {
        /// Bytes needed (a lower bound when detected before packing).
        size: u64,
        /// The limit, [`MAX_FLATBUFFER_SIZE`].
        limit: u64,
    },
    /// Any other error reported by the flatbuffer builder (e.g. a table too large for
    /// 16-bit vtable entries).
    #[error("flatbuffer builder error: {0}")]
    Build(#[source] BuildError),
}

/// Packs `program` into the bytes the reference's `_program_to_flatbuffer(program,
/// constant_tensor_alignment=…, delegate_alignment=…).data` returns, with file
/// identifier `ET12`.
///
/// The result has no extended header; see the `pte` module for the container.
pub fn pack_program(program: &Program<'_>, options: &PackOptions) -> Result<Vec<u8>, PackError> {
    options.validate()?;
    // Cheap lower bound first, so a program whose byte payloads alone exceed the limit
    // is rejected before gigabytes are copied into the builder.
    let payload = payload_lower_bound(program);
    if payload > MAX_FLATBUFFER_SIZE {
        return Err(PackError::TooLarge {
            size: payload,
            limit: MAX_FLATBUFFER_SIZE,
        });
    }
    let capacity = usize::try_from(payload.saturating_add(4096)).unwrap_or(4096);
    let mut packer = Packer {
        b: Builder::with_capacity(capacity),
        options: *options,
    };
    let root = packer.program(program);
    let data = packer
        .b
        .try_finish(root, Some(&PROGRAM_FILE_IDENTIFIER))
        .and_then(|()| packer.b.try_into_finished_data())
        .map_err(|e| match e {
            BuildError::BufferTooLarge { requested, max } => PackError::TooLarge {
                size: requested,
                limit: max,
            },
            other => PackError::Build(other),
        })?;
    let size = len_u64(data.len());
    if size > MAX_FLATBUFFER_SIZE {
        return Err(PackError::TooLarge {
            size,
            limit: MAX_FLATBUFFER_SIZE,
        });
    }
    Ok(data)
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Sum of the sizes of the large byte payloads (a lower bound of the packed size).
fn payload_lower_bound(program: &Program<'_>) -> u64 {
    let mut total: u64 = 0;
    let mut add = |n: usize| total = total.saturating_add(len_u64(n));
    for b in program.constant_buffer.iter().flatten() {
        add(b.storage.as_ref().map_or(0, |s| s.len()));
    }
    for d in program.backend_delegate_data.iter().flatten() {
        add(d.data.as_ref().map_or(0, |s| s.len()));
    }
    for plan in program.execution_plan.iter().flatten() {
        for del in plan.delegates.iter().flatten() {
            for cs in del.compile_specs.iter().flatten() {
                add(cs.value.as_ref().map_or(0, |s| s.len()));
            }
        }
    }
    total
}

struct Packer {
    b: Builder,
    options: PackOptions,
}

macro_rules! scalar_slot {
    ($b:expr, $method:ident, $slot:expr, $value:expr, $default:expr) => {{
        let v = $value;
        // Python's `x != d` (so -0.0 is skipped like 0.0 and NaN is always written).
        #[allow(clippy::float_cmp)]
        if v != $default {
            $b.$method($slot, v, $default);
        }
    }};
}

impl Packer {
    fn string(&mut self, s: &Option<String>) -> Option<UOffset> {
        s.as_deref().map(|s| self.b.create_string(s))
    }

    /// Packs a vector of tables: elements first to last, then the offset vector.
    fn tables<T>(
        &mut self,
        items: &Option<Vec<T>>,
        mut pack: impl FnMut(&mut Self, &T) -> UOffset,
    ) -> Option<UOffset> {
        let items = items.as_ref()?;
        let offsets: Vec<UOffset> = items.iter().map(|item| pack(self, item)).collect();
        Some(self.b.create_offset_vector(&offsets))
    }

    fn add_opt(&mut self, slot: usize, off: Option<UOffset>) {
        if let Some(off) = off {
            self.b.add_offset(slot, off);
        }
    }

    // ProgramT.Pack
    fn program(&mut self, p: &Program<'_>) -> UOffset {
        let execution_plan = self.tables(&p.execution_plan, Self::execution_plan);
        let constant_buffer = self.tables(&p.constant_buffer, Self::buffer);
        let backend_delegate_data =
            self.tables(&p.backend_delegate_data, Self::backend_delegate_inline_data);
        let segments = self.tables(&p.segments, Self::data_segment);
        let constant_segment = p
            .constant_segment
            .as_ref()
            .map(|c| self.subsegment_offsets(c));
        let mutable_data_segments = self.tables(&p.mutable_data_segments, Self::subsegment_offsets);
        let named_data = self.tables(&p.named_data, Self::named_data);
        self.b.start_object(8);
        scalar_slot!(self.b, add_u32, 0, p.version, 0u32);
        self.add_opt(1, execution_plan);
        self.add_opt(2, constant_buffer);
        self.add_opt(3, backend_delegate_data);
        self.add_opt(4, segments);
        self.add_opt(5, constant_segment);
        self.add_opt(6, mutable_data_segments);
        self.add_opt(7, named_data);
        self.b.end_object()
    }

    // ExecutionPlanT.Pack
    fn execution_plan(&mut self, e: &ExecutionPlan<'_>) -> UOffset {
        let name = self.string(&e.name);
        let container_meta_type = e
            .container_meta_type
            .as_ref()
            .map(|c| self.container_metadata(c));
        let values = self.tables(&e.values, Self::evalue);
        let inputs = e.inputs.as_deref().map(|v| self.b.create_scalar_vector(v));
        let outputs = e.outputs.as_deref().map(|v| self.b.create_scalar_vector(v));
        let chains = self.tables(&e.chains, Self::chain);
        let operators = self.tables(&e.operators, Self::operator);
        let delegates = self.tables(&e.delegates, Self::backend_delegate);
        let non_const_buffer_sizes = e
            .non_const_buffer_sizes
            .as_deref()
            .map(|v| self.b.create_scalar_vector(v));
        let non_const_buffer_device =
            self.tables(&e.non_const_buffer_device, Self::non_const_buffer_device);
        self.b.start_object(10);
        self.add_opt(0, name);
        self.add_opt(1, container_meta_type);
        self.add_opt(2, values);
        self.add_opt(3, inputs);
        self.add_opt(4, outputs);
        self.add_opt(5, chains);
        self.add_opt(6, operators);
        self.add_opt(7, delegates);
        self.add_opt(8, non_const_buffer_sizes);
        self.add_opt(9, non_const_buffer_device);
        self.b.end_object()
    }

    // ContainerMetadataT.Pack
    fn container_metadata(&mut self, c: &ContainerMetadata) -> UOffset {
        let inp = self.string(&c.encoded_inp_str);
        let out = self.string(&c.encoded_out_str);
        self.b.start_object(2);
        self.add_opt(0, inp);
        self.add_opt(1, out);
        self.b.end_object()
    }

    // EValueT.Pack (union value first, then type slot 0, value slot 1)
    fn evalue(&mut self, v: &EValue) -> UOffset {
        let val = v.val.as_ref().map(|k| self.kernel_types(k));
        self.b.start_object(2);
        let tag = v.val.as_ref().map_or(0, KernelTypes::type_tag);
        scalar_slot!(self.b, add_u8, 0, tag, 0u8);
        self.add_opt(1, val);
        self.b.end_object()
    }

    fn kernel_types(&mut self, k: &KernelTypes) -> UOffset {
        match k {
            // NullT.Pack
            KernelTypes::Null(Null) => {
                self.b.start_object(0);
                self.b.end_object()
            }
            // IntT.Pack
            KernelTypes::Int(i) => {
                self.b.start_object(1);
                scalar_slot!(self.b, add_i64, 0, i.int_val, 0i64);
                self.b.end_object()
            }
            // BoolT.Pack
            KernelTypes::Bool(x) => {
                self.b.start_object(1);
                scalar_slot!(self.b, add_bool, 0, x.bool_val, false);
                self.b.end_object()
            }
            // DoubleT.Pack
            KernelTypes::Double(d) => {
                self.b.start_object(1);
                scalar_slot!(self.b, add_f64, 0, d.double_val, 0.0f64);
                self.b.end_object()
            }
            KernelTypes::Tensor(t) => self.tensor(t),
            // StringT.Pack
            KernelTypes::String(s) => {
                let val = self.string(&s.string_val);
                self.b.start_object(1);
                self.add_opt(0, val);
                self.b.end_object()
            }
            // IntListT.Pack
            KernelTypes::IntList(l) => {
                let items = l.items.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.single_offset_table(items)
            }
            // DoubleListT.Pack
            KernelTypes::DoubleList(l) => {
                let items = l.items.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.single_offset_table(items)
            }
            // BoolListT.Pack: `PrependBool` writes one byte (0/1) per element,
            // `StartVector(1, n, 1)`.
            KernelTypes::BoolList(l) => {
                let items = l.items.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.single_offset_table(items)
            }
            // TensorListT.Pack
            KernelTypes::TensorList(l) => {
                let items = l.items.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.single_offset_table(items)
            }
            // OptionalTensorListT.Pack
            KernelTypes::OptionalTensorList(l) => {
                let items = l.items.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.single_offset_table(items)
            }
        }
    }

    /// A table whose only field is an offset in slot 0 (the list tables, `FrameList`).
    fn single_offset_table(&mut self, field: Option<UOffset>) -> UOffset {
        self.b.start_object(1);
        self.add_opt(0, field);
        self.b.end_object()
    }

    // TensorT.Pack
    fn tensor(&mut self, t: &Tensor) -> UOffset {
        let sizes = t.sizes.as_deref().map(|v| self.b.create_scalar_vector(v));
        let dim_order = t
            .dim_order
            .as_deref()
            .map(|v| self.b.create_scalar_vector(v));
        let allocation_info = t
            .allocation_info
            .as_ref()
            .map(|a| self.allocation_details(a));
        let extra = t
            .extra_tensor_info
            .as_ref()
            .map(|x| self.extra_tensor_info(x));
        self.b.start_object(10);
        scalar_slot!(self.b, add_i8, 0, t.scalar_type.0, 0i8);
        scalar_slot!(self.b, add_i32, 1, t.storage_offset, 0i32);
        self.add_opt(2, sizes);
        self.add_opt(3, dim_order);
        scalar_slot!(self.b, add_bool, 4, t.requires_grad, false);
        scalar_slot!(self.b, add_u32, 5, t.data_buffer_idx, 0u32);
        self.add_opt(6, allocation_info);
        scalar_slot!(self.b, add_i8, 7, t.layout, 0i8);
        scalar_slot!(self.b, add_i8, 8, t.shape_dynamism.0, 0i8);
        self.add_opt(9, extra);
        self.b.end_object()
    }

    // AllocationDetailsT.Pack
    fn allocation_details(&mut self, a: &AllocationDetails) -> UOffset {
        self.b.start_object(3);
        scalar_slot!(self.b, add_u32, 0, a.memory_id, 0u32);
        scalar_slot!(self.b, add_u32, 1, a.memory_offset_low, 0u32);
        scalar_slot!(self.b, add_u32, 2, a.memory_offset_high, 0u32);
        self.b.end_object()
    }

    // ExtraTensorInfoT.Pack
    fn extra_tensor_info(&mut self, x: &ExtraTensorInfo) -> UOffset {
        let fqn = self.string(&x.fully_qualified_name);
        self.b.start_object(5);
        scalar_slot!(self.b, add_u64, 0, x.mutable_data_segments_idx, 0u64);
        self.add_opt(1, fqn);
        scalar_slot!(self.b, add_i8, 2, x.location.0, 0i8);
        scalar_slot!(self.b, add_i8, 3, x.device_type.0, 0i8);
        scalar_slot!(self.b, add_i8, 4, x.device_index, 0i8);
        self.b.end_object()
    }

    // ChainT.Pack
    fn chain(&mut self, c: &Chain) -> UOffset {
        let inputs = c.inputs.as_deref().map(|v| self.b.create_scalar_vector(v));
        let outputs = c.outputs.as_deref().map(|v| self.b.create_scalar_vector(v));
        let instructions = self.tables(&c.instructions, Self::instruction);
        let stacktrace = self.tables(&c.stacktrace, Self::frame_list);
        self.b.start_object(4);
        self.add_opt(0, inputs);
        self.add_opt(1, outputs);
        self.add_opt(2, instructions);
        self.add_opt(3, stacktrace);
        self.b.end_object()
    }

    // InstructionT.Pack
    fn instruction(&mut self, i: &Instruction) -> UOffset {
        let args = i.instr_args.as_ref().map(|a| self.instruction_arguments(a));
        self.b.start_object(2);
        let tag = i
            .instr_args
            .as_ref()
            .map_or(0, InstructionArguments::type_tag);
        scalar_slot!(self.b, add_u8, 0, tag, 0u8);
        self.add_opt(1, args);
        self.b.end_object()
    }

    fn instruction_arguments(&mut self, a: &InstructionArguments) -> UOffset {
        match a {
            // KernelCallT.Pack
            InstructionArguments::KernelCall(k) => {
                let args = k.args.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.b.start_object(2);
                scalar_slot!(self.b, add_i32, 0, k.op_index, 0i32);
                self.add_opt(1, args);
                self.b.end_object()
            }
            // DelegateCallT.Pack
            InstructionArguments::DelegateCall(d) => {
                let args = d.args.as_deref().map(|v| self.b.create_scalar_vector(v));
                self.b.start_object(2);
                scalar_slot!(self.b, add_i32, 0, d.delegate_index, 0i32);
                self.add_opt(1, args);
                self.b.end_object()
            }
            // MoveCallT.Pack
            InstructionArguments::MoveCall(m) => {
                self.b.start_object(2);
                scalar_slot!(self.b, add_i32, 0, m.move_from, 0i32);
                scalar_slot!(self.b, add_i32, 1, m.move_to, 0i32);
                self.b.end_object()
            }
            // JumpFalseCallT.Pack
            InstructionArguments::JumpFalseCall(j) => {
                self.b.start_object(2);
                scalar_slot!(self.b, add_i32, 0, j.cond_value_index, 0i32);
                scalar_slot!(self.b, add_i32, 1, j.destination_instruction, 0i32);
                self.b.end_object()
            }
            // FreeCallT.Pack
            InstructionArguments::FreeCall(f) => {
                self.b.start_object(1);
                scalar_slot!(self.b, add_i32, 0, f.value_index, 0i32);
                self.b.end_object()
            }
        }
    }

    // FrameListT.Pack
    fn frame_list(&mut self, l: &FrameList) -> UOffset {
        let items = self.tables(&l.items, Self::frame);
        self.single_offset_table(items)
    }

    // FrameT.Pack
    fn frame(&mut self, f: &Frame) -> UOffset {
        let filename = self.string(&f.filename);
        let name = self.string(&f.name);
        let context = self.string(&f.context);
        self.b.start_object(4);
        self.add_opt(0, filename);
        scalar_slot!(self.b, add_i32, 1, f.lineno, 0i32);
        self.add_opt(2, name);
        self.add_opt(3, context);
        self.b.end_object()
    }

    // OperatorT.Pack
    fn operator(&mut self, o: &Operator) -> UOffset {
        let name = self.string(&o.name);
        let overload = self.string(&o.overload);
        self.b.start_object(2);
        self.add_opt(0, name);
        self.add_opt(1, overload);
        self.b.end_object()
    }

    // BackendDelegateT.Pack
    fn backend_delegate(&mut self, d: &BackendDelegate<'_>) -> UOffset {
        let id = self.string(&d.id);
        let processed = d
            .processed
            .as_ref()
            .map(|r| self.backend_delegate_data_reference(r));
        let compile_specs = self.tables(&d.compile_specs, Self::compile_spec);
        self.b.start_object(3);
        self.add_opt(0, id);
        self.add_opt(1, processed);
        self.add_opt(2, compile_specs);
        self.b.end_object()
    }

    // BackendDelegateDataReferenceT.Pack
    fn backend_delegate_data_reference(&mut self, r: &BackendDelegateDataReference) -> UOffset {
        self.b.start_object(2);
        scalar_slot!(self.b, add_i8, 0, r.location.0, 0i8);
        scalar_slot!(self.b, add_u32, 1, r.index, 0u32);
        self.b.end_object()
    }

    // CompileSpecT.Pack: `value` is a plain [ubyte] vector, PrependUint8 one by one,
    // StartVector(1, n, 1).
    fn compile_spec(&mut self, c: &CompileSpec<'_>) -> UOffset {
        let key = self.string(&c.key);
        let value = c.value.as_deref().map(|v| self.b.create_scalar_vector(v));
        self.b.start_object(2);
        self.add_opt(0, key);
        self.add_opt(1, value);
        self.b.end_object()
    }

    // NonConstBufferDeviceT.Pack
    fn non_const_buffer_device(&mut self, d: &NonConstBufferDevice) -> UOffset {
        self.b.start_object(3);
        scalar_slot!(self.b, add_i32, 0, d.buffer_idx, 0i32);
        scalar_slot!(self.b, add_i8, 1, d.device_type.0, 0i8);
        scalar_slot!(self.b, add_i8, 2, d.device_index, 0i8);
        self.b.end_object()
    }

    // _flatbuffer_program._pack_buffer (overrides BufferT.Pack)
    fn buffer(&mut self, b: &Buffer<'_>) -> UOffset {
        let alignment = self.options.tensor_alignment;
        let storage = b
            .storage
            .as_deref()
            .map(|s| self.b.create_aligned_bytes(s, alignment));
        self.single_offset_table(storage)
    }

    // _flatbuffer_program._pack_backend_delegate_inline_data
    // (overrides BackendDelegateInlineDataT.Pack)
    fn backend_delegate_inline_data(&mut self, d: &BackendDelegateInlineData<'_>) -> UOffset {
        let alignment = self.options.delegate_alignment;
        let data = d
            .data
            .as_deref()
            .map(|s| self.b.create_aligned_bytes(s, alignment));
        self.single_offset_table(data)
    }

    // DataSegmentT.Pack
    fn data_segment(&mut self, s: &DataSegment) -> UOffset {
        self.b.start_object(2);
        scalar_slot!(self.b, add_u64, 0, s.offset, 0u64);
        scalar_slot!(self.b, add_u64, 1, s.size, 0u64);
        self.b.end_object()
    }

    // SubsegmentOffsetsT.Pack
    fn subsegment_offsets(&mut self, s: &SubsegmentOffsets) -> UOffset {
        let offsets = s.offsets.as_deref().map(|v| self.b.create_scalar_vector(v));
        self.b.start_object(2);
        scalar_slot!(self.b, add_u32, 0, s.segment_index, 0u32);
        self.add_opt(1, offsets);
        self.b.end_object()
    }

    // NamedDataT.Pack
    fn named_data(&mut self, n: &NamedData) -> UOffset {
        let key = self.string(&n.key);
        self.b.start_object(2);
        self.add_opt(0, key);
        scalar_slot!(self.b, add_u32, 1, n.segment_index, 0u32);
        self.b.end_object()
    }
}
