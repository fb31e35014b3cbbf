//! ExecuTorch artifacts: the `ET12` program model, a verified zero-copy reader and a
//! writer that reproduces the reference serializer (executorch 1.5.1) byte for byte.
//!
//! - [`program`]: owned types for every table, union and enum of the program schema,
//!   packing (model → flatbuffer bytes) and verified decoding (bytes → model).
//! - [`pte`]: the `.pte` container: extended header, segments, restoring a file to the
//!   exporter's pre-serialization shape and serializing that shape with the reference's
//!   options, streaming atomic writes.
//! - [`bundled`]: bundled programs (`.bpte`, `BP08`): a program plus test cases.
//! - [`flat_tensor`]: tensor data files (`.ptd`, `FT01` with its `FH01` header).
//! - [`xnnpack`]: XNNPACK delegate payloads (`XH00` + `XN01`): model, verified reader,
//!   cross-reference checks, a writer byte-identical to the reference's flatc.
//! - [`inspect`]: the summary of a file of any kind (what `ptekit inspect --json` prints).
//! - [`tensors`]: the tensors a file stores, by name, with their byte ranges.
//! - [`npz`]: minimal NumPy `.npy`/`.npz` reading and writing for test values.
//!
//! The container-neutral layer every format uses:
//! - [`mapped`]: [`mapped::MappedFile`], the one read-only memory-mapped input;
//! - [`align`]: checked alignment arithmetic (`padding_required`, `align_up`, `lcm`);
//! - [`write`](mod@write): the one streaming, atomic writer: a [`write::PlannedFile`] of
//!   pieces (borrowed slices, zero runs, owned bytes) written through a temporary file and
//!   a rename, with file-to-file copies from a memory-mapped input; the temporary file is
//!   unnamed (`O_TMPFILE`) where the file system allows, else one the next writer
//!   removes once its owner is gone (the private `tmpfile` module);
//! - [`error`]: [`error::ContainerError`], the I/O, size and layout error each format's
//!   error wraps.

pub mod align;
pub mod analysis;
pub mod bundled;
pub mod error;
mod fields;
pub mod flat_tensor;
pub mod inspect;
mod json_text;
pub mod mapped;
pub mod npz;
mod overlap;
pub mod program;
pub mod pte;
pub mod tensors;
mod tmpfile;
pub mod units;
pub mod write;
pub mod xnnpack;
