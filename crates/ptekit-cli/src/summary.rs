//! A machine-readable summary of a `.pte` file: what `ptekit inspect --json` prints.
//!
//! The keys and their meaning match the independent summaries of the reference corpus
//! (`shared/corpus/*.summary.json`, written from the reference deserializer), plus a few
//! additions (`identifier`, `extended_header.length`, `size_breakdown`, `delegates[].processed`).

use std::collections::BTreeMap;

use ptekit_format::program::{DataLocation, Program};
use serde::Serialize;

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

/// The whole-file summary.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
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
    pub execution_plans: Vec<PlanSummary>,
    /// Where the bytes of the file go.
    pub size_breakdown: SizeBreakdown,
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
pub struct PlanSummary {
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

/// Builds the summary from a decoded program and its container facts.
pub fn summarize(
    program: &Program<'_>,
    identifier: [u8; 4],
    header: Option<HeaderSummary>,
    file_len: u64,
) -> FileSummary {
    let segments: Vec<SegmentSummary> = program
        .segments
        .iter()
        .flatten()
        .map(|s| SegmentSummary {
            offset: s.offset,
            size: s.size,
        })
        .collect();
    let seg_size = |i: u32| segments.get(i as usize).map(|s| s.size);

    let mut execution_plans = Vec::new();
    let mut delegate_segments = std::collections::BTreeSet::new();
    let inline_delegates = program.backend_delegate_data.as_deref().unwrap_or(&[]);
    for plan in program.execution_plan.iter().flatten() {
        let mut value_kinds = BTreeMap::new();
        for v in plan.values.iter().flatten() {
            let kind = v.val.as_ref().map_or("NONE", |k| k.kind_name());
            *value_kinds.entry(kind).or_insert(0) += 1;
        }
        let mut instructions = BTreeMap::new();
        for chain in plan.chains.iter().flatten() {
            for ins in chain.instructions.iter().flatten() {
                let kind = ins.instr_args.as_ref().map_or("NONE", |k| k.kind_name());
                *instructions.entry(kind).or_insert(0) += 1;
            }
        }
        let operators = plan
            .operators
            .iter()
            .flatten()
            .map(|op| {
                let name = op.name.as_deref().unwrap_or("");
                match op.overload.as_deref() {
                    Some(o) if !o.is_empty() => format!("{name}.{o}"),
                    _ => name.to_string(),
                }
            })
            .collect();
        let delegates = plan
            .delegates
            .iter()
            .flatten()
            .map(|d| {
                let (location, index) = d
                    .processed
                    .as_ref()
                    .map_or((DataLocation::INLINE, 0), |p| (p.location, p.index));
                let (location, size) = if location == DataLocation::SEGMENT {
                    delegate_segments.insert(index);
                    ("segment", seg_size(index))
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
            })
            .collect();
        execution_plans.push(PlanSummary {
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
        });
    }

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
    let mutable_data_segments: Vec<SubsegmentSummary> = program
        .mutable_data_segments
        .iter()
        .flatten()
        .map(|m| SubsegmentSummary {
            segment_index: m.segment_index,
            offsets: m.offsets.as_ref().map_or(0, Vec::len),
        })
        .collect();
    let named_data: Vec<NamedDataSummary> = program
        .named_data
        .iter()
        .flatten()
        .map(|n| NamedDataSummary {
            key: n.key.clone().unwrap_or_default(),
            segment_index: n.segment_index,
        })
        .collect();

    // Attribute every segment to one purpose (first claim wins).
    let mut purpose: Vec<Option<usize>> = vec![None; segments.len()];
    let mut claim = |idx: u32, what: usize| {
        if let Some(slot) = purpose.get_mut(idx as usize) {
            slot.get_or_insert(what);
        }
    };
    if program.constant_segment.is_some() {
        claim(constant_segment.segment_index, 0);
    }
    for m in &mutable_data_segments {
        claim(m.segment_index, 1);
    }
    for &d in &delegate_segments {
        claim(d, 2);
    }
    for n in &named_data {
        claim(n.segment_index, 3);
    }
    let mut b = SizeBreakdown {
        program: header.map_or(file_len, |h| h.program_size.min(file_len)),
        ..SizeBreakdown::default()
    };
    b.inline_constants = program
        .constant_buffer
        .iter()
        .flatten()
        .map(|c| c.storage.as_ref().map_or(0, |s| s.len() as u64))
        .sum();
    b.inline_delegate_data = inline_delegates
        .iter()
        .map(|d| d.data.as_ref().map_or(0, |s| s.len() as u64))
        .sum();
    for (seg, p) in segments.iter().zip(&purpose) {
        let slot = match p {
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
    b.padding = file_len.saturating_sub(accounted);

    FileSummary {
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
        size_breakdown: b,
    }
}
