//! The extended header (`eh00`) inserted after byte 8 of the program flatbuffer.

use super::PteError;
use crate::error::HeaderReason;
use crate::write::len64;

/// Magic bytes at the start of the extended header.
pub const HEADER_MAGIC: [u8; 4] = *b"eh00";

/// File offset of the extended header (after root offset and file identifier).
pub const HEADER_OFFSET: u64 = 8;

/// The `.pte` extended header.
///
/// Byte layout (little endian) at file offset 8: `eh00`, u32 `length`, u64
/// `program_size`, u64 `segment_base_offset`, and — only when `length` is 32 — u64
/// `segment_data_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedHeader {
    /// Header length in bytes: [`ExtendedHeader::LENGTH`] (32) today,
    /// [`ExtendedHeader::LEGACY_LENGTH`] (24) in files written before
    /// `segment_data_size` existed.
    pub length: u32,
    /// Size of the program flatbuffer including the inserted header block.
    pub program_size: u64,
    /// File offset of the segment area (segment offsets are relative to it).
    pub segment_base_offset: u64,
    /// Size of the segment area (`Some` exactly when `length` is 32).
    pub segment_data_size: Option<u64>,
}

impl ExtendedHeader {
    /// Length of the current header.
    pub const LENGTH: u32 = 32;
    /// Length of the legacy header (no `segment_data_size`).
    pub const LEGACY_LENGTH: u32 = 24;

    /// A current (32-byte) header.
    pub fn new(program_size: u64, segment_base_offset: u64, segment_data_size: u64) -> Self {
        Self {
            length: Self::LENGTH,
            program_size,
            segment_base_offset,
            segment_data_size: Some(segment_data_size),
        }
    }

    /// Whether the file has an extended header: the `eh00` magic at byte 8 (like the
    /// reference, which then also requires `length >= 24`; here a present magic with a bad
    /// length is reported as an error by [`ExtendedHeader::parse`] instead of silently
    /// reading the file as header-less).
    pub fn is_present(bytes: &[u8]) -> bool {
        bytes.get(8..12) == Some(&HEADER_MAGIC[..])
    }

    /// Reads and validates the header of `bytes` (a whole file).
    ///
    /// Returns `Ok(None)` when there is no `eh00` magic at byte 8. Validation, beyond the
    /// reference's `is_valid` (magic, `length >= 24`): `length` is 24 or 32 and the file
    /// holds all of it; `program_size` covers root offset, identifier and header and lies
    /// within the file; `segment_base_offset >= program_size` and within the file;
    /// `segment_base_offset + segment_data_size` within the file, without overflow.
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, PteError> {
        if !Self::is_present(bytes) {
            return Ok(None);
        }
        let file_len = len64(bytes.len());
        let length = read_u32(bytes, 12).ok_or_else(|| truncated(12, "length", file_len))?;
        if length != Self::LENGTH && length != Self::LEGACY_LENGTH {
            return Err(PteError::Header {
                offset: 12,
                field: "length",
                reason: HeaderReason::UnsupportedLength {
                    length,
                    expected: Self::LENGTH,
                    legacy: Self::LEGACY_LENGTH,
                },
            });
        }
        let program_size =
            read_u64(bytes, 16).ok_or_else(|| truncated(16, "program_size", file_len))?;
        let segment_base_offset =
            read_u64(bytes, 24).ok_or_else(|| truncated(24, "segment_base_offset", file_len))?;
        let segment_data_size = if length == Self::LENGTH {
            Some(read_u64(bytes, 32).ok_or_else(|| truncated(32, "segment_data_size", file_len))?)
        } else {
            None
        };
        let header = Self {
            length,
            program_size,
            segment_base_offset,
            segment_data_size,
        };
        header.validate(file_len)?;
        Ok(Some(header))
    }

    /// Checks the header against a file of `file_len` bytes (see [`ExtendedHeader::parse`]).
    pub fn validate(&self, file_len: u64) -> Result<(), PteError> {
        let min_program = HEADER_OFFSET.saturating_add(u64::from(self.length));
        if self.program_size < min_program {
            return Err(PteError::Header {
                offset: 16,
                field: "program_size",
                reason: HeaderReason::SmallerThanHeader {
                    value: self.program_size,
                    min: min_program,
                },
            });
        }
        if self.program_size > file_len {
            return Err(PteError::Header {
                offset: 16,
                field: "program_size",
                reason: HeaderReason::PastEndOfFile {
                    value: self.program_size,
                    file_len,
                },
            });
        }
        if self.segment_base_offset < self.program_size {
            return Err(PteError::Header {
                offset: 24,
                field: "segment_base_offset",
                reason: HeaderReason::InsideProgram {
                    base: self.segment_base_offset,
                    program_size: self.program_size,
                },
            });
        }
        if self.segment_base_offset > file_len {
            return Err(PteError::Header {
                offset: 24,
                field: "segment_base_offset",
                reason: HeaderReason::PastEndOfFile {
                    value: self.segment_base_offset,
                    file_len,
                },
            });
        }
        if let Some(size) = self.segment_data_size {
            let fits =
                matches!(self.segment_base_offset.checked_add(size), Some(end) if end <= file_len);
            if !fits {
                return Err(PteError::Header {
                    offset: 32,
                    field: "segment_data_size",
                    reason: HeaderReason::DataPastEnd {
                        size,
                        base: self.segment_base_offset,
                        file_len,
                    },
                });
            }
        }
        Ok(())
    }

    /// The header bytes: `length` bytes (32, or 24 for a legacy header).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&HEADER_MAGIC);
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.program_size.to_le_bytes());
        out.extend_from_slice(&self.segment_base_offset.to_le_bytes());
        if self.length > Self::LEGACY_LENGTH {
            out.extend_from_slice(&self.segment_data_size.unwrap_or(0).to_le_bytes());
        }
        out
    }

    /// End of the segment area described by the header (`segment_base_offset +
    /// segment_data_size`), when the header has `segment_data_size`.
    pub fn segment_data_end(&self) -> Option<u64> {
        self.segment_data_size
            .and_then(|s| self.segment_base_offset.checked_add(s))
    }
}

fn truncated(offset: u64, field: &'static str, file_len: u64) -> PteError {
    PteError::Header {
        offset,
        field,
        reason: HeaderReason::Truncated { file_len },
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

pub(crate) fn read_u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    read_u32(bytes, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(header: &ExtendedHeader, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let enc = header.encode();
        if let Some(dst) = v.get_mut(8..8 + enc.len()) {
            dst.copy_from_slice(&enc);
        }
        v
    }

    #[test]
    fn roundtrip_current_and_legacy() {
        let h = ExtendedHeader::new(64, 128, 100);
        let f = file_with(&h, 228);
        assert_eq!(ExtendedHeader::parse(&f).ok().flatten(), Some(h));
        let legacy = ExtendedHeader {
            length: 24,
            program_size: 64,
            segment_base_offset: 128,
            segment_data_size: None,
        };
        assert_eq!(legacy.encode().len(), 24);
        let f = file_with(&legacy, 128);
        assert_eq!(ExtendedHeader::parse(&f).ok().flatten(), Some(legacy));
    }

    #[test]
    fn rejects_bad_values() {
        for h in [
            ExtendedHeader::new(8, 128, 0),
            ExtendedHeader::new(300, 300, 0),
            ExtendedHeader::new(64, 32, 0),
            ExtendedHeader::new(64, 128, u64::MAX),
            ExtendedHeader::new(64, u64::MAX, 1),
            ExtendedHeader::new(u64::MAX, u64::MAX, u64::MAX),
            ExtendedHeader::new(64, 5 << 32, 0),
        ] {
            let f = file_with(&h, 200);
            assert!(ExtendedHeader::parse(&f).is_err(), "{h:?}");
        }
        let mut f = file_with(&ExtendedHeader::new(64, 128, 0), 200);
        f[12] = 28;
        assert!(ExtendedHeader::parse(&f).is_err());
        assert!(ExtendedHeader::parse(&f[..20]).is_err());
        assert_eq!(ExtendedHeader::parse(&[0u8; 40]).ok(), Some(None));
    }
}
