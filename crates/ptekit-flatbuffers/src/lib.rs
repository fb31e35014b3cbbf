//! FlatBuffers for `ptekit`: a builder producing the same bytes as the Python
//! `flatbuffers` 25.12.19 builder used by ExecuTorch 1.5.1 ([`builder`]), and verified,
//! zero-copy reading primitives that trust nothing in the input ([`verify`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod builder;
pub mod error;
pub mod flatc_order;
pub mod scalar;
pub mod verify;

pub use builder::{BuildError, Builder, UOffset, MAX_BUFFER_SIZE};
pub use error::{Error, ErrorKind, PathSegment};
pub use scalar::Scalar;
pub use verify::{
    Limits, ScalarIter, ScalarVector, StringVector, Table, TableVector, Union, Verifier,
};
