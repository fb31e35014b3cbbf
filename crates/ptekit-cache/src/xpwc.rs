//! Reader for the reference runtime's packed-weight cache files (`XPWC` v2).
//!
//! Layout, as written by ExecuTorch's XNNPACK backend: packed data regions at
//! page-aligned offsets, then an index, then a 20-byte footer at the very end:
//!
//! ```text
//! index entry: name_len u32 | name bytes | file_offset u64 | data_size u64 | seed u32
//! footer:      index_start u64 | entry_count u32 | magic u32 = 0x58505743 | version u32 = 2
//! ```
//!
//! All integers little-endian. Unlike the reference loader, this reader
//! rejects a short or torn index (fewer bytes than `entry_count` entries, or
//! bytes left between the last entry and the footer) and overlapping entries.

use crate::error::FormatError;

/// `XPWC` magic as stored (little-endian u32 0x58505743).
pub const XPWC_MAGIC: u32 = 0x5850_5743;
/// The only supported version.
pub const XPWC_VERSION: u32 = 2;
/// Footer length.
pub const FOOTER_LEN: u64 = 20;

/// One index entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XpwcEntry {
    /// Weight name (the reference concatenates kernel and bias names).
    pub name: String,
    /// File offset of the packed bytes.
    pub offset: u64,
    /// Packed size.
    pub size: u64,
    /// XNNPACK seed.
    pub seed: u32,
}

/// A parsed `XPWC` file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XpwcFile {
    /// File length.
    pub file_bytes: u64,
    /// Offset of the index.
    pub index_start: u64,
    /// Entries.
    pub entries: Vec<XpwcEntry>,
    /// Packed bytes of the entries.
    pub live_bytes: u64,
    /// Bytes of the data region not covered by an entry (orphaned packs,
    /// old trailers, page padding).
    pub dead_bytes: u64,
    /// Of `dead_bytes`, the page-rounding waste after each entry (assuming
    /// 4 KiB pages, one mapping per entry).
    pub page_padding_bytes: u64,
    /// Index plus footer.
    pub index_bytes: u64,
}

/// The bytes of an `XPWC` file that the reader looks at: all of them, or only the tail
/// from file offset `base` (the index and the footer are all [`parse`] reads).
#[derive(Clone, Copy)]
struct Image<'b> {
    tail: &'b [u8],
    base: u64,
    len: u64,
}

impl<'b> Image<'b> {
    fn whole(b: &'b [u8]) -> Self {
        Image {
            tail: b,
            base: 0,
            len: b.len() as u64,
        }
    }

    /// `n` bytes at file offset `at`, if they lie in the tail.
    fn get(&self, at: u64, n: u64) -> Option<&'b [u8]> {
        let start = usize::try_from(at.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(usize::try_from(n).ok()?)?;
        self.tail.get(start..end)
    }
}

fn u32_at(b: Image<'_>, at: u64) -> Option<u32> {
    b.get(at, 4)?.try_into().ok().map(u32::from_le_bytes)
}

fn u64_at(b: Image<'_>, at: u64) -> Option<u64> {
    b.get(at, 8)?.try_into().ok().map(u64::from_le_bytes)
}

/// Whether the bytes end with an `XPWC` footer magic.
pub fn looks_like_xpwc(b: &[u8]) -> bool {
    let n = b.len() as u64;
    n >= FOOTER_LEN && u32_at(Image::whole(b), n - 8) == Some(XPWC_MAGIC)
}

/// Parses and validates a whole `XPWC` file image.
pub fn parse(b: &[u8]) -> Result<XpwcFile, FormatError> {
    parse_image(Image::whole(b))
}

/// [`parse`] from the tail of a file of `file_len` bytes: `tail` holds its bytes from
/// file offset `base` to the end (the file's index and footer; see [`tail_start`]), so
/// a file can be read with `pread` instead of mapping it (a file that shrinks meanwhile
/// gives an error, never `SIGBUS`). A tail that starts after the index is an error
/// about the index.
pub fn parse_tail(tail: &[u8], base: u64, file_len: u64) -> Result<XpwcFile, FormatError> {
    parse_image(Image {
        tail,
        base,
        len: file_len,
    })
}

/// Where the tail that [`parse_tail`] needs starts, from the 20-byte `footer` of a file
/// of `file_len` bytes: the index start (or the footer, if that lies past it).
pub fn tail_start(footer: &[u8; FOOTER_LEN as usize], file_len: u64) -> u64 {
    let mut index_start = [0u8; 8];
    index_start.copy_from_slice(&footer[..8]);
    let footer_at = file_len.saturating_sub(FOOTER_LEN);
    u64::from_le_bytes(index_start).min(footer_at)
}

fn parse_image(b: Image<'_>) -> Result<XpwcFile, FormatError> {
    let n = b.len;
    if n < FOOTER_LEN {
        return Err(FormatError::Truncated {
            what: "XPWC footer",
            offset: 0,
            need: FOOTER_LEN,
            have: n,
        });
    }
    let f = n - FOOTER_LEN;
    let trunc = |what: &'static str, offset: u64, need: u64| FormatError::Truncated {
        what,
        offset,
        need,
        have: n.saturating_sub(offset),
    };
    let index_start = u64_at(b, f).ok_or_else(|| trunc("footer.index_start", f, 8))?;
    let count = u32_at(b, f + 8).ok_or_else(|| trunc("footer.entry_count", f + 8, 4))?;
    let magic = u32_at(b, f + 12).ok_or_else(|| trunc("footer.magic", f + 12, 4))?;
    let version = u32_at(b, f + 16).ok_or_else(|| trunc("footer.version", f + 16, 4))?;
    if magic != XPWC_MAGIC {
        return Err(FormatError::BadMagic {
            offset: f + 12,
            hint: "XPWC footer",
        });
    }
    if version != XPWC_VERSION {
        return Err(FormatError::Version { found: version });
    }
    if index_start > f {
        return Err(FormatError::Field {
            field: "footer.index_start",
            offset: f,
            reason: format!("{index_start} is past the footer at {f}"),
        });
    }
    let mut cur = index_start;
    let mut entries = Vec::new();
    for i in 0..count {
        let name_len =
            u32_at(b, cur)
                .filter(|_| cur + 4 <= f)
                .ok_or_else(|| FormatError::Field {
                    field: "index.entry",
                    offset: cur,
                    reason: format!(
                        "index ends after {i} of {count} entries (short or torn index)"
                    ),
                })? as u64;
        let body = 4u64
            .checked_add(name_len)
            .and_then(|v| v.checked_add(20))
            .unwrap_or(u64::MAX);
        if cur.saturating_add(body) > f {
            return Err(FormatError::Field {
                field: "index.entry",
                offset: cur,
                reason: format!(
                    "entry {i} of {count} (name_len {name_len}) runs into the footer (short or torn index)"
                ),
            });
        }
        let name = String::from_utf8_lossy(
            b.get(cur + 4, name_len)
                .ok_or_else(|| trunc("index.name", cur + 4, name_len))?,
        )
        .into_owned();
        let p = cur + 4 + name_len;
        let offset = u64_at(b, p).ok_or_else(|| trunc("index.file_offset", p, 8))?;
        let size = u64_at(b, p + 8).ok_or_else(|| trunc("index.data_size", p + 8, 8))?;
        let seed = u32_at(b, p + 16).ok_or_else(|| trunc("index.seed", p + 16, 4))?;
        if offset >= index_start || size > index_start - offset {
            return Err(FormatError::Field {
                field: "index.entry.bounds",
                offset: p,
                reason: format!(
                    "entry {i} '{name}' at {offset}+{size} is outside the data region [0, {index_start})"
                ),
            });
        }
        entries.push(XpwcEntry {
            name,
            offset,
            size,
            seed,
        });
        cur = p + 20;
    }
    if cur != f {
        return Err(FormatError::Field {
            field: "index",
            offset: cur,
            reason: format!(
                "{} bytes between the last of {count} entries and the footer",
                f - cur
            ),
        });
    }
    let mut sorted: Vec<&XpwcEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.offset);
    for w in sorted.windows(2) {
        if let [a, b2] = w {
            if a.offset + a.size > b2.offset {
                return Err(FormatError::Field {
                    field: "index.entry.bounds",
                    offset: index_start,
                    reason: format!("entries '{}' and '{}' overlap", a.name, b2.name),
                });
            }
        }
    }
    let live: u64 = entries.iter().map(|e| e.size).sum();
    let padding: u64 = sorted
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let rounded = e.size.div_ceil(4096) * 4096;
            let limit = sorted
                .get(i + 1)
                .map(|n| n.offset)
                .unwrap_or(index_start)
                .saturating_sub(e.offset);
            rounded.min(limit).saturating_sub(e.size)
        })
        .sum();
    Ok(XpwcFile {
        file_bytes: n,
        index_start,
        live_bytes: live,
        dead_bytes: index_start - live,
        page_padding_bytes: padding,
        index_bytes: n - index_start,
        entries,
    })
}

/// Builds an `XPWC` v2 image: each entry's bytes at a page-aligned offset,
/// then the index and footer (the reference writer's layout). `orphans`
/// inserts that many unreferenced pages first, as left by re-packs.
pub fn build(entries: &[(String, Vec<u8>, u32)], orphans: usize) -> Vec<u8> {
    let page = 4096usize;
    let mut out = vec![0xAAu8; orphans * page];
    let mut idx = Vec::new();
    let mut count = 0u32;
    for (name, data, seed) in entries {
        let off = out.len().div_ceil(page) * page;
        out.resize(off, 0);
        out.extend_from_slice(data);
        let end = out.len().div_ceil(page) * page;
        out.resize(end, 0);
        idx.extend_from_slice(&(name.len() as u32).to_le_bytes());
        idx.extend_from_slice(name.as_bytes());
        idx.extend_from_slice(&(off as u64).to_le_bytes());
        idx.extend_from_slice(&(data.len() as u64).to_le_bytes());
        idx.extend_from_slice(&seed.to_le_bytes());
        count += 1;
    }
    let index_start = out.len() as u64;
    out.extend_from_slice(&idx);
    out.extend_from_slice(&index_start.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&XPWC_MAGIC.to_le_bytes());
    out.extend_from_slice(&XPWC_VERSION.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_parses_like_the_whole_file() {
        let img = build(
            &[("a".into(), vec![1; 5000], 1), ("b".into(), vec![2; 10], 2)],
            1,
        );
        let len = img.len() as u64;
        let mut footer = [0u8; FOOTER_LEN as usize];
        footer.copy_from_slice(&img[img.len() - FOOTER_LEN as usize..]);
        let base = tail_start(&footer, len);
        let whole = parse(&img).expect("whole");
        assert_eq!(base, whole.index_start);
        let tail = &img[usize::try_from(base).expect("base")..];
        assert_eq!(parse_tail(tail, base, len).expect("tail"), whole);
        // A tail that starts after the index, or is cut short, is an error.
        assert!(parse_tail(&tail[1..], base + 1, len).is_err());
        assert!(parse_tail(&tail[..tail.len() - 1], base, len).is_err());
    }
}
