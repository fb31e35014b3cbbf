//! XNNPACK delegate payloads (the `processed` blob of every `XnnpackBackend` delegate),
//! as written by executorch 1.5.1's `serialize_xnnpack_binary`.
//!
//! - [`model`]: owned types for the whole schema (47 node kinds, 3 unions), absent and
//!   empty kept apart, plus the runtime schema's extra fields.
//! - [`header`]: the `XH00` container (and legacy blobs without it).
//! - [`decode_payload`] / [`decode_flatbuffer`]: verified reading on the shared verifier
//!   and [`Limits`](ptekit_flatbuffers::Limits); [`validate`] checks the cross-references
//!   (value ids, constant indices and ranges, named keys, constant sizes), and
//!   [`check_definable`] what the reference runtime checks when it defines the values and
//!   nodes in XNNPACK (value flags, datatypes, dimensions, external ids; node value ids,
//!   output ranges, pooling windows, fully-connected datatypes); `verify` does both.
//! - [`convert_to_flatbuffer`] / [`serialize_xnnpack_binary`]: byte-identical to the
//!   reference (which writes JSON and runs `flatc` 24.3.25), float rule in [`flatc_f32`].
//! - [`summary()`](fn@summary) / [`render_summary`] for `ptekit inspect`,
//!   [`payload_json`] for `ptekit xnnpack dump`.
//!
//! ```
//! use ptekit_format::xnnpack::*;
//! let g = XNNGraph {
//!     version: Some("0".into()),
//!     xnodes: Some(vec![]), xvalues: Some(vec![]),
//!     input_ids: Some(vec![]), output_ids: Some(vec![]), constant_data: Some(vec![]),
//!     ..XNNGraph::default()
//! };
//! let fb = convert_to_flatbuffer(&g)?;
//! assert_eq!(fb.len(), 88); // what flatc writes for this graph
//! let blob = serialize_xnnpack_binary(&g, &[])?;
//! let p = decode_payload(&blob, &ptekit_flatbuffers::Limits::default())?;
//! assert_eq!(p.graph, g);
//! # Ok::<(), XnnpackError>(())
//! ```

mod decode;
mod define;
mod error;
pub mod header;
mod in_program;
mod json;
pub mod model;
mod pack;
mod summary;
mod validate;

pub use decode::{decode_flatbuffer, decode_payload, Payload, Positions, TableFields};
pub use error::{XnnpackError, XnnpackErrorKind};
pub use header::{
    is_xnnpack_payload, split_payload, PayloadParts, XnnHeader, CONSTANT_TENSOR_ALIGNMENT,
    FILE_IDENTIFIER, HEADER_LENGTH, HEADER_MAGIC, LEGACY_FILE_IDENTIFIER,
};
pub use in_program::{
    check_payload, check_payloads, delegate_payloads, DelegatePayload, NamedSizes,
};
pub use json::{f32_json, graph_json, payload_json};
pub use model::*;
pub use pack::{
    convert_to_flatbuffer, flatc_f32, flatc_f32_from_decimal, pack_flatbuffer,
    serialize_xnnpack_binary, wrap_payload, CANONICAL_NAN,
};
pub use summary::{render_summary, summary, ConstantStorage, XnnpackSummary};
pub use validate::{
    check_definable, check_definable_payload, validate, validate_payload, ConstantSources,
    NamedLookup, XNN_INVALID_VALUE_ID,
};

/// The verifier limits used for payloads by default ([`Limits::default`](ptekit_flatbuffers::Limits::default)).
pub fn default_limits() -> ptekit_flatbuffers::Limits {
    ptekit_flatbuffers::Limits::default()
}

/// The backend id of XNNPACK delegates in a program.
pub const BACKEND_ID: &str = "XnnpackBackend";

/// Re-encodes a decoded payload: the same identifier, and the same container (the
/// reference's header and padding, or a bare flatbuffer for legacy blobs). For every
/// payload the reference writes this reproduces the input byte for byte.
pub fn reencode_payload(p: &Payload<'_>) -> Result<Vec<u8>, XnnpackError> {
    let fb = pack_flatbuffer(&p.graph, &p.identifier)?;
    match p.header {
        None => Ok(fb),
        Some(_) => wrap_payload(&fb, p.constant_data),
    }
}
