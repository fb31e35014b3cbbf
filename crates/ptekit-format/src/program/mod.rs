//! The ExecuTorch program (`ET12` flatbuffer): an owned model of the schema
//! ([`model`], [`enums`]), packing that reproduces the reference serializer byte for
//! byte ([`pack`]), verified zero-copy decoding ([`decode`]), semantic validation
//! ([`validate`](mod@validate)) and the calls of a method ([`calls`]).

pub mod calls;
pub mod decode;
pub mod enums;
pub mod json;
mod kernel_args;
pub mod model;
pub mod pack;

pub use decode::{
    decode_program, decode_program_with, file_identifier, is_et_identifier, DecodeError,
    DecodeOptions, IdentifierPolicy,
};
pub use enums::{DataLocation, DeviceType, ScalarType, TensorDataLocation, TensorShapeDynamism};
pub use json::{read_program_json, write_program_json, DataFrom, JsonError, JsonPath, JsonReason};
pub use model::*;
pub use pack::{max_alignment, pack_program, PackError, PackOptions};
pub mod validate;
pub use validate::{check_tensor_layout, validate, Issue, IssueKind, LayoutIssue, MAX_TENSOR_RANK};
pub mod locate;
pub use locate::locate;
