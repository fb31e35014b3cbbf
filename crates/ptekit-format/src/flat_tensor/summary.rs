//! The `ptekit inspect` view of a `.ptd`: named tensors and segments.

use std::fmt::Write as _;

use serde::Serialize;

use super::FlatTensorFile;
use crate::pte::TopSummary;
use crate::units::{breakdown_line, bytes, printable, thousands};

/// Summary of a `.ptd` (serializable for `--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlatTensorSummary {
    /// File size in bytes.
    pub file_size: u64,
    /// Identifier at offset 4 (`FT01`).
    pub file_identifier: String,
    /// `FlatTensor.version`.
    pub version: u32,
    /// `FH01` header: flatbuffer offset.
    pub flatbuffer_offset: u64,
    /// `FH01` header: flatbuffer size.
    pub flatbuffer_size: u64,
    /// `FH01` header: segment base offset.
    pub segment_base_offset: u64,
    /// `FH01` header: segment data size.
    pub segment_data_size: u64,
    /// Named entries, in file order.
    pub named_tensors: Vec<NamedTensorSummary>,
    /// Segments, in file order.
    pub segments: Vec<SegmentSummary>,
    /// Where the bytes of the file go; the three parts add up to `file_size`.
    pub size_breakdown: SizeBreakdown,
    /// With `--top N`: the largest named entries (the `top` of a program's summary, its
    /// `named_data` filled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<TopSummary>,
}

/// Bytes of a `.ptd` by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeBreakdown {
    /// The `FH01` header and the flatbuffer (up to the flatbuffer's end).
    pub header_and_flatbuffer: u64,
    /// The segments (tensor data), without padding.
    pub segments: u64,
    /// Alignment padding and any other byte.
    pub padding: u64,
}

/// One named entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedTensorSummary {
    /// Its key (`None` when absent).
    pub key: Option<String>,
    /// Element type name, when it has a tensor layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Sizes, when it has a tensor layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<i32>>,
    /// Dimension order, when it has a tensor layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dim_order: Option<Vec<u8>>,
    /// Segment index.
    pub segment_index: u32,
    /// Bytes of its segment.
    pub bytes: u64,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentSummary {
    /// Offset relative to the segment base.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Absolute file offset.
    pub file_offset: u64,
}

/// Summarizes a parsed `.ptd`.
pub fn summary(file: &FlatTensorFile<'_>) -> FlatTensorSummary {
    let ft = file.flat_tensor();
    let h = file.header();
    let named_tensors = ft
        .named_data
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|n| NamedTensorSummary {
            key: n.key.clone(),
            dtype: n.tensor_layout.as_ref().map(|l| l.scalar_type.to_string()),
            shape: n
                .tensor_layout
                .as_ref()
                .map(|l| l.sizes.clone().unwrap_or_default()),
            dim_order: n
                .tensor_layout
                .as_ref()
                .map(|l| l.dim_order.clone().unwrap_or_default()),
            segment_index: n.segment_index,
            bytes: file
                .segments()
                .get(n.segment_index as usize)
                .map_or(0, |s| s.size),
        })
        .collect();
    let file_size = file.bytes().len() as u64;
    let header_and_flatbuffer = h
        .flatbuffer_offset
        .saturating_add(h.flatbuffer_size)
        .min(file_size);
    let segments_total = file
        .segments()
        .iter()
        .fold(0u64, |acc, s| acc.saturating_add(s.size));
    let size_breakdown = SizeBreakdown {
        header_and_flatbuffer,
        segments: segments_total,
        padding: file_size.saturating_sub(header_and_flatbuffer.saturating_add(segments_total)),
    };
    FlatTensorSummary {
        file_size,
        file_identifier: file.file_identifier().escape_ascii().to_string(),
        version: ft.version,
        flatbuffer_offset: h.flatbuffer_offset,
        flatbuffer_size: h.flatbuffer_size,
        segment_base_offset: h.segment_base_offset,
        segment_data_size: h.segment_data_size,
        named_tensors,
        segments: file
            .segments()
            .iter()
            .map(|s| SegmentSummary {
                offset: s.offset,
                size: s.size,
                file_offset: s.file_offset,
            })
            .collect(),
        size_breakdown,
        top: None,
    }
}

/// Renders the summary as text.
pub fn render_summary(s: &FlatTensorSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tensor data file ({}), version {}, {}",
        s.file_identifier,
        s.version,
        bytes(s.file_size)
    );
    let _ = writeln!(
        out,
        "header FH01: flatbuffer {} bytes (offset {}), segments at {}, {} bytes",
        thousands(s.flatbuffer_size),
        thousands(s.flatbuffer_offset),
        thousands(s.segment_base_offset),
        thousands(s.segment_data_size)
    );
    let _ = writeln!(out, "named tensors: {}", s.named_tensors.len());
    for n in &s.named_tensors {
        let layout = match (&n.dtype, &n.shape) {
            (Some(d), Some(shape)) => format!("{d} {shape:?}"),
            _ => "(no tensor layout)".to_string(),
        };
        let _ = writeln!(
            out,
            "  {}: {} — {} bytes in segment {}",
            n.key.as_deref().map_or("<no key>".into(), printable),
            layout,
            thousands(n.bytes),
            n.segment_index
        );
    }
    let _ = writeln!(out, "segments: {}", s.segments.len());
    for (i, seg) in s.segments.iter().enumerate() {
        let _ = writeln!(
            out,
            "  [{i}] offset {} size {} (file offset {})",
            thousands(seg.offset),
            thousands(seg.size),
            thousands(seg.file_offset)
        );
    }
    let b = &s.size_breakdown;
    let parts = [
        ("header and flatbuffer", b.header_and_flatbuffer),
        ("segments", b.segments),
        ("padding", b.padding),
    ];
    let _ = writeln!(out, "{}", breakdown_line(&parts, s.file_size));
    out
}
