//! The one way ptekit writes numbers for people: counts with thousands separators
//! (`1,234,567`) and byte sizes as `8,720 bytes (8.5 KiB)`. Every text view (`.pte`,
//! `.bpte`, `.ptd`, XNNPACK payloads, cache files) uses these; JSON carries plain integers.

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
}
