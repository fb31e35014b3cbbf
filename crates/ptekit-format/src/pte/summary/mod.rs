//! The summary of a `.pte` file ([`summary()`](fn@summary)): what `ptekit inspect --json`
//! prints and `ptekit inspect` renders, beside the bundled-program and tensor-data
//! summaries.
//!
//! The keys and their meaning match the independent summaries of the reference corpus
//! (`shared/corpus/*.summary.json`, written from the reference deserializer), plus a few
//! additions (`identifier`, `extended_header.length`, `size_breakdown`,
//! `delegates[].processed`). Serialized with serde, the field order is the JSON key order.
//! Built in named steps: [`segments`], [`method_summary`] (values, instructions, operators,
//! [`delegate_summary`], inputs and outputs as the runtime's `MethodMeta` describes them,
//! operator calls, [`Delegation`], constant values), [`subsegments`], [`size_breakdown`],
//! [`ExternalData`] and, when asked for, [`top()`](fn@top).

mod external;
mod method;
mod top;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::file::PteFile;
use crate::program::calls::operator_name;
use crate::program::{
    BackendDelegate, BackendDelegateInlineData, DataLocation, ExecutionPlan, Program,
};

pub use external::{AvailableData, DataCheck, ExternalData, ExternalKey};
pub use method::{
    constant_values, delegation, io_tensors, is_constant, operator_calls, tensor_meta,
    tensor_nbytes, ConstantValue, Delegation, TensorMeta,
};
pub use top::{top, top_named_data, TopDelegate, TopNamedData, TopSummary, TopTensor};

/// What the file's extended header says, if it has one.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HeaderSummary {
    /// Header length as written: 32 today, 24 for files older than `segment_data_size`.
    pub length: u32,
    /// Bytes of the flatbuffer including the inserted header.
    pub program_size: u64,
    /// Offset of the first segment from the start of the file.
    pub segment_base_offset: u64,
    /// Total bytes of segment data (0 when a 24-byte header does not record it, as the
    /// reference reports it).
    pub segment_data_size: u64,
}

/// The summary of a whole `.pte` file.
#[derive(Debug, Clone, Serialize)]
pub struct PteSummary {
    /// Kind of file: `"program"`.
    pub kind: &'static str,
    /// File identifier found at bytes 4..8 (e.g. `ET12`).
    pub identifier: String,
    /// File size in bytes.
    pub bytes: u64,
    /// `Program.version`.
    pub version: u32,
    /// The extended header, or `null` for files without one.
    pub extended_header: Option<HeaderSummary>,
    /// `Program.segments` as stored.
    pub segments: Vec<SegmentSummary>,
    /// Number of inline `constant_buffer` entries (legacy layout).
    pub constant_buffer_len: usize,
    /// Number of inline delegate blobs.
    pub backend_delegate_data_len: usize,
    /// `Program.constant_segment` with the number of offsets.
    pub constant_segment: SubsegmentSummary,
    /// `Program.mutable_data_segments` with the number of offsets each.
    pub mutable_data_segments: Vec<SubsegmentSummary>,
    /// `Program.named_data` keys and segment indices, in file order.
    pub named_data: Vec<NamedDataSummary>,
    /// One entry per method.
    pub execution_plans: Vec<MethodSummary>,
    /// Where the bytes of the file go; the parts not marked "of which" add up to `bytes`.
    pub size_breakdown: SizeBreakdown,
    /// Calls and constant bytes in delegates vs. portable kernels, over all methods.
    pub delegation: Delegation,
    /// Data the program expects from outside the file (and, after a check, whether a
    /// data file has it).
    pub external_data: ExternalData,
    /// The largest tensors, delegate payloads and named-data entries (only when asked
    /// for, see [`SummaryOptions::top`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<TopSummary>,
}

/// What [`summary_with`] adds to the default summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SummaryOptions {
    /// List this many of the largest items of each kind (`0`: no list).
    pub top: usize,
}

/// One data segment.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SegmentSummary {
    /// Offset relative to `segment_base_offset`.
    pub offset: u64,
    /// Size in bytes, without padding.
    pub size: u64,
}

/// A `SubsegmentOffsets` table, with its offsets counted.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SubsegmentSummary {
    /// Index into `segments`.
    pub segment_index: u32,
    /// Number of offsets.
    pub offsets: usize,
}

/// A `NamedData` entry.
#[derive(Debug, Clone, Serialize)]
pub struct NamedDataSummary {
    /// The key (the reference uses the SHA-256 of the data).
    pub key: String,
    /// Index into `segments`.
    pub segment_index: u32,
}

/// One method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    /// Method name.
    pub name: String,
    /// Number of values.
    pub values: usize,
    /// Number of values of each kind (`Tensor`, `Int`, ...), sorted by kind.
    pub value_kinds: BTreeMap<&'static str, usize>,
    /// Number of instructions of each kind over all chains.
    pub instructions: BTreeMap<&'static str, usize>,
    /// Operators as `name.overload` (or `name` when the overload is empty).
    pub operators: Vec<String>,
    /// Delegates.
    pub delegates: Vec<DelegateSummary>,
    /// Input value indices.
    pub inputs: Vec<i32>,
    /// Output value indices.
    pub outputs: Vec<i32>,
    /// Planned buffer sizes.
    pub non_const_buffer_sizes: Vec<i64>,
    /// Number of chains.
    pub chains: usize,
    /// One entry per input: the tensor as `MethodMeta::input_tensor_meta` describes it,
    /// `null` for an input that is not a tensor.
    pub input_tensors: Vec<Option<TensorMeta>>,
    /// One entry per output, like `input_tensors`.
    pub output_tensors: Vec<Option<TensorMeta>>,
    /// `KernelCall` instructions per operator.
    pub operator_calls: BTreeMap<String, usize>,
    /// Calls and constant bytes in delegates vs. portable kernels.
    pub delegation: Delegation,
    /// For a constant method (no inputs, no instructions: metadata such as an LLM's
    /// `max_seq_len`), the values it returns; `null` otherwise.
    pub constant_values: Option<Vec<ConstantValue>>,
}

/// One delegate of a method.
#[derive(Debug, Clone, Serialize)]
pub struct DelegateSummary {
    /// Backend id, e.g. `XnnpackBackend`.
    pub id: String,
    /// Compile spec keys.
    pub compile_specs: Vec<String>,
    /// Where the payload is stored.
    pub processed: DelegatePayload,
}

/// Where a delegate's payload is stored and how big it is.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DelegatePayload {
    /// `"inline"` (in `backend_delegate_data`) or `"segment"`.
    pub location: &'static str,
    /// Index into `backend_delegate_data` or `segments`.
    pub index: u32,
    /// Payload size in bytes, when the index resolves.
    pub size: Option<u64>,
}

/// Bytes of the file by purpose. `padding` is everything not otherwise accounted for.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SizeBreakdown {
    /// The flatbuffer, with the inserted extended header.
    pub program: u64,
    /// Of which inline constant tensor bytes (legacy `constant_buffer`).
    pub inline_constants: u64,
    /// Of which inline delegate payload bytes.
    pub inline_delegate_data: u64,
    /// The constant segment.
    pub constant_segment: u64,
    /// Mutable-state segments.
    pub mutable_data: u64,
    /// Segments holding delegate payloads.
    pub delegate_segments: u64,
    /// Segments holding named data.
    pub named_data: u64,
    /// Segments not referenced by anything above.
    pub other_segments: u64,
    /// Alignment padding and unaccounted bytes.
    pub padding: u64,
}

/// Summarizes a parsed file (see the module docs for the keys), without the `top` lists.
pub fn summary(file: &PteFile<'_>) -> PteSummary {
    summary_with(file, &SummaryOptions::default())
}

/// Summarizes a parsed file with `options`.
pub fn summary_with(file: &PteFile<'_>, options: &SummaryOptions) -> PteSummary {
    let program = file.program();
    let identifier = file.file_identifier();
    let file_len = crate::write::len64(file.bytes().len());
    let header = file.header().map(|h| HeaderSummary {
        length: h.length,
        program_size: h.program_size,
        segment_base_offset: h.segment_base_offset,
        segment_data_size: h.segment_data_size.unwrap_or(0),
    });
    let segments = segments(program);
    let inline_delegates = program.backend_delegate_data.as_deref().unwrap_or(&[]);
    let execution_plans: Vec<MethodSummary> = program
        .execution_plan
        .iter()
        .flatten()
        .map(|plan| method_summary(plan, &segments, inline_delegates))
        .collect();
    let (constant_segment, mutable_data_segments) = subsegments(program);
    let named_data: Vec<NamedDataSummary> = program
        .named_data
        .iter()
        .flatten()
        .map(|n| NamedDataSummary {
            key: n.key.clone().unwrap_or_default(),
            segment_index: n.segment_index,
        })
        .collect();
    let parts = Parts {
        program,
        header: header.as_ref(),
        file_len,
        segments: &segments,
        constant_segment: &constant_segment,
        mutable_data_segments: &mutable_data_segments,
        named_data: &named_data,
        execution_plans: &execution_plans,
    };
    let size_breakdown = size_breakdown(&parts);
    let mut total = Delegation::default();
    for m in &execution_plans {
        total.add(&m.delegation);
    }
    let top = (options.top > 0).then(|| {
        top(
            program,
            &execution_plans,
            &segments,
            &named_data,
            options.top,
        )
    });
    PteSummary {
        kind: "program",
        identifier: String::from_utf8_lossy(&identifier).into_owned(),
        bytes: file_len,
        version: program.version,
        extended_header: header,
        segments,
        constant_buffer_len: program.constant_buffer.as_ref().map_or(0, Vec::len),
        backend_delegate_data_len: inline_delegates.len(),
        constant_segment,
        mutable_data_segments,
        named_data,
        execution_plans,
        size_breakdown,
        delegation: total,
        external_data: ExternalData::of_program(program),
        top,
    }
}

/// `Program.segments` as stored.
pub fn segments(program: &Program<'_>) -> Vec<SegmentSummary> {
    program
        .segments
        .iter()
        .flatten()
        .map(|s| SegmentSummary {
            offset: s.offset,
            size: s.size,
        })
        .collect()
}

fn count_kinds<'k>(kinds: impl Iterator<Item = &'k str>) -> BTreeMap<&'k str, usize> {
    let mut out = BTreeMap::new();
    for kind in kinds {
        *out.entry(kind).or_insert(0) += 1;
    }
    out
}

/// One method: values and instructions counted by kind, operators, delegates, I/O.
pub fn method_summary(
    plan: &ExecutionPlan<'_>,
    segments: &[SegmentSummary],
    inline_delegates: &[BackendDelegateInlineData<'_>],
) -> MethodSummary {
    let value_kinds = count_kinds(
        plan.values
            .iter()
            .flatten()
            .map(|v| v.val.as_ref().map_or("NONE", |k| k.kind_name())),
    );
    let instructions = count_kinds(
        plan.chains
            .iter()
            .flatten()
            .flat_map(|c| c.instructions.iter().flatten())
            .map(|i| i.instr_args.as_ref().map_or("NONE", |k| k.kind_name())),
    );
    let operators = plan.operators.iter().flatten().map(operator_name).collect();
    let delegates: Vec<DelegateSummary> = plan
        .delegates
        .iter()
        .flatten()
        .map(|d| delegate_summary(d, segments, inline_delegates))
        .collect();
    let payload_sizes: Vec<Option<u64>> = delegates.iter().map(|d| d.processed.size).collect();
    let inputs = plan.inputs.as_deref().unwrap_or(&[]);
    let outputs = plan.outputs.as_deref().unwrap_or(&[]);
    MethodSummary {
        name: plan.name.clone().unwrap_or_default(),
        values: plan.values.as_ref().map_or(0, Vec::len),
        value_kinds,
        instructions,
        operators,
        delegates,
        inputs: plan.inputs.clone().unwrap_or_default(),
        outputs: plan.outputs.clone().unwrap_or_default(),
        non_const_buffer_sizes: plan.non_const_buffer_sizes.clone().unwrap_or_default(),
        chains: plan.chains.as_ref().map_or(0, Vec::len),
        input_tensors: io_tensors(plan, inputs),
        output_tensors: io_tensors(plan, outputs),
        operator_calls: operator_calls(plan),
        delegation: delegation(plan, &payload_sizes),
        constant_values: constant_values(plan),
    }
}

/// One delegate: backend id, compile spec keys, where its payload is and its size.
pub fn delegate_summary(
    d: &BackendDelegate<'_>,
    segments: &[SegmentSummary],
    inline_delegates: &[BackendDelegateInlineData<'_>],
) -> DelegateSummary {
    let (location, index) = d
        .processed
        .as_ref()
        .map_or((DataLocation::INLINE, 0), |p| (p.location, p.index));
    let (location, size) = if location == DataLocation::SEGMENT {
        ("segment", segments.get(index as usize).map(|s| s.size))
    } else {
        let size = inline_delegates
            .get(index as usize)
            .map(|b| b.data.as_ref().map_or(0, |d| d.len() as u64));
        ("inline", size)
    };
    DelegateSummary {
        id: d.id.clone().unwrap_or_default(),
        compile_specs: d
            .compile_specs
            .iter()
            .flatten()
            .map(|c| c.key.clone().unwrap_or_default())
            .collect(),
        processed: DelegatePayload {
            location,
            index,
            size,
        },
    }
}

/// `constant_segment` (index 0 and no offsets when absent) and `mutable_data_segments`,
/// with their offsets counted.
pub fn subsegments(program: &Program<'_>) -> (SubsegmentSummary, Vec<SubsegmentSummary>) {
    let constant_segment = program.constant_segment.as_ref().map_or(
        SubsegmentSummary {
            segment_index: 0,
            offsets: 0,
        },
        |c| SubsegmentSummary {
            segment_index: c.segment_index,
            offsets: c.offsets.as_ref().map_or(0, Vec::len),
        },
    );
    let mutable_data_segments = program
        .mutable_data_segments
        .iter()
        .flatten()
        .map(|m| SubsegmentSummary {
            segment_index: m.segment_index,
            offsets: m.offsets.as_ref().map_or(0, Vec::len),
        })
        .collect();
    (constant_segment, mutable_data_segments)
}

/// What [`size_breakdown`] looks at: the program and the parts already summarized.
pub struct Parts<'s> {
    /// The decoded program.
    pub program: &'s Program<'s>,
    /// The extended header, if any.
    pub header: Option<&'s HeaderSummary>,
    /// The file length.
    pub file_len: u64,
    /// `Program.segments`.
    pub segments: &'s [SegmentSummary],
    /// `Program.constant_segment`.
    pub constant_segment: &'s SubsegmentSummary,
    /// `Program.mutable_data_segments`.
    pub mutable_data_segments: &'s [SubsegmentSummary],
    /// `Program.named_data`.
    pub named_data: &'s [NamedDataSummary],
    /// The methods (for the delegate segments).
    pub execution_plans: &'s [MethodSummary],
}

/// What each segment holds, first claim wins: constants, mutable state, delegate
/// payloads, named data (`None`: nothing references it).
fn segment_purposes(p: &Parts<'_>) -> Vec<Option<usize>> {
    let mut purpose: Vec<Option<usize>> = vec![None; p.segments.len()];
    let mut claim = |idx: u32, what: usize| {
        if let Some(slot) = purpose.get_mut(idx as usize) {
            slot.get_or_insert(what);
        }
    };
    if p.program.constant_segment.is_some() {
        claim(p.constant_segment.segment_index, 0);
    }
    for m in p.mutable_data_segments {
        claim(m.segment_index, 1);
    }
    let delegate_segments: BTreeSet<u32> = p
        .execution_plans
        .iter()
        .flat_map(|m| &m.delegates)
        .filter(|d| d.processed.location == "segment")
        .map(|d| d.processed.index)
        .collect();
    for &d in &delegate_segments {
        claim(d, 2);
    }
    for n in p.named_data {
        claim(n.segment_index, 3);
    }
    purpose
}

/// Where the bytes of the file go; `padding` is everything not otherwise accounted for.
pub fn size_breakdown(p: &Parts<'_>) -> SizeBreakdown {
    let mut b = SizeBreakdown {
        program: p
            .header
            .map_or(p.file_len, |h| h.program_size.min(p.file_len)),
        ..SizeBreakdown::default()
    };
    b.inline_constants = p
        .program
        .constant_buffer
        .iter()
        .flatten()
        .map(|c| c.storage.as_ref().map_or(0, |s| s.len() as u64))
        .sum();
    b.inline_delegate_data = p
        .program
        .backend_delegate_data
        .iter()
        .flatten()
        .map(|d| d.data.as_ref().map_or(0, |s| s.len() as u64))
        .sum();
    for (seg, purpose) in p.segments.iter().zip(segment_purposes(p)) {
        let slot = match purpose {
            Some(0) => &mut b.constant_segment,
            Some(1) => &mut b.mutable_data,
            Some(2) => &mut b.delegate_segments,
            Some(3) => &mut b.named_data,
            _ => &mut b.other_segments,
        };
        *slot = slot.saturating_add(seg.size);
    }
    let accounted = [
        b.program,
        b.constant_segment,
        b.mutable_data,
        b.delegate_segments,
        b.named_data,
        b.other_segments,
    ]
    .iter()
    .fold(0u64, |acc, x| acc.saturating_add(*x));
    b.padding = p.file_len.saturating_sub(accounted);
    b
}
