//! The ExecuTorch program (`ET12` flatbuffer): an owned model of the schema
//! ([`model`], [`enums`]), packing that reproduces the reference serializer byte for
//! byte ([`pack`]), verified zero-copy decoding ([`decode`]) and semantic validation
//! ([`validate`]).

pub mod enums;
pub mod model;

pub use enums::{DataLocation, DeviceType, ScalarType, TensorDataLocation, TensorShapeDynamism};
pub use model::*;
