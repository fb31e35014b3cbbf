//! A minimal reader and writer of NumPy `.npy` arrays and `.npz` archives (a zip of
//! `NAME.npy` members, stored or deflated), enough for test values: little-endian (or
//! byte-order-free) `bool`, `u8`, `i8`, `i16`, `u16`, `i32`, `u32`, `i64`, `u64`, `f16`
//! (kept as raw bytes), `f32` and `f64`, in C order.
//!
//! The `.npy` header (format versions 1.0, 2.0 and 3.0) is a Python dict literal such as
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 16), }`; it is parsed here by a
//! small dedicated parser. Fortran-order arrays, big-endian and structured dtypes are
//! rejected with [`NpzError::Unsupported`].

use std::io::{Cursor, Read, Write};

use crate::program::ScalarType;

/// Errors of the `.npy`/`.npz` reader and writer.
#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    /// The zip container is malformed.
    #[error("npz archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Reading a member failed.
    #[error("npz member {member}: {source}")]
    Io {
        /// Member name.
        member: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `.npy` header or body is malformed.
    #[error("{member}: malformed .npy at byte {offset}: {message}")]
    Malformed {
        /// Member (array) name, or `<npy>` for a lone array.
        member: String,
        /// Byte offset in the `.npy` data.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A valid `.npy` feature this reader does not support.
    #[error("{member}: unsupported .npy array: {message}")]
    Unsupported {
        /// Member (array) name.
        member: String,
        /// What is unsupported.
        message: String,
    },
    /// A member would expand past what is left of the caller's limit (checked against
    /// the size the archive declares, before the member is read).
    #[error(
        "npz member {member}: {size} bytes uncompressed, more than the {left} bytes left \
         of the {limit}-byte limit"
    )]
    TooLarge {
        /// Member name.
        member: String,
        /// The member's uncompressed size as declared by the archive.
        size: u64,
        /// What was left of the limit.
        left: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

/// Element type of an array (the NumPy `descr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// `|b1`
    Bool,
    /// `|u1`
    U8,
    /// `|i1`
    I8,
    /// `<i2`
    I16,
    /// `<u2`
    U16,
    /// `<i4`
    I32,
    /// `<u4`
    U32,
    /// `<i8`
    I64,
    /// `<u8`
    U64,
    /// `<f2` (raw IEEE half bytes)
    F16,
    /// `<f4`
    F32,
    /// `<f8`
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The NumPy `descr` written for this type.
    pub fn descr(self) -> &'static str {
        match self {
            DType::Bool => "|b1",
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::I16 => "<i2",
            DType::U16 => "<u2",
            DType::I32 => "<i4",
            DType::U32 => "<u4",
            DType::I64 => "<i8",
            DType::U64 => "<u8",
            DType::F16 => "<f2",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    /// Parses a `descr` (`<`, `|` or `=` byte order on a little-endian host).
    pub fn from_descr(descr: &str) -> Option<DType> {
        let (order, code) = descr.split_at_checked(1)?;
        let t = match code {
            "b1" => DType::Bool,
            "u1" => DType::U8,
            "i1" => DType::I8,
            "i2" => DType::I16,
            "u2" => DType::U16,
            "i4" => DType::I32,
            "u4" => DType::U32,
            "i8" => DType::I64,
            "u8" => DType::U64,
            "f2" => DType::F16,
            "f4" => DType::F32,
            "f8" => DType::F64,
            _ => return None,
        };
        let ok = match order {
            "<" => true,
            "|" => t.size() == 1,
            "=" => cfg!(target_endian = "little"),
            ">" => t.size() == 1,
            _ => false,
        };
        ok.then_some(t)
    }

    /// The ExecuTorch scalar type of this dtype (as `torch.from_numpy` would give).
    pub fn scalar_type(self) -> ScalarType {
        match self {
            DType::Bool => ScalarType::BOOL,
            DType::U8 => ScalarType::BYTE,
            DType::I8 => ScalarType::CHAR,
            DType::I16 => ScalarType::SHORT,
            DType::U16 => ScalarType::UINT16,
            DType::I32 => ScalarType::INT,
            DType::U32 => ScalarType::UINT32,
            DType::I64 => ScalarType::LONG,
            DType::U64 => ScalarType::UINT64,
            DType::F16 => ScalarType::HALF,
            DType::F32 => ScalarType::FLOAT,
            DType::F64 => ScalarType::DOUBLE,
        }
    }

    /// The dtype holding an ExecuTorch scalar type, if any.
    pub fn from_scalar_type(t: ScalarType) -> Option<DType> {
        Some(match t {
            ScalarType::BOOL => DType::Bool,
            ScalarType::BYTE => DType::U8,
            ScalarType::CHAR => DType::I8,
            ScalarType::SHORT => DType::I16,
            ScalarType::UINT16 => DType::U16,
            ScalarType::INT => DType::I32,
            ScalarType::UINT32 => DType::U32,
            ScalarType::LONG => DType::I64,
            ScalarType::UINT64 => DType::U64,
            ScalarType::HALF => DType::F16,
            ScalarType::FLOAT => DType::F32,
            ScalarType::DOUBLE => DType::F64,
            _ => return None,
        })
    }
}

/// An array: element type, shape and the C-order little-endian element bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray {
    /// Element type.
    pub dtype: DType,
    /// Shape (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// `product(shape) * dtype.size()` bytes, C order, little-endian.
    pub data: Vec<u8>,
}

impl NpyArray {
    /// An array, checking that `data` has the size the shape and dtype imply.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, NpzError> {
        let want = expected_len(dtype, &shape);
        if want != Some(data.len()) {
            return Err(NpzError::Malformed {
                member: "<array>".into(),
                offset: 0,
                message: format!(
                    "{} data bytes for shape {:?} of {}",
                    data.len(),
                    shape,
                    dtype.descr()
                ),
            });
        }
        Ok(NpyArray { dtype, shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn expected_len(dtype: DType, shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
}

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The most header bytes a `.npy` may have (NumPy writes well under 1 KiB; its own reader
/// refuses more than 10,000 by default).
const MAX_HEADER_LEN: usize = 64 << 10;

/// What the header of a `.npy` says, before its data is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Shape (empty for a 0-d array).
    pub shape: Vec<usize>,
    /// Bytes before the data (magic, version, header length, header).
    pub data_offset: usize,
    /// Bytes of data the dtype and shape imply.
    pub data_len: usize,
}

/// Reads the header of a `.npy` from `r` (which is left at the first data byte).
/// `member` names the array in errors; offsets are from the start of the `.npy`.
pub fn read_npy_header(r: &mut impl Read, member: &str) -> Result<NpyHeader, NpzError> {
    let bad = |offset: usize, message: String| NpzError::Malformed {
        member: member.to_owned(),
        offset,
        message,
    };
    let mut fill = |buf: &mut [u8], offset: usize, what: &str| {
        r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad(offset, format!("truncated {what}")),
            _ => NpzError::Io {
                member: member.to_owned(),
                source: e,
            },
        })
    };
    let mut lead = [0u8; 8];
    fill(&mut lead, 0, "magic and version")?;
    if lead.get(..6) != Some(&MAGIC[..]) {
        return Err(bad(0, "missing \\x93NUMPY magic".into()));
    }
    let len_bytes = match lead[6] {
        1 => 2usize,
        2 | 3 => 4,
        v => {
            return Err(NpzError::Unsupported {
                member: member.to_owned(),
                message: format!("format version {v}"),
            })
        }
    };
    let mut len_field = [0u8; 4];
    fill(&mut len_field[..len_bytes], 8, "header length")?;
    let header_len = len_field[..len_bytes]
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let header_start = 8 + len_bytes;
    if header_len > MAX_HEADER_LEN {
        return Err(bad(
            8,
            format!("header of {header_len} bytes (more than {MAX_HEADER_LEN})"),
        ));
    }
    let mut header = vec![0u8; header_len];
    fill(&mut header, header_start, "header")?;
    let header = std::str::from_utf8(&header)
        .map_err(|e| bad(header_start, format!("header is not text: {e}")))?;
    let h = parse_header(header).map_err(|m| bad(header_start, m))?;
    let dtype = DType::from_descr(&h.descr).ok_or_else(|| NpzError::Unsupported {
        member: member.to_owned(),
        message: format!("dtype {:?}", h.descr),
    })?;
    if h.fortran_order && h.shape.len() > 1 {
        return Err(NpzError::Unsupported {
            member: member.to_owned(),
            message: "Fortran-order arrays (save a C-contiguous copy)".into(),
        });
    }
    let data_len = expected_len(dtype, &h.shape)
        .ok_or_else(|| bad(header_start, format!("shape {:?} overflows", h.shape)))?;
    Ok(NpyHeader {
        dtype,
        shape: h.shape,
        data_offset: header_start + header_len,
        data_len,
    })
}

impl NpyHeader {
    /// The array with `data`, which must be [`NpyHeader::data_len`] bytes (else the
    /// `.npy` of `member` is malformed).
    pub fn into_array(self, data: Vec<u8>, member: &str) -> Result<NpyArray, NpzError> {
        if data.len() != self.data_len {
            return Err(NpzError::Malformed {
                member: member.to_owned(),
                offset: self.data_offset,
                message: format!(
                    "{} data bytes, expected {} for shape {:?} of {}",
                    data.len(),
                    self.data_len,
                    self.shape,
                    self.dtype.descr()
                ),
            });
        }
        Ok(NpyArray {
            dtype: self.dtype,
            shape: self.shape,
            data,
        })
    }
}

/// Parses one `.npy` file. `member` names it in errors.
pub fn parse_npy(bytes: &[u8], member: &str) -> Result<NpyArray, NpzError> {
    let h = read_npy_header(&mut Cursor::new(bytes), member)?;
    let data = bytes.get(h.data_offset..).unwrap_or(&[]);
    h.into_array(data.to_vec(), member)
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> Result<Header, String> {
    let mut p = Lexer {
        s: text.trim_end().as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(format!("unexpected header key {other:?}")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    Ok(Header {
        descr: descr.ok_or("header lacks 'descr'")?,
        fortran_order: fortran.ok_or("header lacks 'fortran_order'")?,
        shape: shape.ok_or("header lacks 'shape'")?,
    })
}

struct Lexer<'s> {
    s: &'s [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at header byte {}",
                char::from(c),
                self.i
            ))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        let Some(q @ (b'\'' | b'"')) = self.peek() else {
            return Err(format!("expected a string at header byte {}", self.i));
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == q {
                let s = self.s.get(start..self.i).unwrap_or(&[]);
                self.i += 1;
                return Ok(String::from_utf8_lossy(s).into_owned());
            }
            if c == b'\\' {
                return Err("escapes in header strings are not supported".into());
            }
            self.i += 1;
        }
        Err("unterminated string in header".into())
    }
    fn word(&mut self) -> &[u8] {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or(&[])
    }
    fn boolean(&mut self) -> Result<bool, String> {
        match self.word() {
            b"True" => Ok(true),
            b"False" => Ok(false),
            w => Err(format!(
                "expected True or False, found {:?}",
                String::from_utf8_lossy(w)
            )),
        }
    }
    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(out);
            }
            let w = self.word();
            let n = std::str::from_utf8(w)
                .ok()
                .map(|w| w.trim_end_matches('L'))
                .and_then(|w| w.parse::<usize>().ok())
                .ok_or_else(|| format!("bad dimension {:?}", String::from_utf8_lossy(w)))?;
            out.push(n);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}

/// Encodes an array as `.npy` (format 1.0, header padded to a multiple of 64 bytes with
/// a final newline, as NumPy writes it).
pub fn write_npy(a: &NpyArray) -> Vec<u8> {
    let shape = match a.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        a.dtype.descr(),
        shape
    );
    // magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + a.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    let hlen = u16::try_from(header.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&a.data);
    out
}

/// Default limit of [`read_npz`] on the expanded size of an archive: 4 GiB.
pub const DEFAULT_MAX_NPZ_BYTES: u64 = 4 << 30;

/// Reads every `NAME.npy` member of an `.npz` archive, in archive order, as
/// `(NAME, array)`. Members not ending in `.npy` are ignored.
pub fn read_npz(bytes: &[u8]) -> Result<Vec<(String, NpyArray)>, NpzError> {
    read_npz_with_limit(bytes, DEFAULT_MAX_NPZ_BYTES)
}

/// [`read_npz`] with a limit on the total expanded size.
pub fn read_npz_with_limit(bytes: &[u8], limit: u64) -> Result<Vec<(String, NpyArray)>, NpzError> {
    let mut left = limit;
    read_npz_checked(bytes, limit, &mut left, |_, _| Ok::<_, NpzError>(true))
}

/// Reads the `NAME.npy` members of an `.npz` archive that `check` accepts, bounding
/// memory by what the archive declares before anything is allocated:
///
/// 1. its `.npy` header is read (at most 64 KiB) and must imply exactly the
///    uncompressed size the archive declares for the member;
/// 2. `check(NAME, header)` sees the dtype and shape: `Ok(false)` skips the member
///    unread, an error stops;
/// 3. a member whose declared size exceeds `left` (what is left of `limit`, shared by
///    the calls of one job) is [`NpzError::TooLarge`];
/// 4. only then is the data read, exactly the size the header implies (an archive
///    whose data runs longer or shorter than it declares is malformed).
pub fn read_npz_checked<E: From<NpzError>>(
    bytes: &[u8],
    limit: u64,
    left: &mut u64,
    mut check: impl FnMut(&str, &NpyHeader) -> Result<bool, E>,
) -> Result<Vec<(String, NpyArray)>, E> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(NpzError::from)?;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(NpzError::from)?;
        let name = file.name().to_owned();
        let Some(stem) = name.strip_suffix(".npy") else {
            continue;
        };
        let size = file.size();
        let header = read_npy_header(&mut file, stem)?;
        let total = u64::try_from(header.data_offset)
            .ok()
            .zip(u64::try_from(header.data_len).ok())
            .and_then(|(a, b)| a.checked_add(b));
        if total != Some(size) {
            return Err(NpzError::Malformed {
                member: stem.to_owned(),
                offset: header.data_offset,
                message: format!(
                    "the archive declares {size} bytes, the header implies {} of data after \
                     {} header bytes",
                    header.data_len, header.data_offset
                ),
            }
            .into());
        }
        if !check(stem, &header)? {
            continue;
        }
        if size > *left {
            return Err(NpzError::TooLarge {
                member: name,
                size,
                left: *left,
                limit,
            }
            .into());
        }
        let mut data = Vec::with_capacity(header.data_len);
        let want = u64::try_from(header.data_len).unwrap_or(u64::MAX);
        (&mut file)
            .take(want.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|source| NpzError::Io {
                member: name.clone(),
                source,
            })?;
        *left -= size;
        let array = header.into_array(data, stem)?;
        out.push((stem.to_owned(), array));
    }
    Ok(out)
}

/// Writes an `.npz` archive (members stored uncompressed, like `numpy.savez`).
pub fn write_npz(arrays: &[(String, NpyArray)]) -> Result<Vec<u8>, NpzError> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(arrays.iter().any(|(_, a)| a.data.len() > (1 << 31)));
    for (name, a) in arrays {
        let member = format!("{name}.npy");
        w.start_file(member.as_str(), options)?;
        w.write_all(&write_npy(a)).map_err(|source| NpzError::Io {
            member: member.clone(),
            source,
        })?;
    }
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 16), }   \n")
            .expect("parse");
        assert_eq!(
            (h.descr.as_str(), h.fortran_order, h.shape),
            ("<f4", false, vec![2, 16])
        );
        let h =
            parse_header("{'descr': '|b1', 'fortran_order': False, 'shape': (), }").expect("0-d");
        assert!(h.shape.is_empty());
        let h =
            parse_header("{'descr': '<i8', 'fortran_order': True, 'shape': (5,)}").expect("1-d");
        assert_eq!(h.shape, vec![5]);
        assert!(parse_header("{'descr': '<i8', 'shape': (5,)}").is_err());
        assert!(parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (x,)}").is_err());
    }

    #[test]
    fn npz_round_trip() {
        let a = NpyArray::new(DType::I16, vec![2, 2], vec![1, 0, 2, 0, 3, 0, 4, 0]).expect("a");
        let b = NpyArray::new(DType::Bool, vec![], vec![1]).expect("b");
        let arrays = vec![("in0".to_string(), a), ("out0".to_string(), b)];
        let bytes = write_npz(&arrays).expect("write");
        assert_eq!(read_npz(&bytes).expect("read"), arrays);
        assert!(matches!(
            read_npz_with_limit(&bytes, 100),
            Err(NpzError::TooLarge { .. })
        ));
    }

    #[test]
    fn declared_sizes_bound_what_is_read() {
        let a = NpyArray::new(DType::F32, vec![4], vec![0; 16]).expect("a");
        let b = NpyArray::new(DType::U8, vec![3], vec![1, 2, 3]).expect("b");
        let bytes = write_npz(&[("a".to_string(), a.clone()), ("b".to_string(), b)]).expect("npz");
        let a_len = write_npy(&a).len() as u64;
        // Only what the check accepts is read, and only that counts against the limit.
        let mut left = a_len;
        let got = read_npz_checked(&bytes, a_len, &mut left, |name, h| {
            assert_eq!(h.data_len, if name == "a" { 16 } else { 3 });
            Ok::<_, NpzError>(name == "a")
        })
        .expect("read");
        assert_eq!(got, vec![("a".to_string(), a)]);
        assert_eq!(left, 0);
        // A member larger than what is left fails before it is read.
        let mut left = a_len - 1;
        let err = read_npz_checked(&bytes, 100, &mut left, |_, _| Ok::<_, NpzError>(true))
            .expect_err("too large");
        assert!(
            matches!(&err, NpzError::TooLarge { member, size, left: l, limit: 100 }
                if member == "a.npy" && *size == a_len && *l == a_len - 1),
            "{err}"
        );
    }

    #[test]
    fn a_header_that_disagrees_with_the_archive_is_malformed() {
        // The header claims 1000 floats, the member holds 4 bytes of data.
        let one = NpyArray::new(DType::F32, vec![1], vec![0; 4]).expect("one");
        let npy = write_npy(&one);
        let text = std::str::from_utf8(&npy[10..]).expect("text");
        let lying = text.replacen("(1,)", "(1000,)", 1);
        let mut bad = npy[..10].to_vec();
        bad.extend_from_slice(lying.as_bytes());
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("a.npy", zip::write::SimpleFileOptions::default())
            .expect("member");
        w.write_all(&bad).expect("write");
        let bytes = w.finish().expect("finish").into_inner();
        let err = read_npz(&bytes).expect_err("lying header");
        assert!(err.to_string().contains("the archive declares"), "{err}");
    }

    #[test]
    fn truncated_npy_is_an_error() {
        let a = NpyArray::new(DType::F32, vec![3], vec![0; 12]).expect("a");
        let bytes = write_npy(&a);
        for cut in [0, 5, 9, 20, bytes.len() - 1] {
            assert!(parse_npy(&bytes[..cut], "x").is_err(), "cut {cut}");
        }
    }
}
