//! The `XH00` payload container of `serialize_xnnpack_binary`, and blobs without it
//! (the legacy layout: the whole blob is the flatbuffer).
//!
//! ```text
//! 0..4   zero bytes            4..8   "XH00"            8..10  u16 header length (30)
//! 10..14 u32 flatbuffer offset (32)                     14..18 u32 flatbuffer size
//! 18..22 u32 constant data offset (32 + round_up(size, 16))
//! 22..30 u64 constant data size                          30..32 zero padding
//! 32..   the flatbuffer, zero padding to the constant data offset, the constant data
//! ```

use super::error::{XnnpackError, XnnpackErrorKind};

/// Magic at bytes 4..8 of a payload with a header.
pub const HEADER_MAGIC: [u8; 4] = *b"XH00";
/// The header length the reference writes (and its `XNNHeader.EXPECTED_LENGTH`).
pub const HEADER_LENGTH: u16 = 30;
/// `CONSTANT_TENSOR_ALIGNMENT`: the flatbuffer and constant data start at multiples of it.
pub const CONSTANT_TENSOR_ALIGNMENT: u64 = 16;
/// Identifier of `schema.fbs`, written by the reference.
pub const FILE_IDENTIFIER: [u8; 4] = *b"XN01";
/// Identifier of the runtime schema, also accepted by the runtime.
pub const LEGACY_FILE_IDENTIFIER: [u8; 4] = *b"XN00";

/// The `XH00` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XnnHeader {
    /// The stored header length (30 from the reference; the runtime ignores it).
    pub header_length: u16,
    /// Offset of the flatbuffer in the payload.
    pub flatbuffer_offset: u32,
    /// Size of the flatbuffer, without padding.
    pub flatbuffer_size: u32,
    /// Offset of the constant data in the payload.
    pub constant_data_offset: u32,
    /// Size of the constant data.
    pub constant_data_size: u64,
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| bytes.get(at..end)) {
        out.copy_from_slice(s);
    }
    out
}

/// Rounds `x` up to a multiple of [`CONSTANT_TENSOR_ALIGNMENT`] (`None` on overflow).
pub fn align16(x: u64) -> Option<u64> {
    x.checked_add(CONSTANT_TENSOR_ALIGNMENT - 1)
        .map(|v| v & !(CONSTANT_TENSOR_ALIGNMENT - 1))
}

impl XnnHeader {
    /// The header of `blob` if it has one: at least 30 bytes and `XH00` at 4..8 (the
    /// runtime's rule; like the runtime, the length field is not checked).
    pub fn parse(blob: &[u8]) -> Option<Self> {
        if blob.len() < usize::from(HEADER_LENGTH) || blob.get(4..8) != Some(&HEADER_MAGIC[..]) {
            return None;
        }
        Some(XnnHeader {
            header_length: u16::from_le_bytes(le(blob, 8)),
            flatbuffer_offset: u32::from_le_bytes(le(blob, 10)),
            flatbuffer_size: u32::from_le_bytes(le(blob, 14)),
            constant_data_offset: u32::from_le_bytes(le(blob, 18)),
            constant_data_size: u64::from_le_bytes(le(blob, 22)),
        })
    }

    /// The header `serialize_xnnpack_binary` writes for a flatbuffer of `fb_size` bytes
    /// and `constant_size` bytes of constant data (`None` if the offsets overflow the
    /// header's u32 fields, where the reference's `int.to_bytes` raises).
    pub fn for_sizes(fb_size: u64, constant_size: u64) -> Option<Self> {
        let fb_offset = align16(u64::from(HEADER_LENGTH))?;
        let const_offset = fb_offset.checked_add(align16(fb_size)?)?;
        Some(XnnHeader {
            header_length: HEADER_LENGTH,
            flatbuffer_offset: u32::try_from(fb_offset).ok()?,
            flatbuffer_size: u32::try_from(fb_size).ok()?,
            constant_data_offset: u32::try_from(const_offset).ok()?,
            constant_data_size: constant_size,
        })
    }

    /// The 32 bytes the reference writes (30-byte header plus 2 zero bytes).
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let parts: [(usize, &[u8]); 6] = [
            (4, &HEADER_MAGIC),
            (8, &self.header_length.to_le_bytes()),
            (10, &self.flatbuffer_offset.to_le_bytes()),
            (14, &self.flatbuffer_size.to_le_bytes()),
            (18, &self.constant_data_offset.to_le_bytes()),
            (22, &self.constant_data_size.to_le_bytes()),
        ];
        for (at, bytes) in parts {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        out
    }
}

/// A payload split into its parts (zero-copy).
#[derive(Debug, Clone, Copy)]
pub struct PayloadParts<'a> {
    /// The header; `None` for a legacy blob (the whole blob is the flatbuffer).
    pub header: Option<XnnHeader>,
    /// Offset of the flatbuffer in the payload.
    pub flatbuffer_offset: usize,
    /// The flatbuffer.
    pub flatbuffer: &'a [u8],
    /// Offset of the constant data in the payload (the payload length if none).
    pub constant_data_offset: usize,
    /// The constant data (empty for a legacy blob).
    pub constant_data: &'a [u8],
}

fn range_error(field: &'static str, at: usize, message: String) -> XnnpackError {
    XnnpackError::new(XnnpackErrorKind::Header, message)
        .at(at as u64)
        .in_field(field)
        .in_field("header")
}

/// Splits a payload: the header (if `XH00` is at 4..8), the flatbuffer and the
/// constant data, checking that both ranges lie inside the payload.
pub fn split_payload(blob: &[u8]) -> Result<PayloadParts<'_>, XnnpackError> {
    let Some(h) = XnnHeader::parse(blob) else {
        return Ok(PayloadParts {
            header: None,
            flatbuffer_offset: 0,
            flatbuffer: blob,
            constant_data_offset: blob.len(),
            constant_data: &[],
        });
    };
    let len = blob.len() as u64;
    let fb_start = u64::from(h.flatbuffer_offset);
    let fb_end = fb_start + u64::from(h.flatbuffer_size);
    if fb_end > len {
        return Err(range_error(
            "flatbuffer_size",
            14,
            format!(
                "flatbuffer at {fb_start}..{fb_end} extends past the end of the {len}-byte payload"
            ),
        ));
    }
    let c_start = u64::from(h.constant_data_offset);
    let c_end = c_start.checked_add(h.constant_data_size);
    if c_end.is_none_or(|e| e > len) {
        return Err(range_error(
            "constant_data_size",
            22,
            format!(
                "constant data at offset {c_start} of {} bytes extends past the end of the {len}-byte payload",
                h.constant_data_size
            ),
        ));
    }
    let (fb_start, fb_end) = (fb_start as usize, fb_end as usize); // <= len
    let c_start = c_start as usize;
    let c_end = c_end.unwrap_or(0) as usize;
    Ok(PayloadParts {
        header: Some(h),
        flatbuffer_offset: fb_start,
        flatbuffer: blob.get(fb_start..fb_end).unwrap_or(&[]),
        constant_data_offset: c_start,
        constant_data: blob.get(c_start..c_end).unwrap_or(&[]),
    })
}

/// Whether `blob` looks like an XNNPACK payload: an `XH00` header, or a bare flatbuffer
/// with identifier `XN00`/`XN01`.
pub fn is_xnnpack_payload(blob: &[u8]) -> bool {
    XnnHeader::parse(blob).is_some()
        || matches!(blob.get(4..8), Some(id) if id == FILE_IDENTIFIER || id == LEGACY_FILE_IDENTIFIER)
}
