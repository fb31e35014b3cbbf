//! The on-disk format of a ptekit packed-weight cache file (`PTKWC`, format
//! version 3).
//!
//! ```text
//! offset 0            header (128 bytes, checksummed), written once at creation:
//!                     layout, file id, and the identity of the environment the
//!                     packed bytes are valid for (XNNPACK build, CPU features)
//! header.index_offset index log: `slot_count` slots of 256 bytes, append-only;
//!                     continued by `LINK` records in further extents
//! header.data_offset  packed data (and index extents), 128-byte aligned ranges
//! ```
//!
//! The index log holds these records, each self-checking (BLAKE3 of the
//! record body):
//! * `RESERVE` — written before a writer packs into a range, so that the range
//!   is never handed out again even if the writer dies before committing;
//! * `ENTRY` — written after the packed bytes of a range have been flushed;
//!   it names the range, the XNNPACK key (seed, fingerprint id), the content
//!   digest of the unpacked kernel and bias, and a digest of the packed bytes;
//! * `DROP` — withdraws an earlier entry (cut off by a truncation, or evicted
//!   by the size cap);
//! * `MEMO` — the content key of a byte range of a read-only file mapping,
//!   named by the file's identity (device, inode, size, times), so that a
//!   later load of the same unchanged file needs no hashing;
//! * `LINK` — the index continues in an extent in the data region: the next
//!   slot is the first of that extent (the index has no fixed size).
//!
//! A slot is written once and never rewritten, except for its last-use time
//! (bytes 240..248, outside the checksum; advisory, for least-recently-used
//! eviction). A reader takes every slot up to the first all-zero slot; a slot
//! that fails its checksum is a torn record and is ignored (a writer skips it,
//! so it is never rewritten either). Everything here is pure parsing;
//! [`Index::apply`] never panics on any input.

use std::collections::{BTreeMap, HashMap};

use crate::error::FormatError;

/// File magic: the first 8 bytes of a cache file.
pub const MAGIC: [u8; 8] = *b"PTKWC\0\0\x01";
/// Format version written in the header (2: environment identity in the
/// header, packing descriptors in the keys; 3: index extents, file-region
/// memos, last-use times).
pub const VERSION: u32 = 3;
/// Bytes of header that carry data (the rest up to `index_offset` is zero).
pub const HEADER_LEN: usize = 128;
/// Offset of the header checksum.
const HEADER_CRC_AT: usize = 120;
/// Size of one index slot.
pub const SLOT_SIZE: usize = 256;
/// Index slots of a new file: one 64 KiB unit after the header's, so that the data
/// region starts at 128 KiB. A file that needs more continues its index in linked
/// extents (each as large as the index so far), written by the committing writer.
/// 256 slots hold the records of the largest model of the cache benchmarks on its
/// first run (the transformer: 48 entries and their memos, 144 slots).
pub const DEFAULT_SLOT_COUNT: u32 = 256;
/// Alignment of packed data ranges (XNNPACK's `XNN_ALLOCATION_ALIGNMENT` is 64
/// on every platform the wheel targets; 128 keeps room for wider ones).
pub const DATA_ALIGN: u64 = 128;
/// Offset of the index log: one 64 KiB unit after the header so that the
/// header page is never shared with anything written later.
pub const INDEX_OFFSET: u64 = 65536;
/// Longest name kept in a record (longer names are truncated on a char boundary).
pub const NAME_MAX: usize = 136;
/// Offset of the last-use time in a slot (not covered by the checksum).
pub const LAST_USE_AT: usize = 240;

const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"PWCR");
const KIND_ENTRY: u8 = 1;
const KIND_RESERVE: u8 = 2;
const KIND_DROP: u8 = 3;
const KIND_MEMO: u8 = 4;
const KIND_LINK: u8 = 5;
const CRC_AT: usize = 248;
/// Bytes of a slot covered by its checksum.
const CRC_COVERS: usize = LAST_USE_AT;
/// Alignment of index extents.
pub const EXTENT_ALIGN: u64 = 4096;

/// The first 8 bytes of `b` in hex (for messages).
pub fn short_hex(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

/// Rounds `v` up to a multiple of `a` (a power of two), `None` on overflow.
pub fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

fn digest8(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

fn rd_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}
fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Number of index slots.
    pub slot_count: u32,
    /// File offset of the index log.
    pub index_offset: u64,
    /// File offset of the data region.
    pub data_offset: u64,
    /// Random identity of this file (a compacted file gets a new one).
    pub file_id: [u8; 16],
    /// Identity of the environment the packed bytes were made by and for
    /// (see [`crate::env::EnvIdentity`]): a file from another XNNPACK build or
    /// CPU is never served.
    pub env_digest: [u8; 32],
}

impl Header {
    /// A header for a new file with `slot_count` index slots, valid for the
    /// environment `env_digest`.
    pub fn new(slot_count: u32, file_id: [u8; 16], env_digest: [u8; 32]) -> Header {
        let index_bytes = slot_count as u64 * SLOT_SIZE as u64;
        let data_offset = align_up(INDEX_OFFSET + index_bytes, 65536).unwrap_or(u64::MAX);
        Header {
            slot_count,
            index_offset: INDEX_OFFSET,
            data_offset,
            file_id,
            env_digest,
        }
    }

    /// Serializes the header (128 bytes).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SLOT_SIZE as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.slot_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.index_offset.to_le_bytes());
        b[32..40].copy_from_slice(&self.data_offset.to_le_bytes());
        b[40..56].copy_from_slice(&self.file_id);
        b[56..88].copy_from_slice(&self.env_digest);
        let c = digest8(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..HEADER_LEN].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Recomputes the checksum of a header in place (for the fuzz target).
    pub fn seal(b: &mut [u8; HEADER_LEN]) {
        let c = digest8(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..HEADER_LEN].copy_from_slice(&c.to_le_bytes());
    }

    /// Parses and validates a header against the file length.
    pub fn decode(b: &[u8], file_len: u64) -> Result<Header, FormatError> {
        if b.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
            return Err(FormatError::Truncated {
                what: "header",
                offset: 0,
                need: HEADER_LEN as u64,
                have: file_len.min(b.len() as u64),
            });
        }
        if b[0..8] != MAGIC {
            if b.len() >= 4 && &b[0..4] == b"XPWC" {
                return Err(FormatError::BadMagic {
                    offset: 0,
                    hint: "looks like a reference XPWC file (its magic is in the footer)",
                });
            }
            return Err(FormatError::BadMagic {
                offset: 0,
                hint: "not a ptekit cache file",
            });
        }
        let version = rd_u32(b, 8);
        if version != VERSION {
            return Err(FormatError::Version { found: version });
        }
        let stored = rd_u64(b, HEADER_CRC_AT);
        if digest8(&b[..HEADER_CRC_AT]) != stored {
            return Err(FormatError::Checksum {
                what: "header",
                offset: HEADER_CRC_AT as u64,
            });
        }
        let slot_size = rd_u32(b, 12);
        if slot_size as usize != SLOT_SIZE {
            return Err(FormatError::Field {
                field: "header.slot_size",
                offset: 12,
                reason: format!("{slot_size} (expected {SLOT_SIZE})"),
            });
        }
        let slot_count = rd_u32(b, 16);
        let index_offset = rd_u64(b, 24);
        let data_offset = rd_u64(b, 32);
        let index_end = (slot_count as u64)
            .checked_mul(SLOT_SIZE as u64)
            .and_then(|n| n.checked_add(index_offset));
        match index_end {
            Some(end) if index_offset >= HEADER_LEN as u64 && end <= data_offset => {}
            _ => {
                return Err(FormatError::Field {
                    field: "header.index_offset/slot_count/data_offset",
                    offset: 16,
                    reason: format!(
                        "index at {index_offset} with {slot_count} slots does not end before data at {data_offset}"
                    ),
                })
            }
        }
        if data_offset % DATA_ALIGN != 0 {
            return Err(FormatError::Field {
                field: "header.data_offset",
                offset: 32,
                reason: format!("{data_offset} is not {DATA_ALIGN}-aligned"),
            });
        }
        if file_len < data_offset {
            return Err(FormatError::Truncated {
                what: "index region",
                offset: 0,
                need: data_offset,
                have: file_len,
            });
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&b[40..56]);
        let mut env_digest = [0u8; 32];
        env_digest.copy_from_slice(&b[56..88]);
        Ok(Header {
            slot_count,
            index_offset,
            data_offset,
            file_id,
            env_digest,
        })
    }

    /// File offset of slot `i`.
    pub fn slot_offset(&self, i: u32) -> u64 {
        self.index_offset + i as u64 * SLOT_SIZE as u64
    }
}

/// How the content part of a key was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// BLAKE3 of the bytes, computed by the cache.
    Hashed,
    /// Supplied by the caller (e.g. ExecuTorch's SHA-256 data names).
    Caller,
}

/// A committed packed-weight entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// File offset of the packed bytes.
    pub data_offset: u64,
    /// Length of the packed bytes.
    pub data_len: u64,
    /// XNNPACK's per-ukernel seed.
    pub seed: u32,
    /// XNNPACK's packing fingerprint id.
    pub fingerprint_id: u32,
    /// Size of the unpacked kernel.
    pub kernel_len: u64,
    /// Size of the unpacked bias (`None`: no bias).
    pub bias_len: Option<u64>,
    /// Digest of the unpacked kernel and bias contents (see `key_digest`).
    pub key_digest: [u8; 32],
    /// First 16 bytes of BLAKE3 of the packed bytes.
    pub data_digest: [u8; 16],
    /// How the kernel's content key was obtained.
    pub kernel_key: KeySource,
    /// Optional caller-given name of the kernel (informational, and used to
    /// mark an older entry of the same name as superseded).
    pub name: String,
    /// Process id of the writer.
    pub pid: u32,
    /// Seconds since the epoch of the last load that used the entry (as
    /// read; advisory, not checksummed).
    pub last_use: u64,
}

impl Entry {
    /// The lookup key of the entry.
    pub fn key(&self) -> EntryKey {
        EntryKey {
            seed: self.seed,
            fingerprint_id: self.fingerprint_id,
            digest: self.key_digest,
        }
    }
}

/// A file-region memo to commit: the content key of `len` bytes named by
/// the digest of a file's identity and the range's place in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionMemo {
    /// Region identity digest.
    pub region: [u8; 32],
    /// Content key (BLAKE3 of the bytes).
    pub content: [u8; 32],
    /// Length of the region.
    pub len: u64,
}

/// A record of the index log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A committed entry.
    Entry(Entry),
    /// A reservation of a data range by a writer.
    Reserve {
        /// File offset of the range.
        data_offset: u64,
        /// Length of the range.
        data_len: u64,
        /// Process id of the writer.
        pid: u32,
    },
    /// Withdraws the entry in an earlier slot (written by a writer that found
    /// the entry's range past the end of a truncated file, before it grows
    /// the file again, so the entry can never be read over new zeros).
    Drop {
        /// The withdrawn slot.
        slot: u32,
        /// Process id of the writer.
        pid: u32,
    },
    /// The content key of a byte range of a file, by the file's identity.
    Memo {
        /// Digest of the file identity and the range (see the preload library).
        region: [u8; 32],
        /// The content key of the range's bytes (BLAKE3).
        content: [u8; 32],
        /// Length of the range.
        len: u64,
        /// Process id of the writer.
        pid: u32,
    },
    /// The index continues at `offset` with `slots` slots.
    Link {
        /// File offset of the next extent.
        offset: u64,
        /// Number of slots in it.
        slots: u32,
        /// Process id of the writer.
        pid: u32,
    },
}

impl Record {
    /// Data range `(offset, len)` named by the record.
    pub fn range(&self) -> (u64, u64) {
        match self {
            Record::Entry(e) => (e.data_offset, e.data_len),
            Record::Reserve {
                data_offset,
                data_len,
                ..
            } => (*data_offset, *data_len),
            Record::Link { offset, slots, .. } => (*offset, u64::from(*slots) * SLOT_SIZE as u64),
            Record::Drop { .. } | Record::Memo { .. } => (0, 0),
        }
    }

    /// Serializes the record into one slot.
    pub fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut b = [0u8; SLOT_SIZE];
        b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        match self {
            Record::Entry(e) => {
                b[4] = KIND_ENTRY;
                let mut flags = 0u8;
                if e.kernel_key == KeySource::Caller {
                    flags |= 1;
                }
                if e.bias_len.is_some() {
                    flags |= 4;
                }
                b[5] = flags;
                let name = truncate_name(&e.name);
                b[6..8].copy_from_slice(&(name.len() as u16).to_le_bytes());
                b[8..12].copy_from_slice(&e.pid.to_le_bytes());
                b[16..24].copy_from_slice(&e.data_offset.to_le_bytes());
                b[24..32].copy_from_slice(&e.data_len.to_le_bytes());
                b[32..36].copy_from_slice(&e.seed.to_le_bytes());
                b[36..40].copy_from_slice(&e.fingerprint_id.to_le_bytes());
                b[40..48].copy_from_slice(&e.kernel_len.to_le_bytes());
                b[48..56].copy_from_slice(&e.bias_len.unwrap_or(0).to_le_bytes());
                b[56..88].copy_from_slice(&e.key_digest);
                b[88..104].copy_from_slice(&e.data_digest);
                b[104..104 + name.len()].copy_from_slice(name.as_bytes());
                b[LAST_USE_AT..CRC_AT].copy_from_slice(&e.last_use.to_le_bytes());
            }
            Record::Reserve {
                data_offset,
                data_len,
                pid,
            } => {
                b[4] = KIND_RESERVE;
                b[8..12].copy_from_slice(&pid.to_le_bytes());
                b[16..24].copy_from_slice(&data_offset.to_le_bytes());
                b[24..32].copy_from_slice(&data_len.to_le_bytes());
            }
            Record::Drop { slot, pid } => {
                b[4] = KIND_DROP;
                b[8..12].copy_from_slice(&pid.to_le_bytes());
                b[12..16].copy_from_slice(&slot.to_le_bytes());
            }
            Record::Memo {
                region,
                content,
                len,
                pid,
            } => {
                b[4] = KIND_MEMO;
                b[8..12].copy_from_slice(&pid.to_le_bytes());
                b[16..24].copy_from_slice(&len.to_le_bytes());
                b[24..56].copy_from_slice(region);
                b[56..88].copy_from_slice(content);
            }
            Record::Link { offset, slots, pid } => {
                b[4] = KIND_LINK;
                b[8..12].copy_from_slice(&pid.to_le_bytes());
                b[12..16].copy_from_slice(&slots.to_le_bytes());
                b[16..24].copy_from_slice(&offset.to_le_bytes());
            }
        }
        let c = digest8(&b[..CRC_COVERS]);
        b[CRC_AT..].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Recomputes the checksum of a slot in place (so that a mutated slot
    /// reaches the record parser; used by the structure-aware fuzz target).
    pub fn seal(slot: &mut [u8; SLOT_SIZE]) {
        let c = digest8(&slot[..CRC_COVERS]);
        slot[CRC_AT..].copy_from_slice(&c.to_le_bytes());
    }

    /// Parses one slot. `Ok(None)`: an all-zero (never written) slot.
    pub fn decode(b: &[u8], offset: u64) -> Result<Option<Record>, FormatError> {
        if b.len() < SLOT_SIZE {
            return Err(FormatError::Truncated {
                what: "index slot",
                offset,
                need: SLOT_SIZE as u64,
                have: b.len() as u64,
            });
        }
        let b = &b[..SLOT_SIZE];
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        if rd_u32(b, 0) != RECORD_MAGIC {
            return Err(FormatError::BadMagic {
                offset,
                hint: "index record",
            });
        }
        if digest8(&b[..CRC_COVERS]) != rd_u64(b, CRC_AT) {
            return Err(FormatError::Checksum {
                what: "index record",
                offset: offset + CRC_AT as u64,
            });
        }
        let pid = rd_u32(b, 8);
        let data_offset = rd_u64(b, 16);
        let data_len = rd_u64(b, 24);
        match b[4] {
            KIND_DROP => Ok(Some(Record::Drop {
                slot: rd_u32(b, 12),
                pid,
            })),
            KIND_RESERVE => Ok(Some(Record::Reserve {
                data_offset,
                data_len,
                pid,
            })),
            KIND_MEMO => {
                let mut region = [0u8; 32];
                region.copy_from_slice(&b[24..56]);
                let mut content = [0u8; 32];
                content.copy_from_slice(&b[56..88]);
                Ok(Some(Record::Memo {
                    region,
                    content,
                    len: data_offset,
                    pid,
                }))
            }
            KIND_LINK => Ok(Some(Record::Link {
                offset: data_offset,
                slots: rd_u32(b, 12),
                pid,
            })),
            KIND_ENTRY => {
                let flags = b[5];
                let name_len = rd_u16(b, 6) as usize;
                if name_len > NAME_MAX {
                    return Err(FormatError::Field {
                        field: "record.name_len",
                        offset: offset + 6,
                        reason: format!("{name_len} > {NAME_MAX}"),
                    });
                }
                let name = std::str::from_utf8(&b[104..104 + name_len])
                    .map_err(|e| FormatError::Field {
                        field: "record.name",
                        offset: offset + 104,
                        reason: e.to_string(),
                    })?
                    .to_string();
                let mut key_digest = [0u8; 32];
                key_digest.copy_from_slice(&b[56..88]);
                let mut data_digest = [0u8; 16];
                data_digest.copy_from_slice(&b[88..104]);
                Ok(Some(Record::Entry(Entry {
                    data_offset,
                    data_len,
                    seed: rd_u32(b, 32),
                    fingerprint_id: rd_u32(b, 36),
                    kernel_len: rd_u64(b, 40),
                    bias_len: if flags & 4 != 0 {
                        Some(rd_u64(b, 48))
                    } else {
                        None
                    },
                    key_digest,
                    data_digest,
                    kernel_key: if flags & 1 != 0 {
                        KeySource::Caller
                    } else {
                        KeySource::Hashed
                    },
                    name,
                    pid,
                    last_use: rd_u64(b, LAST_USE_AT),
                })))
            }
            k => Err(FormatError::Field {
                field: "record.kind",
                offset: offset + 4,
                reason: format!("unknown kind {k}"),
            }),
        }
    }
}

fn truncate_name(s: &str) -> &str {
    if s.len() <= NAME_MAX {
        return s;
    }
    let mut end = NAME_MAX;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The lookup key of an entry: XNNPACK's seed and fingerprint id plus the
/// content digest of the unpacked kernel and bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    /// XNNPACK's per-ukernel seed.
    pub seed: u32,
    /// XNNPACK's packing fingerprint id.
    pub fingerprint_id: u32,
    /// Content digest (see [`key_digest`]).
    pub digest: [u8; 32],
}

/// Content key of one registered buffer: its 32-byte key, where it came
/// from, and the digest of everything besides its bytes that determines how
/// XNNPACK packs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentKey {
    /// 32 bytes: BLAKE3 of the bytes, or the caller's key.
    pub key: [u8; 32],
    /// Where the key came from.
    pub source: KeySource,
    /// Length of the buffer.
    pub len: u64,
    /// Packing descriptor: a digest of the tensor's datatype, dimensions and
    /// every quantization parameter (scale contents included), and of the
    /// nodes that consume it (see `ptekit-xnnpack-preload`). All zero: the
    /// caller vouches that the content key alone determines the packing.
    pub desc: [u8; 32],
}

/// Combines the content keys of kernel and (optional) bias into one digest.
/// Caller keys and computed hashes are domain-separated, so a caller key can
/// never collide with a hash of other bytes; the packing descriptors are part
/// of the digest, so equal bytes with another shape or other scales never
/// share an entry.
pub fn key_digest(kernel: &ContentKey, bias: Option<&ContentKey>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"ptekit packed-weight key v2\0");
    let mut part = |k: &ContentKey| {
        h.update(&[match k.source {
            KeySource::Hashed => 1u8,
            KeySource::Caller => 2u8,
        }]);
        h.update(&k.len.to_le_bytes());
        h.update(&k.key);
        h.update(&k.desc);
    };
    part(kernel);
    match bias {
        Some(b) => part(b),
        None => {
            h.update(&[0u8]);
        }
    }
    *h.finalize().as_bytes()
}

/// Why an entry is not live.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// A later entry with the same name, seed and fingerprint replaced it.
    Superseded {
        /// Slot of the replacing entry.
        by_slot: u32,
    },
    /// An earlier entry has the same key.
    Duplicate {
        /// Slot of the earlier entry.
        of_slot: u32,
    },
    /// Range outside the data region or past the end of the file.
    OutOfBounds,
    /// Range overlaps an earlier record's range.
    Overlap {
        /// Slot of the earlier record.
        with_slot: u32,
    },
    /// Withdrawn by a `DROP` record.
    Dropped {
        /// Slot of the `DROP` record.
        by_slot: u32,
    },
}

/// Plain words for text output (`--json` keeps the serde names:
/// `superseded`, `duplicate`, `out_of_bounds`, `overlap`, `dropped`).
impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadReason::Superseded { by_slot } => write!(
                f,
                "replaced by slot {by_slot}: same name, seed and fingerprint"
            ),
            DeadReason::Duplicate { of_slot } => {
                write!(f, "same key as slot {of_slot}, which came first")
            }
            DeadReason::OutOfBounds => {
                f.write_str("range lies outside the data region or past the end of the file")
            }
            DeadReason::Overlap { with_slot } => {
                write!(f, "range overlaps the range of slot {with_slot}")
            }
            DeadReason::Dropped { by_slot } => {
                write!(f, "withdrawn by the drop record in slot {by_slot}")
            }
        }
    }
}

/// What the index says about one slot.
#[derive(Clone, Debug)]
pub enum SlotState {
    /// A live entry.
    Live(Entry),
    /// An entry that is not live, with the reason.
    Dead(Entry, DeadReason),
    /// A reservation (matched by an entry or orphaned; see [`Index::summary`]).
    Reserve {
        /// Data offset.
        data_offset: u64,
        /// Data length.
        data_len: u64,
        /// Writer pid.
        pid: u32,
    },
    /// A `DROP` record withdrawing an earlier slot.
    Drop {
        /// The withdrawn slot.
        slot: u32,
    },
    /// A `MEMO` record: the content key of a file region.
    Memo {
        /// Region identity digest.
        region: [u8; 32],
        /// Content key.
        content: [u8; 32],
        /// Length of the region.
        len: u64,
    },
    /// A `LINK` record: the index continues in another extent (`valid`:
    /// the extent lies inside the data region and the file, overlaps
    /// nothing, and is followed).
    Link {
        /// File offset of the extent.
        offset: u64,
        /// Its slots.
        slots: u32,
        /// Whether the reader follows it.
        valid: bool,
    },
    /// A slot that failed to parse (torn write or corruption).
    Torn(FormatError),
}

/// Byte accounting of a cache file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Length of the file.
    pub file_bytes: u64,
    /// Live entries.
    pub live_entries: u64,
    /// Packed bytes of live entries.
    pub live_bytes: u64,
    /// Bytes no live entry uses and that compaction would reclaim: superseded,
    /// duplicate and invalid entries, and reservations never committed.
    pub dead_bytes: u64,
    /// Alignment padding between ranges.
    pub padding_bytes: u64,
    /// Allocated but not yet used bytes at the end of the data region.
    pub free_tail_bytes: u64,
    /// Header and index region.
    pub index_region_bytes: u64,
    /// Index slots in use (valid or torn).
    pub slots_used: u64,
    /// Index slots available (in the header's region and every extent).
    pub slot_count: u64,
    /// Index extents besides the header's region.
    pub index_extents: u64,
    /// Bytes of those extents (in the data region).
    pub index_extent_bytes: u64,
    /// File-region memos (content keys of unchanged model files).
    pub memos: u64,
    /// Oldest and newest last-use time of the live entries (seconds since
    /// the epoch; 0 when unknown).
    pub oldest_use: u64,
    /// See `oldest_use`.
    pub newest_use: u64,
    /// Torn or corrupt slots.
    pub torn_slots: u64,
    /// Reservations never committed (writers that died, or abandoned packs).
    pub orphan_reservations: u64,
    /// Entries that are not live.
    pub dead_entries: u64,
}

/// A run of consecutive index slots: the header's region or an extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Global number of its first slot.
    pub first_slot: u32,
    /// File offset of its first slot.
    pub offset: u64,
    /// Number of slots (the region ends early when a `LINK` is written
    /// before its last slot).
    pub count: u32,
}

/// The index of a cache file, built incrementally from its slots.
#[derive(Debug)]
pub struct Index {
    /// The file header.
    pub header: Header,
    /// Parsed slots, by slot number (only slots read so far).
    pub slots: Vec<SlotState>,
    /// Where the slots are: the header's region, then each linked extent.
    pub extents: Vec<Extent>,
    memos: HashMap<[u8; 32], ([u8; 32], u64)>,
    live_by_key: HashMap<EntryKey, u32>,
    named: HashMap<(String, u32, u32), u32>,
    ranges: BTreeMap<u64, (u64, u32)>,
    reserve_matched: HashMap<u64, bool>,
    /// End of the highest range named by any record (the allocation mark).
    pub alloc_end: u64,
    /// File length the index was validated against.
    pub file_len: u64,
}

impl Index {
    /// An empty index for `header`.
    pub fn new(header: Header, file_len: u64) -> Index {
        let alloc_end = header.data_offset;
        let first = Extent {
            first_slot: 0,
            offset: header.index_offset,
            count: header.slot_count,
        };
        Index {
            header,
            slots: Vec::new(),
            extents: vec![first],
            memos: HashMap::new(),
            live_by_key: HashMap::new(),
            named: HashMap::new(),
            ranges: BTreeMap::new(),
            reserve_matched: HashMap::new(),
            alloc_end,
            file_len,
        }
    }

    /// Number of slots read so far.
    pub fn next_slot(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Total number of slots over all extents known so far.
    pub fn capacity(&self) -> u32 {
        self.extents
            .last()
            .map_or(0, |e| e.first_slot.saturating_add(e.count))
    }

    /// File offset of slot `i`, `None` past the known extents.
    pub fn slot_offset(&self, i: u32) -> Option<u64> {
        let e = self
            .extents
            .iter()
            .rev()
            .find(|e| e.first_slot <= i && i - e.first_slot < e.count)?;
        Some(e.offset + u64::from(i - e.first_slot) * SLOT_SIZE as u64)
    }

    /// Slots left in the last extent from `slot` on.
    pub fn slots_left_from(&self, slot: u32) -> u32 {
        self.capacity().saturating_sub(slot)
    }

    /// Every file-region memo (first record per region).
    pub fn memos(&self) -> impl Iterator<Item = RegionMemo> + '_ {
        self.memos
            .iter()
            .map(|(region, (content, len))| RegionMemo {
                region: *region,
                content: *content,
                len: *len,
            })
    }

    /// The content key memorised for a file region, if any.
    pub fn memo(&self, region: &[u8; 32]) -> Option<([u8; 32], u64)> {
        self.memos.get(region).copied()
    }

    /// Slot of the live entry for `key`, if any.
    pub fn find(&self, key: &EntryKey) -> Option<(u32, &Entry)> {
        let slot = *self.live_by_key.get(key)?;
        match self.slots.get(slot as usize) {
            Some(SlotState::Live(e)) => Some((slot, e)),
            _ => None,
        }
    }

    /// Slots of entries that lie past the end of the file and have not been
    /// withdrawn yet.
    pub fn out_of_bounds_undropped(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                SlotState::Dead(_, DeadReason::OutOfBounds) => Some(i as u32),
                _ => None,
            })
            .collect()
    }

    /// Iterates over live entries with their slots.
    pub fn live(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            SlotState::Live(e) => Some((i as u32, e)),
            _ => None,
        })
    }

    fn overlap(&self, off: u64, len: u64) -> Option<u32> {
        let end = off.saturating_add(len);
        // The range starting at or before `off`, and the first starting after.
        if let Some((_, &(e, slot))) = self.ranges.range(..=off).next_back() {
            if e > off {
                return Some(slot);
            }
        }
        if let Some((&s, &(_, slot))) = self.ranges.range(off..).next() {
            if s < end {
                return Some(slot);
            }
        }
        None
    }

    /// Applies the parse result of the next slot. Never panics.
    pub fn apply(&mut self, parsed: Result<Option<Record>, FormatError>) {
        let slot = self.slots.len() as u32;
        let rec = match parsed {
            Err(e) => {
                self.slots.push(SlotState::Torn(e));
                return;
            }
            Ok(None) => {
                // Callers stop at the first empty slot; keep the invariant that
                // `slots` only holds written slots.
                return;
            }
            Ok(Some(r)) => r,
        };
        let (off, len) = rec.range();
        let in_bounds = off >= self.header.data_offset
            && off % DATA_ALIGN == 0
            && len > 0
            && off.checked_add(len).is_some_and(|e| e <= self.file_len);
        // Ranges inside the file are off limits to new allocations. A record
        // past the end of the file never moves the allocation mark (a forged
        // or stale record must not make the next writer extend the file to
        // it); entries there are withdrawn by a DROP record before the file
        // grows over them (see `CacheFile::reserve`).
        if in_bounds {
            self.alloc_end = self.alloc_end.max(off.saturating_add(len));
        }
        match rec {
            Record::Memo {
                region,
                content,
                len,
                ..
            } => {
                self.memos.entry(region).or_insert((content, len));
                self.slots.push(SlotState::Memo {
                    region,
                    content,
                    len,
                });
            }
            Record::Link { offset, slots, .. } => {
                let valid = in_bounds
                    && slots > 0
                    && offset % EXTENT_ALIGN == 0
                    && self.overlap(offset, len).is_none()
                    && slot
                        .checked_add(1)
                        .and_then(|n| n.checked_add(slots))
                        .is_some();
                if valid {
                    self.ranges.insert(offset, (offset + len, slot));
                    if let Some(cur) = self.extents.last_mut() {
                        // The current region ends with the link.
                        cur.count = slot + 1 - cur.first_slot;
                    }
                    self.extents.push(Extent {
                        first_slot: slot + 1,
                        offset,
                        count: slots,
                    });
                }
                self.slots.push(SlotState::Link {
                    offset,
                    slots,
                    valid,
                });
            }
            Record::Drop { slot: target, .. } => {
                if let Some(st) = self.slots.get_mut(target as usize) {
                    if let SlotState::Live(e) | SlotState::Dead(e, _) = st {
                        let e = e.clone();
                        let key = EntryKey {
                            seed: e.seed,
                            fingerprint_id: e.fingerprint_id,
                            digest: e.key_digest,
                        };
                        if self.live_by_key.get(&key) == Some(&target) {
                            self.live_by_key.remove(&key);
                        }
                        // The withdrawn range may be written again.
                        if self.ranges.get(&e.data_offset).map(|r| r.1) == Some(target) {
                            self.ranges.remove(&e.data_offset);
                        }
                        *st = SlotState::Dead(e, DeadReason::Dropped { by_slot: slot });
                    }
                }
                self.slots.push(SlotState::Drop { slot: target });
            }
            Record::Reserve {
                data_offset,
                data_len,
                pid,
            } => {
                if in_bounds {
                    self.reserve_matched.entry(data_offset).or_insert(false);
                    if self.overlap(data_offset, data_len).is_none() {
                        self.ranges
                            .insert(data_offset, (data_offset + data_len, slot));
                    }
                }
                self.slots.push(SlotState::Reserve {
                    data_offset,
                    data_len,
                    pid,
                });
            }
            Record::Entry(e) => {
                if !in_bounds {
                    self.slots.push(SlotState::Dead(e, DeadReason::OutOfBounds));
                    return;
                }
                // The entry may sit on its own reservation (same start, not
                // longer); any other overlap is an invalid record.
                let own_reserve = self
                    .ranges
                    .get(&e.data_offset)
                    .copied()
                    .filter(|&(end, s)| {
                        e.data_offset + e.data_len <= end
                            && matches!(self.slots.get(s as usize), Some(SlotState::Reserve { .. }))
                    });
                let overlap = match own_reserve {
                    Some(_) => None,
                    None => self.overlap(e.data_offset, e.data_len),
                };
                if let Some(with_slot) = overlap {
                    self.slots
                        .push(SlotState::Dead(e, DeadReason::Overlap { with_slot }));
                    return;
                }
                if own_reserve.is_none() {
                    self.ranges
                        .insert(e.data_offset, (e.data_offset + e.data_len, slot));
                } else {
                    self.reserve_matched.insert(e.data_offset, true);
                }
                let key = EntryKey {
                    seed: e.seed,
                    fingerprint_id: e.fingerprint_id,
                    digest: e.key_digest,
                };
                if let Some(&of_slot) = self.live_by_key.get(&key) {
                    self.slots
                        .push(SlotState::Dead(e, DeadReason::Duplicate { of_slot }));
                    return;
                }
                if !e.name.is_empty() {
                    let nk = (e.name.clone(), e.seed, e.fingerprint_id);
                    if let Some(old) = self.named.insert(nk, slot) {
                        if let Some(st) = self.slots.get_mut(old as usize) {
                            if let SlotState::Live(old_e) = st {
                                let old_e = old_e.clone();
                                self.live_by_key.remove(&EntryKey {
                                    seed: old_e.seed,
                                    fingerprint_id: old_e.fingerprint_id,
                                    digest: old_e.key_digest,
                                });
                                *st = SlotState::Dead(
                                    old_e,
                                    DeadReason::Superseded { by_slot: slot },
                                );
                            }
                        }
                    }
                }
                self.live_by_key.insert(key, slot);
                self.slots.push(SlotState::Live(e));
            }
        }
    }

    /// Byte accounting.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            file_bytes: self.file_len,
            index_region_bytes: self.header.data_offset,
            slot_count: u64::from(self.capacity()),
            index_extents: self.extents.len().saturating_sub(1) as u64,
            index_extent_bytes: self
                .extents
                .iter()
                .skip(1)
                .map(|e| u64::from(e.count) * SLOT_SIZE as u64)
                .sum(),
            memos: self.memos.len() as u64,
            slots_used: self.slots.len() as u64,
            ..Summary::default()
        };
        for st in &self.slots {
            match st {
                SlotState::Live(e) => {
                    s.live_entries += 1;
                    s.live_bytes = s.live_bytes.saturating_add(e.data_len);
                }
                SlotState::Dead(e, reason) => {
                    s.dead_entries += 1;
                    let counted = match reason {
                        DeadReason::OutOfBounds => {
                            if e.data_offset < self.file_len {
                                e.data_len.min(self.file_len - e.data_offset)
                            } else {
                                0
                            }
                        }
                        DeadReason::Overlap { .. } => 0,
                        DeadReason::Dropped { .. } => {
                            if e.data_offset < self.file_len {
                                e.data_len.min(self.file_len - e.data_offset)
                            } else {
                                0
                            }
                        }
                        _ => e.data_len,
                    };
                    s.dead_bytes = s.dead_bytes.saturating_add(counted);
                }
                SlotState::Reserve {
                    data_offset,
                    data_len,
                    ..
                } => {
                    // Only reservations inside the file count (a record
                    // claiming more is invalid and holds no bytes).
                    let inside = data_offset
                        .checked_add(*data_len)
                        .is_some_and(|e| e <= self.file_len);
                    if inside && self.reserve_matched.get(data_offset) == Some(&false) {
                        s.orphan_reservations += 1;
                        s.dead_bytes = s.dead_bytes.saturating_add(*data_len);
                    }
                }
                SlotState::Drop { .. } | SlotState::Memo { .. } | SlotState::Link { .. } => {}
                SlotState::Torn(_) => s.torn_slots += 1,
            }
        }
        let used = self.alloc_end.saturating_sub(self.header.data_offset);
        s.padding_bytes = used.saturating_sub(
            s.live_bytes
                .saturating_add(s.dead_bytes)
                .saturating_add(s.index_extent_bytes),
        );
        let uses: Vec<u64> = self
            .live()
            .map(|(_, e)| e.last_use)
            .filter(|&t| t > 0)
            .collect();
        s.oldest_use = uses.iter().copied().min().unwrap_or(0);
        s.newest_use = uses.iter().copied().max().unwrap_or(0);
        s.free_tail_bytes = self
            .file_len
            .saturating_sub(self.alloc_end.max(self.header.data_offset));
        s
    }
}

/// Parses a whole cache file image (for `inspect`, `verify` and tests).
pub fn parse_image(bytes: &[u8]) -> Result<Index, FormatError> {
    let header = Header::decode(bytes, bytes.len() as u64)?;
    let mut index = Index::new(header, bytes.len() as u64);
    let mut i = 0u32;
    while let Some(off) = index.slot_offset(i) {
        i += 1;
        let Some(slot) = usize::try_from(off)
            .ok()
            .and_then(|o| bytes.get(o..o.checked_add(SLOT_SIZE)?))
        else {
            break;
        };
        let r = Record::decode(slot, off);
        if matches!(r, Ok(None)) {
            break;
        }
        index.apply(r);
    }
    Ok(index)
}
