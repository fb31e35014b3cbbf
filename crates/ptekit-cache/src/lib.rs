//! # ptekit-cache — a file-backed packed-weight cache for XNNPACK
//!
//! XNNPACK re-lays out ("packs") every static weight when a runtime is
//! created. This crate implements XNNPACK's weights-cache provider
//! (`xnn_weights_cache_provider`) over a cache file so that packing happens
//! once, straight into `MAP_SHARED` file pages, and later launches map the
//! packed bytes instead of packing again.
//!
//! * [`WeightsCache`]: the Rust API; register the unpacked buffers, pass
//!   [`WeightsCache::as_xnn_weights_cache`] to `xnn_create_runtime_v4`, call
//!   [`WeightsCache::finalize`] after creation.
//! * [`capi`]: the same as a C ABI (header in `include/ptekit_cache.h`).
//! * [`format`], [`store`]: the file format and its commit protocol.
//! * [`xpwc`]: a reader for the reference runtime's `XPWC` v2 files.
//! * [`check`]: what a cache file is and whether it is valid (used by `ptekit cache`).
//! * [`xnnpack`]: a minimal loader of the real XNNPACK (from the ExecuTorch
//!   wheel) used by the example and the tests.
//!
//! ## Provider layout
//! The XNNPACK in the ExecuTorch 1.5.1 wheel has the `fingerprint_id` field in
//! `xnn_weights_cache_look_up_key` (offset 24, struct of 32 bytes) and an
//! eighth provider member `alias_data` (offset 56). Both were read off the
//! binary: `xnn_weights_cache_alias_data` loads `0x38(%rdi)` and tests it for
//! null, `xnn_look_up_or_insert_weights_cache` calls `0x18(%rdi)`, and the
//! fully-connected create path stores the key fields at +0/+8/+16/+24 of a
//! stack slot before calling `xnn_weights_cache_look_up`. The test
//! `provider_sees_registered_pointers` checks at run time that the pointers
//! the library passes are the registered kernel and bias pointers.

pub mod capi;
pub mod check;
pub mod compact;
pub mod desc;
pub mod env;
pub mod error;
pub mod format;
pub mod fuzzing;
pub mod provider;
pub mod store;
pub mod sys;
pub mod xnnpack;
pub mod xpwc;

pub use env::EnvIdentity;
pub use error::{CacheError, FormatError, XnnError};
pub use provider::{CacheOptions, FallbackReason, Served, Stats, WeightsCache};
pub use store::{compact, CacheFile, CompactReport, FileOptions};
