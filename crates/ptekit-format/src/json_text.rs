//! A small ordered JSON tree for large, mostly-structural documents (`ptekit dump`),
//! written as indented text without materializing byte arrays: [`J::Bytes`] and
//! [`J::Hex`] borrow their bytes and are encoded while writing. Keys keep their order.
//!
//! Layout: objects one key per line; arrays of scalars (and byte arrays) on one line,
//! arrays of objects or arrays one element per line.

use std::borrow::Cow;
use std::io::{self, Write};

/// A JSON value whose strings and byte arrays may borrow.
#[derive(Debug, Clone)]
pub(crate) enum J<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A finite double (written in the shortest form that reads back exactly).
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// Bytes as an array of integers 0..=255.
    Bytes(&'a [u8]),
    /// Bytes as a string of lowercase hex digits.
    Hex(&'a [u8]),
    /// An array.
    Arr(Vec<J<'a>>),
    /// An object, keys in order.
    Obj(Vec<(&'static str, J<'a>)>),
}

impl<'a> J<'a> {
    /// `Some(x)` through `f`, `None` as `null`.
    pub(crate) fn opt<T>(x: Option<T>, f: impl FnOnce(T) -> J<'a>) -> J<'a> {
        x.map_or(J::Null, f)
    }

    /// A list through `f`, or `null`.
    pub(crate) fn list<T>(x: Option<&'a [T]>, f: impl FnMut(&'a T) -> J<'a>) -> J<'a> {
        J::opt(x, |v| J::Arr(v.iter().map(f).collect()))
    }

    /// A borrowed string or `null`.
    pub(crate) fn str(x: Option<&'a str>) -> J<'a> {
        J::opt(x, |s| J::Str(Cow::Borrowed(s)))
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, J::Arr(_) | J::Obj(_))
    }

    /// Writes the value as indented JSON text (no trailing newline).
    pub(crate) fn write<W: Write>(&self, out: &mut W) -> io::Result<()> {
        self.write_at(out, 0)
    }

    fn write_at<W: Write>(&self, out: &mut W, depth: usize) -> io::Result<()> {
        match self {
            J::Null => out.write_all(b"null"),
            J::Bool(b) => out.write_all(if *b { b"true" } else { b"false" }),
            J::Int(v) => write!(out, "{v}"),
            J::Uint(v) => write!(out, "{v}"),
            J::Float(v) => serde_json::to_writer(&mut *out, v).map_err(io::Error::other),
            J::Str(s) => serde_json::to_writer(&mut *out, s.as_ref()).map_err(io::Error::other),
            J::Bytes(b) => write_byte_list(out, b),
            J::Hex(b) => write_hex(out, b),
            J::Arr(items) if items.is_empty() => out.write_all(b"[]"),
            J::Arr(items) if items.iter().all(J::is_scalar) => {
                out.write_all(b"[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b", ")?;
                    }
                    v.write_at(out, depth + 1)?;
                }
                out.write_all(b"]")
            }
            J::Arr(items) => {
                out.write_all(b"[")?;
                for (i, v) in items.iter().enumerate() {
                    out.write_all(if i > 0 { b",\n" } else { b"\n" })?;
                    indent(out, depth + 1)?;
                    v.write_at(out, depth + 1)?;
                }
                out.write_all(b"\n")?;
                indent(out, depth)?;
                out.write_all(b"]")
            }
            J::Obj(fields) if fields.is_empty() => out.write_all(b"{}"),
            J::Obj(fields) => {
                out.write_all(b"{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.write_all(if i > 0 { b",\n" } else { b"\n" })?;
                    indent(out, depth + 1)?;
                    serde_json::to_writer(&mut *out, k).map_err(io::Error::other)?;
                    out.write_all(b": ")?;
                    v.write_at(out, depth + 1)?;
                }
                out.write_all(b"\n")?;
                indent(out, depth)?;
                out.write_all(b"}")
            }
        }
    }
}

fn indent<W: Write>(out: &mut W, depth: usize) -> io::Result<()> {
    for _ in 0..depth {
        out.write_all(b"  ")?;
    }
    Ok(())
}

/// Chunk size of the encoders' staging buffer.
const CHUNK: usize = 16 * 1024;

fn write_byte_list<W: Write>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK * 5);
    out.write_all(b"[")?;
    for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
        for (j, &b) in chunk.iter().enumerate() {
            if i > 0 || j > 0 {
                buf.extend_from_slice(b", ");
            }
            if b >= 100 {
                buf.push(b'0' + b / 100);
            }
            if b >= 10 {
                buf.push(b'0' + (b / 10) % 10);
            }
            buf.push(b'0' + b % 10);
        }
        out.write_all(&buf)?;
        buf.clear();
    }
    out.write_all(b"]")
}

fn write_hex<W: Write>(out: &mut W, bytes: &[u8]) -> io::Result<()> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = Vec::with_capacity(CHUNK * 2);
    out.write_all(b"\"")?;
    for chunk in bytes.chunks(CHUNK) {
        for &b in chunk {
            buf.push(DIGITS[usize::from(b >> 4)]);
            buf.push(DIGITS[usize::from(b & 15)]);
        }
        out.write_all(&buf)?;
        buf.clear();
    }
    out.write_all(b"\"")
}

/// Decodes a string of hex digits (either case); `Err(i)` names the first bad character
/// position (or the length, when it is odd).
pub(crate) fn decode_hex(s: &str) -> Result<Vec<u8>, usize> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return Err(b.len());
    }
    let digit = |i: usize| -> Result<u8, usize> {
        match b.get(i) {
            Some(c @ b'0'..=b'9') => Ok(c - b'0'),
            Some(c @ b'a'..=b'f') => Ok(c - b'a' + 10),
            Some(c @ b'A'..=b'F') => Ok(c - b'A' + 10),
            _ => Err(i),
        }
    };
    (0..b.len() / 2)
        .map(|i| Ok((digit(2 * i)? << 4) | digit(2 * i + 1)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(j: &J<'_>) -> String {
        let mut out = Vec::new();
        j.write(&mut out).unwrap_or_default();
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn layout_and_parse_back() {
        let data: Vec<u8> = (0..=255).collect();
        let j = J::Obj(vec![
            (
                "a",
                J::Arr(vec![J::Int(-1), J::Uint(u64::MAX), J::Float(0.1)]),
            ),
            ("b", J::Bytes(&data)),
            ("c", J::Hex(&data[250..])),
            (
                "d",
                J::Arr(vec![J::Obj(vec![]), J::Obj(vec![("x", J::Null)])]),
            ),
            ("e", J::Str("q\"\n".into())),
            ("f", J::Bool(true)),
        ]);
        let t = text(&j);
        assert!(
            t.starts_with("{\n  \"a\": [-1, 18446744073709551615, 0.1],\n"),
            "{t}"
        );
        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        let bytes: Vec<u64> = v["b"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        assert_eq!(bytes, (0..=255).collect::<Vec<u64>>());
        assert_eq!(v["c"], "fafbfcfdfeff");
        assert_eq!(decode_hex("fafbfcfdfeff"), Ok(data[250..].to_vec()));
        assert_eq!(decode_hex("FAx0"), Err(2));
        assert_eq!(decode_hex("abc"), Err(3));
        assert_eq!(v["d"][1]["x"], serde_json::Value::Null);
        assert_eq!(v["e"], "q\"\n");
        assert_eq!(text(&J::Bytes(&[])), "[]");
    }
}
