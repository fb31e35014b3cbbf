//! Light semantic validation of a decoded [`Program`]: what the verifier cannot see
//! because it is about meaning rather than encoding. `ptekit verify` reports these.
//!
//! Checked: enum values outside the schema; operator, delegate and value indices
//! (instruction arguments, method and chain inputs/outputs, tensor lists); jump
//! destinations; delegate data references (inline index or segment index); constant and
//! mutable tensor data indices; segment indices of the constant segment, mutable data
//! segments and named data; constant offsets inside their segment; planned memory
//! (memory id and, for tensors with a known element size, offset + size within the
//! planned buffer); `non_const_buffer_device` indices.

use std::fmt;

use super::calls::operator_name;
use super::enums::{DataLocation, ScalarType, TensorDataLocation, TensorShapeDynamism};
use super::kernel_args::CODEGEN_KERNEL_ARGS;
use super::model::*;

/// The category of an [`Issue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueKind {
    /// An enum field holds a value the schema does not declare.
    UnknownEnumValue,
    /// An index points outside the list it indexes.
    IndexOutOfRange,
    /// Fields contradict each other (e.g. data both inline and in a segment).
    Inconsistent,
    /// Well-formed, but the reference runtime (executorch 1.5.1) refuses it when loading.
    Unsupported,
}

/// One semantic problem, located by a field path like `execution_plan[0].values[3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Category.
    pub kind: IssueKind,
    /// Field path from the root `Program`.
    pub path: String,
    /// Human-readable description.
    pub message: String,
    /// Byte offset of the table or field in the file, when known (set by
    /// [`PteFile::validate`](crate::pte::PteFile::validate) with [`locate`](super::locate)).
    pub offset: Option<u64>,
}

impl fmt::Display for IssueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IssueKind::UnknownEnumValue => "unknown enum value",
            IssueKind::IndexOutOfRange => "index out of range",
            IssueKind::Inconsistent => "inconsistent",
            IssueKind::Unsupported => "not supported by the runtime",
        })
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(at) => write!(
                f,
                "{} (file offset 0x{at:x}): {}: {}",
                self.path, self.kind, self.message
            ),
            None => write!(f, "{}: {}: {}", self.path, self.kind, self.message),
        }
    }
}

/// Validates `program`; an empty result means no problem was found.
pub fn validate(program: &Program<'_>) -> Vec<Issue> {
    let mut v = Validator {
        program,
        issues: Vec::new(),
    };
    v.program();
    v.issues
}

struct Validator<'p, 'a> {
    program: &'p Program<'a>,
    issues: Vec<Issue>,
}

fn len_of<T>(v: &Option<Vec<T>>) -> usize {
    v.as_ref().map_or(0, Vec::len)
}

/// Whether `index` (stored as a signed schema int) is a valid index into `len` items.
fn in_range_i32(index: i32, len: usize) -> bool {
    usize::try_from(index).is_ok_and(|i| i < len)
}

fn in_range_u32(index: u32, len: usize) -> bool {
    usize::try_from(index).is_ok_and(|i| i < len)
}

/// Most dimensions the runtime's tensors have (`kTensorDimensionLimit`).
pub const MAX_TENSOR_RANK: usize = 16;

/// A problem [`check_tensor_layout`] found: the field (relative to the tensor, e.g.
/// `sizes[2]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutIssue {
    /// Category.
    pub kind: IssueKind,
    /// Field relative to the tensor: `scalar_type`, `sizes`, `sizes[i]` or `dim_order`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Checks a tensor's element type, sizes and dimension order the way the reference
/// runtime does before it makes a tensor of them (program tensors, bundled test tensors
/// and `.ptd` tensor layouts alike): a declared `ScalarType`; sizes and dim order
/// present, of equal length, at most [`MAX_TENSOR_RANK`] dimensions; no negative size;
/// the dim order a permutation of the dimensions; the byte size computable without
/// overflow. Returns the size in bytes, or `None` for a declared type whose element size
/// is not known here (complex and sub-byte bit types).
pub fn check_tensor_layout(
    scalar_type: ScalarType,
    sizes: Option<&[i32]>,
    dim_order: Option<&[u8]>,
) -> Result<Option<u64>, LayoutIssue> {
    let issue = |kind, field: String, message: String| LayoutIssue {
        kind,
        field,
        message,
    };
    if !scalar_type.is_known() {
        return Err(issue(
            IssueKind::UnknownEnumValue,
            "scalar_type".into(),
            format!("unknown ScalarType value {}", scalar_type.0),
        ));
    }
    let Some(sizes) = sizes else {
        return Err(issue(
            IssueKind::Inconsistent,
            "sizes".into(),
            "missing".into(),
        ));
    };
    if sizes.len() > MAX_TENSOR_RANK {
        return Err(issue(
            IssueKind::Unsupported,
            "sizes".into(),
            format!("{} dimensions (at most {MAX_TENSOR_RANK})", sizes.len()),
        ));
    }
    if let Some((d, s)) = sizes.iter().enumerate().find(|(_, s)| **s < 0) {
        return Err(issue(
            IssueKind::Inconsistent,
            format!("sizes[{d}]"),
            format!("negative size {s}"),
        ));
    }
    let Some(order) = dim_order else {
        return Err(issue(
            IssueKind::Inconsistent,
            "dim_order".into(),
            "missing".into(),
        ));
    };
    let mut seen = [false; MAX_TENSOR_RANK];
    let permutation = order.len() == sizes.len()
        && order.iter().all(|&d| {
            let d = usize::from(d);
            d < sizes.len() && seen.get_mut(d).is_some_and(|s| !std::mem::replace(s, true))
        });
    if !permutation {
        return Err(issue(
            IssueKind::Inconsistent,
            "dim_order".into(),
            format!(
                "{order:?} is not a permutation of the {} dimensions",
                sizes.len()
            ),
        ));
    }
    let numel = sizes
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
    let nbytes = match scalar_type.element_size() {
        None => return Ok(None),
        Some(e) => numel.and_then(|n| n.checked_mul(u64::try_from(e).ok()?)),
    };
    match nbytes.filter(|n| i64::try_from(*n).is_ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(issue(
            IssueKind::Inconsistent,
            "sizes".into(),
            format!("{sizes:?} elements of {scalar_type} overflow the byte size"),
        )),
    }
}

impl<'p> Validator<'p, '_> {
    /// Bytes of tensor data available from entry `idx` of where the tensor's data index
    /// points to the end of its buffer or segment (`None` when that place does not
    /// exist; that is reported elsewhere).
    fn data_available(&self, t: &Tensor, idx: u32) -> Option<u64> {
        let p = self.program;
        let i = usize::try_from(idx).ok()?;
        let in_segment = |s: &SubsegmentOffsets| -> Option<u64> {
            let offset = *s.offsets.as_ref()?.get(i)?;
            let segment = self
                .segments()
                .get(usize::try_from(s.segment_index).ok()?)?;
            segment.size.checked_sub(offset)
        };
        match (&t.allocation_info, &t.extra_tensor_info) {
            (None, _) if len_of(&p.constant_buffer) > 0 => {
                let storage = p.constant_buffer.as_ref()?.get(i)?.storage.as_ref()?;
                u64::try_from(storage.len()).ok()
            }
            (None, _) => in_segment(p.constant_segment.as_ref()?),
            (Some(_), x) => {
                let m = x.as_ref().map_or(0, |x| x.mutable_data_segments_idx);
                in_segment(
                    p.mutable_data_segments
                        .as_ref()?
                        .get(usize::try_from(m).ok()?)?,
                )
            }
        }
    }

    fn push(&mut self, kind: IssueKind, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue {
            kind,
            path: path.into(),
            message: message.into(),
            offset: None,
        });
    }

    fn unknown_enum(&mut self, path: String, name: &str, value: i8) {
        self.push(
            IssueKind::UnknownEnumValue,
            path,
            format!("unknown {name} value {value}"),
        );
    }

    fn segments(&self) -> &'p [DataSegment] {
        self.program.segments.as_deref().unwrap_or_default()
    }

    fn program(&mut self) {
        let p = self.program;
        let n_segments = self.segments().len();
        for (i, s) in self.segments().iter().enumerate() {
            if s.offset.checked_add(s.size).is_none() {
                self.push(
                    IssueKind::Inconsistent,
                    format!("segments[{i}]"),
                    format!("offset {} + size {} overflows", s.offset, s.size),
                );
            }
        }
        let inline_constants = len_of(&p.constant_buffer);
        let segment_constants = p
            .constant_segment
            .as_ref()
            .map_or(0, |c| len_of(&c.offsets));
        if inline_constants > 0 && segment_constants > 0 {
            self.push(
                IssueKind::Inconsistent,
                "constant_buffer",
                format!(
                    "both constant_buffer ({inline_constants} entries) and \
                     constant_segment.offsets ({segment_constants}) are non-empty"
                ),
            );
        }
        if inline_constants > 0 {
            self.push(
                IssueKind::Unsupported,
                "constant_buffer",
                format!(
                    "{inline_constants} constants in the deprecated inline constant_buffer \
                     (the runtime is built without it; `ptekit rewrite --upgrade` moves \
                     them to a constant segment)"
                ),
            );
        }
        if let Some(cs) = &p.constant_segment {
            self.subsegment("constant_segment".to_string(), cs, n_segments);
        }
        for (i, m) in p.mutable_data_segments.iter().flatten().enumerate() {
            self.subsegment(format!("mutable_data_segments[{i}]"), m, n_segments);
        }
        for (i, n) in p.named_data.iter().flatten().enumerate() {
            if !in_range_u32(n.segment_index, n_segments) {
                self.push(
                    IssueKind::IndexOutOfRange,
                    format!("named_data[{i}].segment_index"),
                    format!("segment {} of {n_segments}", n.segment_index),
                );
            }
        }
        // The runtime's validate_program refuses a program without the vector
        // ("Program has null execution_plan", InvalidProgram); an empty one loads.
        if p.execution_plan.is_none() {
            self.push(
                IssueKind::Inconsistent,
                "execution_plan",
                "missing (the runtime needs the vector, even empty)",
            );
        }
        for (i, plan) in p.execution_plan.iter().flatten().enumerate() {
            self.plan(&format!("execution_plan[{i}]"), plan);
        }
    }

    fn subsegment(&mut self, path: String, s: &SubsegmentOffsets, n_segments: usize) {
        let offsets = s.offsets.as_deref().unwrap_or_default();
        let segment = usize::try_from(s.segment_index)
            .ok()
            .and_then(|i| self.segments().get(i))
            .copied();
        match segment {
            None => {
                // An empty offsets list does not use its segment.
                if !offsets.is_empty() {
                    self.push(
                        IssueKind::IndexOutOfRange,
                        format!("{path}.segment_index"),
                        format!("segment {} of {n_segments}", s.segment_index),
                    );
                }
            }
            Some(seg) => {
                for (j, &o) in offsets.iter().enumerate() {
                    if o > seg.size {
                        self.push(
                            IssueKind::IndexOutOfRange,
                            format!("{path}.offsets[{j}]"),
                            format!("offset {o} beyond the segment size {}", seg.size),
                        );
                    }
                }
            }
        }
    }

    /// The items of the tensor list at value `list` refer to values the runtime has
    /// already parsed (a lower index: it parses values in order and reads the items'
    /// values while parsing the list) holding a tensor (or `None`, for an optional
    /// list); else it fails (InvalidType) or reads an unparsed value.
    fn list_items(
        &mut self,
        plan: &ExecutionPlan<'_>,
        list: usize,
        path: &str,
        items: &Option<Vec<i32>>,
        optional: bool,
    ) {
        let values = plan.values.as_deref().unwrap_or_default();
        for (j, &idx) in items.iter().flatten().enumerate() {
            let Ok(at) = usize::try_from(idx) else {
                continue; // -1 (optional) or reported as out of range
            };
            let Some(value) = values.get(at) else {
                continue; // reported as out of range
            };
            let fits = match &value.val {
                Some(KernelTypes::Tensor(_)) => true,
                Some(KernelTypes::Null(_)) => optional,
                _ => false,
            };
            if !fits {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{path}[{j}]"),
                    format!(
                        "value {idx} is {}, not a tensor{}",
                        value
                            .val
                            .as_ref()
                            .map_or("of no type", KernelTypes::kind_name),
                        if optional { " or None" } else { "" }
                    ),
                );
            } else if at >= list {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{path}[{j}]"),
                    format!("value {idx} comes after the list (value {list}): the runtime parses values in order"),
                );
            }
        }
    }

    fn plan(&mut self, path: &str, plan: &ExecutionPlan<'_>) {
        let n_values = len_of(&plan.values);
        let n_ops = len_of(&plan.operators);
        let n_delegates = len_of(&plan.delegates);
        let n_buffers = len_of(&plan.non_const_buffer_sizes);
        let value_list = |v: &mut Self, what: String, list: &Option<Vec<i32>>| {
            for (j, &idx) in list.iter().flatten().enumerate() {
                if !in_range_i32(idx, n_values) {
                    v.push(
                        IssueKind::IndexOutOfRange,
                        format!("{what}[{j}]"),
                        format!("value index {idx} of {n_values}"),
                    );
                }
            }
        };
        // Entry 0 is reserved (the runtime never reads it); every planned buffer the
        // runtime allocates must have a size >= 0 (MethodMeta refuses a negative one).
        for (k, &size) in plan
            .non_const_buffer_sizes
            .iter()
            .flatten()
            .enumerate()
            .skip(1)
        {
            if size < 0 {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{path}.non_const_buffer_sizes[{k}]"),
                    format!("negative planned buffer size {size}"),
                );
            }
        }
        value_list(self, format!("{path}.inputs"), &plan.inputs);
        value_list(self, format!("{path}.outputs"), &plan.outputs);
        for (i, v) in plan.values.iter().flatten().enumerate() {
            let vpath = format!("{path}.values[{i}].val");
            // The runtime refuses lists and strings without their vector.
            let missing = match &v.val {
                Some(KernelTypes::IntList(l)) => l.items.is_none().then_some("IntList.items"),
                Some(KernelTypes::DoubleList(l)) => l.items.is_none().then_some("DoubleList.items"),
                Some(KernelTypes::BoolList(l)) => l.items.is_none().then_some("BoolList.items"),
                Some(KernelTypes::TensorList(l)) => l.items.is_none().then_some("TensorList.items"),
                Some(KernelTypes::OptionalTensorList(l)) => {
                    l.items.is_none().then_some("OptionalTensorList.items")
                }
                Some(KernelTypes::String(s)) => {
                    s.string_val.is_none().then_some("String.string_val")
                }
                _ => None,
            };
            if let Some(field) = missing {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{vpath}.{field}"),
                    "missing (the runtime needs the list or string)",
                );
            }
            // A value of union type NONE (not `Null`, which is `None`): the runtime's
            // parse_values refuses every method holding one (InvalidProgram, 0x23).
            if v.val.is_none() {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{path}.values[{i}].val_type"),
                    "value without a type (union type NONE; a None value is of type Null)",
                );
            }
            match &v.val {
                Some(KernelTypes::Tensor(t)) => self.tensor(&format!("{vpath}.Tensor"), t, plan),
                Some(KernelTypes::TensorList(l)) => {
                    value_list(self, format!("{vpath}.TensorList.items"), &l.items);
                    self.list_items(
                        plan,
                        i,
                        &format!("{vpath}.TensorList.items"),
                        &l.items,
                        false,
                    );
                }
                // IntList items are value indices (of the Int values holding the numbers):
                // a kernel reading the list unwraps each as an Int, and the runtime
                // aborts on any other value (EValue::toInt).
                Some(KernelTypes::IntList(l)) => {
                    let values = plan.values.as_deref().unwrap_or_default();
                    for (j, &idx) in l.items.iter().flatten().enumerate() {
                        let item = usize::try_from(idx).ok().and_then(|i| values.get(i));
                        match item.map(|v| &v.val) {
                            None => self.push(
                                IssueKind::IndexOutOfRange,
                                format!("{vpath}.IntList.items[{j}]"),
                                format!("value index {idx} of {n_values}"),
                            ),
                            Some(Some(KernelTypes::Int(_))) => {}
                            Some(other) => self.push(
                                IssueKind::Inconsistent,
                                format!("{vpath}.IntList.items[{j}]"),
                                format!(
                                    "value {idx} is {}, not an Int",
                                    other.as_ref().map_or("of no type", KernelTypes::kind_name)
                                ),
                            ),
                        }
                    }
                }
                Some(KernelTypes::OptionalTensorList(l)) => {
                    let items = format!("{vpath}.OptionalTensorList.items");
                    self.list_items(plan, i, &items, &l.items, true);
                    for (j, &idx) in l.items.iter().flatten().enumerate() {
                        if idx != -1 && !in_range_i32(idx, n_values) {
                            self.push(
                                IssueKind::IndexOutOfRange,
                                format!("{vpath}.OptionalTensorList.items[{j}]"),
                                format!("value index {idx} of {n_values} (and not -1)"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        // The runtime refuses a method without its name or non_const_buffer_sizes
        // (Program::load_method, MethodMeta), its values or its delegates vector
        // (Method::init: "Missing values", "Missing delegates field"; InvalidProgram),
        // even where it would be empty, and aborts without its inputs or outputs vector.
        for (field, present) in [
            ("name", plan.name.is_some()),
            (
                "non_const_buffer_sizes",
                plan.non_const_buffer_sizes.is_some(),
            ),
            ("values", plan.values.is_some()),
            ("inputs", plan.inputs.is_some()),
            ("outputs", plan.outputs.is_some()),
            ("delegates", plan.delegates.is_some()),
        ] {
            if !present {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{path}.{field}"),
                    "missing (the runtime needs it, even empty)",
                );
            }
        }
        // The runtime's Method::init refuses a method without chains, and a chain without
        // its instruction vector (InvalidProgram); an empty vector is fine.
        if len_of(&plan.chains) == 0 {
            self.push(
                IssueKind::Inconsistent,
                format!("{path}.chains"),
                "no chains (the runtime loads no method without one)",
            );
        }
        for (c, chain) in plan.chains.iter().flatten().enumerate() {
            let cpath = format!("{path}.chains[{c}]");
            if chain.instructions.is_none() {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{cpath}.instructions"),
                    "missing (the runtime needs the vector, even empty)",
                );
            }
            value_list(self, format!("{cpath}.inputs"), &chain.inputs);
            value_list(self, format!("{cpath}.outputs"), &chain.outputs);
            let n_instr = len_of(&chain.instructions);
            for (k, instr) in chain.instructions.iter().flatten().enumerate() {
                let ipath = format!("{cpath}.instructions[{k}].instr_args");
                let value = |v: &mut Self, field: &str, idx: i32| {
                    if !in_range_i32(idx, n_values) {
                        v.push(
                            IssueKind::IndexOutOfRange,
                            format!("{ipath}.{field}"),
                            format!("value index {idx} of {n_values}"),
                        );
                    }
                };
                match &instr.instr_args {
                    None => self.push(
                        IssueKind::Inconsistent,
                        ipath.clone(),
                        "instruction without arguments (union type NONE)",
                    ),
                    Some(InstructionArguments::KernelCall(k)) => {
                        if !in_range_i32(k.op_index, n_ops) {
                            self.push(
                                IssueKind::IndexOutOfRange,
                                format!("{ipath}.KernelCall.op_index"),
                                format!("operator {} of {n_ops}", k.op_index),
                            );
                        }
                        value_list(self, format!("{ipath}.KernelCall.args"), &k.args);
                        let op = usize::try_from(k.op_index)
                            .ok()
                            .and_then(|i| plan.operators.as_deref()?.get(i));
                        match (op, &k.args) {
                            (_, None) => self.missing_args(&ipath, "KernelCall"),
                            (Some(op), Some(args)) => self.kernel_args(&ipath, op, args.len()),
                            (None, Some(_)) => {}
                        }
                    }
                    Some(InstructionArguments::DelegateCall(d)) => {
                        if !in_range_i32(d.delegate_index, n_delegates) {
                            self.push(
                                IssueKind::IndexOutOfRange,
                                format!("{ipath}.DelegateCall.delegate_index"),
                                format!("delegate {} of {n_delegates}", d.delegate_index),
                            );
                        }
                        value_list(self, format!("{ipath}.DelegateCall.args"), &d.args);
                        if d.args.is_none() {
                            self.missing_args(&ipath, "DelegateCall");
                        }
                    }
                    Some(InstructionArguments::MoveCall(m)) => {
                        value(self, "MoveCall.move_from", m.move_from);
                        value(self, "MoveCall.move_to", m.move_to);
                    }
                    Some(InstructionArguments::JumpFalseCall(j)) => {
                        value(self, "JumpFalseCall.cond_value_index", j.cond_value_index);
                        // Jumping to `n_instr` ends the chain.
                        let ok =
                            usize::try_from(j.destination_instruction).is_ok_and(|d| d <= n_instr);
                        if !ok {
                            self.push(
                                IssueKind::IndexOutOfRange,
                                format!("{ipath}.JumpFalseCall.destination_instruction"),
                                format!("instruction {} of {n_instr}", j.destination_instruction),
                            );
                        }
                    }
                    Some(InstructionArguments::FreeCall(f)) => {
                        value(self, "FreeCall.value_index", f.value_index);
                    }
                }
            }
            let n_frames = len_of(&chain.stacktrace);
            if chain.stacktrace.is_some() && n_frames != n_instr {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{cpath}.stacktrace"),
                    format!("{n_frames} frame lists for {n_instr} instructions"),
                );
            }
        }
        for (d, delegate) in plan.delegates.iter().flatten().enumerate() {
            let Some(r) = &delegate.processed else {
                continue;
            };
            let dpath = format!("{path}.delegates[{d}].processed");
            let (list, len) = match r.location {
                DataLocation::INLINE => (
                    "backend_delegate_data",
                    len_of(&self.program.backend_delegate_data),
                ),
                DataLocation::SEGMENT => ("segments", self.segments().len()),
                other => {
                    self.unknown_enum(format!("{dpath}.location"), "DataLocation", other.0);
                    continue;
                }
            };
            if !in_range_u32(r.index, len) {
                self.push(
                    IssueKind::IndexOutOfRange,
                    format!("{dpath}.index"),
                    format!("{list} entry {} of {len}", r.index),
                );
            }
        }
        for (i, dev) in plan.non_const_buffer_device.iter().flatten().enumerate() {
            let dpath = format!("{path}.non_const_buffer_device[{i}]");
            if !in_range_i32(dev.buffer_idx, n_buffers) {
                self.push(
                    IssueKind::IndexOutOfRange,
                    format!("{dpath}.buffer_idx"),
                    format!("buffer {} of {n_buffers}", dev.buffer_idx),
                );
            }
            if !dev.device_type.is_known() {
                self.unknown_enum(
                    format!("{dpath}.device_type"),
                    "DeviceType",
                    dev.device_type.0,
                );
            }
        }
    }

    /// The runtime's Method::init refuses a kernel or delegate call without its argument
    /// vector (InvalidProgram, "KernelCall args missing"); an empty one is fine there.
    fn missing_args(&mut self, ipath: &str, call: &str) {
        self.push(
            IssueKind::Inconsistent,
            format!("{ipath}.{call}.args"),
            "missing (the runtime needs the vector, even empty)",
        );
    }

    /// A kernel call passes as many values as the runtime's kernel for the operator
    /// takes. The reference runtime's codegen kernels check that they got one value per
    /// argument of the operator's schema plus one for the result, and fail the call
    /// (InvalidProgram) otherwise; operators without a codegen kernel in the reference
    /// (its prim ops, custom operators) are not checked.
    fn kernel_args(&mut self, ipath: &str, op: &Operator, n_args: usize) {
        let name = operator_name(op);
        let Ok(at) = CODEGEN_KERNEL_ARGS.binary_search_by(|(n, _)| (*n).cmp(name.as_str())) else {
            return;
        };
        let schema_args = CODEGEN_KERNEL_ARGS[at].1;
        if n_args != schema_args + 1 {
            self.push(
                IssueKind::Unsupported,
                format!("{ipath}.KernelCall.args"),
                format!(
                    "{n_args} values for {name}, whose kernel takes {} ({schema_args} schema \
                     arguments and the result): the runtime's kernel refuses the call",
                    schema_args + 1
                ),
            );
        }
    }

    fn tensor(&mut self, path: &str, t: &Tensor, plan: &ExecutionPlan<'_>) {
        let nbytes =
            match check_tensor_layout(t.scalar_type, t.sizes.as_deref(), t.dim_order.as_deref()) {
                Ok(n) => n,
                Err(e) => {
                    self.push(e.kind, format!("{path}.{}", e.field), e.message);
                    None
                }
            };
        if t.storage_offset != 0 {
            self.push(
                IssueKind::Unsupported,
                format!("{path}.storage_offset"),
                format!("storage offset {} (only 0 is supported)", t.storage_offset),
            );
        }
        if t.shape_dynamism == TensorShapeDynamism::DYNAMIC_UNBOUND {
            self.push(
                IssueKind::Unsupported,
                format!("{path}.shape_dynamism"),
                "fully dynamic (DYNAMIC_UNBOUND) shapes",
            );
        }
        if !t.shape_dynamism.is_known() {
            self.unknown_enum(
                format!("{path}.shape_dynamism"),
                "TensorShapeDynamism",
                t.shape_dynamism.0,
            );
        }
        if let Some(x) = &t.extra_tensor_info {
            if !x.location.is_known() {
                self.unknown_enum(
                    format!("{path}.extra_tensor_info.location"),
                    "TensorDataLocation",
                    x.location.0,
                );
            }
            if !x.device_type.is_known() {
                self.unknown_enum(
                    format!("{path}.extra_tensor_info.device_type"),
                    "DeviceType",
                    x.device_type.0,
                );
            }
        }
        let p = self.program;
        let idx = t.data_buffer_idx;
        let external = t
            .extra_tensor_info
            .as_ref()
            .is_some_and(|x| x.location == TensorDataLocation::EXTERNAL);
        if external {
            // Data lives outside the file, keyed by name; data_buffer_idx is ignored.
            let named = t
                .extra_tensor_info
                .as_ref()
                .and_then(|x| x.fully_qualified_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if !named {
                self.push(
                    IssueKind::Inconsistent,
                    format!("{path}.extra_tensor_info.fully_qualified_name"),
                    "external tensor without a fully qualified name",
                );
            }
        } else if idx > 0 {
            // Where the data index points (see the comment on Tensor in program.fbs).
            let (what, len) = match (&t.allocation_info, &t.extra_tensor_info) {
                (None, _) if len_of(&p.constant_buffer) > 0 => {
                    ("constant_buffer", len_of(&p.constant_buffer))
                }
                (None, _) => (
                    "constant_segment.offsets",
                    p.constant_segment
                        .as_ref()
                        .map_or(0, |c| len_of(&c.offsets)),
                ),
                (Some(_), x) => {
                    let m = x.as_ref().map_or(0, |x| x.mutable_data_segments_idx);
                    let seg = usize::try_from(m)
                        .ok()
                        .and_then(|m| p.mutable_data_segments.as_ref()?.get(m));
                    match seg {
                        Some(s) => ("mutable_data_segments offsets", len_of(&s.offsets)),
                        None => {
                            self.push(
                                IssueKind::IndexOutOfRange,
                                format!("{path}.data_buffer_idx"),
                                format!(
                                    "mutable tensor with initial state, but \
                                     mutable_data_segments[{m}] does not exist"
                                ),
                            );
                            return;
                        }
                    }
                }
            };
            if !in_range_u32(idx, len) {
                self.push(
                    IssueKind::IndexOutOfRange,
                    format!("{path}.data_buffer_idx"),
                    format!("{what} entry {idx} of {len}"),
                );
            } else if let (Some(nbytes), Some(available)) = (nbytes, self.data_available(t, idx)) {
                if nbytes > available {
                    self.push(
                        IssueKind::IndexOutOfRange,
                        format!("{path}.data_buffer_idx"),
                        format!(
                            "the tensor needs {nbytes} bytes, {what} entry {idx} has \
                             {available} bytes after it"
                        ),
                    );
                }
            }
        }
        if let Some(a) = &t.allocation_info {
            let sizes = plan.non_const_buffer_sizes.as_deref().unwrap_or_default();
            let Some(&buffer) = usize::try_from(a.memory_id).ok().and_then(|m| sizes.get(m)) else {
                self.push(
                    IssueKind::IndexOutOfRange,
                    format!("{path}.allocation_info.memory_id"),
                    format!("planned buffer {} of {}", a.memory_id, sizes.len()),
                );
                return;
            };
            if t.shape_dynamism == TensorShapeDynamism::DYNAMIC_UNBOUND {
                return;
            }
            let end = nbytes.and_then(|n| a.memory_offset().checked_add(n));
            match (end, u64::try_from(buffer)) {
                (Some(end), Ok(buffer)) if end <= buffer => {}
                (Some(end), _) => self.push(
                    IssueKind::IndexOutOfRange,
                    format!("{path}.allocation_info"),
                    format!(
                        "tensor data ends at {end}, beyond planned buffer {} of {buffer} bytes",
                        a.memory_id
                    ),
                ),
                // Unknown element size or bad sizes (reported above), or an end past
                // 2^64.
                (None, _) => {
                    if nbytes.is_some() {
                        self.push(
                            IssueKind::IndexOutOfRange,
                            format!("{path}.allocation_info"),
                            "memory offset + tensor size overflows",
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CODEGEN_KERNEL_ARGS;

    /// `kernel_args` finds an operator by binary search: the generated table must be
    /// strictly sorted by name (`str` order, as the generator's `sorted` gives for
    /// these ASCII names), or look-ups silently miss and the check never runs.
    #[test]
    fn the_kernel_table_is_sorted_for_binary_search() {
        assert!(CODEGEN_KERNEL_ARGS.len() > 100);
        for w in CODEGEN_KERNEL_ARGS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
        let at = CODEGEN_KERNEL_ARGS
            .binary_search_by(|(n, _)| (*n).cmp("aten::addmm.out"))
            .expect("addmm.out in the table");
        // aten::addmm.out(self, mat1, mat2, *, beta, alpha, out): 6 schema arguments,
        // the count the seed-21 mutant of mlp.bpte (7 values -> 0) was refused by.
        assert_eq!(CODEGEN_KERNEL_ARGS[at].1, 6);
    }
}
