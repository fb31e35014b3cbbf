//! The `.pte` container: extended header, segments, restoring a file to the exporter's
//! pre-serialization shape, serializing that shape exactly like the reference
//! (`executorch.exir._serialize._program`, executorch 1.5.1), exact rewrites and
//! streaming atomic writes.
//!
//! # Layout
//!
//! A `.pte` file is the program flatbuffer with an *extended header* (`eh00`, 32 bytes, or
//! 24 bytes in files written before `segment_data_size` existed) inserted after byte 8 and
//! zero-padded to the *inserted block* length `align_up(header length, max_alignment)`,
//! then zero padding up to `segment_base_offset`, then the segments listed in
//! `Program.segments` (offsets relative to `segment_base_offset`). A file without segment
//! data has no header at all.
//!
//! # Entry points
//!
//! - [`PteFile::parse`] (or [`PteMap::open`] + [`PteMap::parse`]): verified, zero-copy
//!   reading of a file: header, decoded [`Program`](crate::program::Program), segment
//!   slices, all references checked.
//! - [`restore`]: the reference's `deserialize_pte_binary` — a [`PteModel`] with constants
//!   back in `constant_buffer`, delegate blobs back in `backend_delegate_data` and named
//!   data in a [`NamedDataStore`], all borrowing from the file.
//! - [`plan`]: the reference's `serialize_pte_binary` — a [`PlannedPte`], an ordered list
//!   of [`Piece`]s that is streamed to its destination without assembling the file in
//!   memory ([`PlannedPte::write_atomic`]).
//! - [`plan_exact`]: re-packs a parsed file and re-emits its exact layout (byte-identical
//!   for every file the reference writes); [`relayout`]: restore then plan with new
//!   options (also upgrades legacy layouts).
//! - [`summary()`](fn@summary) / [`summary_with`]: the [`PteSummary`] `ptekit inspect`
//!   prints.

pub mod dump;
mod error;
mod exact;
mod file;
mod header;
mod map;
mod model;
mod plan;
mod restore;
mod summary;

pub use crate::write::{SourceRef, WriteOptions};
pub use error::{ModelReason, PteError};
pub use exact::{
    infer_pack_options, pack_options_to_keep, plan_exact, plan_rewrite, relayout, RewriteLayout,
};
pub use file::{PteFile, ReadOptions, SegmentInfo};
pub use header::{ExtendedHeader, HEADER_MAGIC, HEADER_OFFSET};
pub use map::PteMap;
pub use model::{DataEntry, NamedDataStore, PteModel};
pub use plan::{plan, Piece, PlannedPte, SerializeOptions, DEFAULT_SEGMENT_ALIGNMENT};
pub use restore::restore;
pub use summary::{
    constant_values, delegate_summary, delegation, io_tensors, is_constant, method_summary,
    operator_calls, segments, size_breakdown, subsegments, summary, summary_with, tensor_meta,
    tensor_nbytes, top, top_named_data, AvailableData, ConstantValue, DataCheck, DelegatePayload,
    DelegateSummary, Delegation, ExternalData, ExternalKey, HeaderSummary, MethodSummary,
    NamedDataSummary, Parts, PteSummary, SegmentSummary, SizeBreakdown, SubsegmentSummary,
    SummaryOptions, TensorMeta, TopDelegate, TopNamedData, TopSummary, TopTensor,
};
