//! The one way ptekit writes numbers and names for people: counts with thousands
//! separators (`1,234,567`), byte sizes as `8,720 bytes (8.5 KiB)`, and names and keys
//! read from a file with their control characters escaped (`\x1d`). Every text view
//! (`.pte`, `.bpte`, `.ptd`, XNNPACK payloads, cache files, diffs) uses these; JSON
//! carries plain integers and strings in JSON's own escaping.

use std::borrow::Cow;
use std::fmt::Write as _;

/// An integer with `,` between groups of three digits: `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A byte count in binary units with one decimal (`1.5 KiB`, `384.0 MiB`); below 1 KiB
/// the exact count (`10 B`).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scaled = n as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

/// A byte size in prose: `8,720 bytes (8.5 KiB)`, or `512 bytes` below 1 KiB (where the
/// short form would repeat the number).
pub fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{} bytes ({})", thousands(n), human(n))
    }
}

/// `part` as a percentage of `whole` with one decimal (`32.1%`), `-` when `whole` is 0.
pub fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// A one-line size breakdown: `size breakdown: program 4,880 (86.2%), test data 320
/// (5.6%); total 5,200` (shares of `total`).
pub fn breakdown_line(parts: &[(&str, u64)], total: u64) -> String {
    let shown: Vec<String> = parts
        .iter()
        .map(|&(name, n)| format!("{name} {} ({})", thousands(n), share(n, total)))
        .collect();
    format!(
        "size breakdown: {}; total {}",
        shown.join(", "),
        thousands(total)
    )
}

/// Whether `c` is written escaped by [`printable`]: control characters, and the
/// invisible ones that reorder or hide text on a terminal (zero-width characters,
/// bidirectional embeddings, overrides and isolates, the byte order mark).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// A name or key read from a file (method, operator, tensor, named-data or cache entry
/// name) as text for people: printable characters as they are, `\` as `\\`, the
/// characters [`hidden`] names escaped: `\x1d` below U+0080, `\u{202e}` above. The
/// result says exactly which characters the name holds, and a name cannot move the
/// cursor, clear the screen or reorder the rest of the line.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || hidden(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if hidden(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`printable`] in double quotes, a `"` inside written `\"`: a name where the text
/// around it could be mistaken for part of it (`"a b": only in A`).
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", printable(s).replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn short_sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(384 << 20), "384.0 MiB");
    }

    #[test]
    fn prose_sizes() {
        assert_eq!(bytes(16), "16 bytes");
        assert_eq!(bytes(8720), "8,720 bytes (8.5 KiB)");
        assert_eq!(share(2800, 8720), "32.1%");
        assert_eq!(share(1, 0), "-");
        assert_eq!(
            breakdown_line(&[("a", 1000), ("b", 3000)], 4000),
            "size breakdown: a 1,000 (25.0%), b 3,000 (75.0%); total 4,000"
        );
    }

    #[test]
    fn names_with_hidden_characters() {
        assert!(matches!(printable("layer1.weight"), Cow::Borrowed(_)));
        assert_eq!(printable("5\u{1d}59"), "5\\x1d59");
        assert_eq!(printable("a\tb\u{7f}"), "a\\x09b\\x7f");
        assert_eq!(printable("x\u{85}y\u{202e}z"), "x\\u{85}y\\u{202e}z");
        assert_eq!(printable("C:\\w"), "C:\\\\w");
        assert_eq!(printable("größe ∑"), "größe ∑");
        assert_eq!(quoted("say \"hi\"\n"), "\"say \\\"hi\\\"\\x0a\"");
    }
}
