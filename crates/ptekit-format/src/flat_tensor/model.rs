//! Model of `flat_tensor.fbs` (namespace `flat_tensor_flatbuffer`, identifier `FT01`).
//!
//! Absent vectors, strings and sub-tables are `None` (JSON `null`), empty ones
//! `Some(empty)`.

use crate::program::ScalarType;

/// `table FlatTensor`: the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlatTensor {
    /// Schema version (the reference writes [`FLAT_TENSOR_VERSION`](super::FLAT_TENSOR_VERSION)).
    pub version: u32,
    /// Data segments following the flatbuffer, offsets relative to the segment base.
    pub segments: Option<Vec<DataSegment>>,
    /// Named blobs, each in a segment.
    pub named_data: Option<Vec<NamedData>>,
}

/// `table DataSegment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataSegment {
    /// Offset from the segment base offset of the header.
    pub offset: u64,
    /// Size of the valid data.
    pub size: u64,
}

/// `table NamedData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedData {
    /// Unique key of the blob.
    pub key: Option<String>,
    /// Index into [`FlatTensor::segments`].
    pub segment_index: u32,
    /// Tensor layout when the blob is a tensor.
    pub tensor_layout: Option<TensorLayout>,
}

/// `table TensorLayout`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TensorLayout {
    /// Element type.
    pub scalar_type: ScalarType,
    /// Size of each dimension.
    pub sizes: Option<Vec<i32>>,
    /// Dimension order, outermost first.
    pub dim_order: Option<Vec<u8>>,
}
