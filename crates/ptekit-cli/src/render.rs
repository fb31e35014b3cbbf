//! Human-readable rendering of a `.pte` [`PteSummary`] (built by the library):
//! aligned tables for a terminal.

use std::fmt::Write as _;

use ptekit_format::pte::{MethodSummary, PteSummary};

/// Formats a byte count with thousands separators (`1,234,567`).
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

/// Formats a byte count as a short human size (`2.3 MiB`).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A simple left-aligned text table.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header
                .iter()
                .map(std::string::ToString::to_string)
                .collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, indent: &str, out: &mut String) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::from(indent);
            for (c, cell) in row.iter().enumerate() {
                let w = widths.get(c).copied().unwrap_or(0);
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn counts(map: &std::collections::BTreeMap<&'static str, usize>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn indices(v: &[i32]) -> String {
    let shown: Vec<String> = v.iter().take(16).map(i32::to_string).collect();
    let more = if v.len() > 16 {
        format!(", … {} more", v.len() - 16)
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(", "))
}

/// Renders the summary of a program file as text: the file line and header, each
/// method, the segments, the named data and the size breakdown.
pub fn render_program(path: &str, s: &PteSummary) -> String {
    let mut out = String::new();
    render_file(&mut out, path, s);
    for method in &s.execution_plans {
        render_method(&mut out, method);
    }
    render_segments(&mut out, s);
    render_named_data(&mut out, s);
    render_size_breakdown(&mut out, s);
    out
}

fn render_file(out: &mut String, path: &str, s: &PteSummary) {
    let _ = writeln!(
        out,
        "{path}: ExecuTorch program ({}), schema version {}",
        s.identifier, s.version
    );
    let _ = writeln!(
        out,
        "  size      {} bytes ({})",
        thousands(s.bytes),
        human(s.bytes)
    );
    match &s.extended_header {
        Some(h) => {
            let _ = writeln!(
                out,
                "  header    eh00, {} bytes: program_size {}, segment_base_offset {}, segment_data_size {}",
                h.length,
                thousands(h.program_size),
                thousands(h.segment_base_offset),
                thousands(h.segment_data_size)
            );
        }
        None => {
            let _ = writeln!(out, "  header    none (no segment data)");
        }
    }
}

fn render_method(out: &mut String, plan: &MethodSummary) {
    let _ = writeln!(out, "\nmethod {}", plan.name);
    let _ = writeln!(out, "  inputs        {}", indices(&plan.inputs));
    let _ = writeln!(out, "  outputs       {}", indices(&plan.outputs));
    let _ = writeln!(
        out,
        "  values        {} ({})",
        plan.values,
        counts(&plan.value_kinds)
    );
    let total: usize = plan.instructions.values().sum();
    let _ = writeln!(
        out,
        "  instructions  {} in {} chain(s) ({})",
        total,
        plan.chains,
        counts(&plan.instructions)
    );
    let _ = writeln!(
        out,
        "  planned       {}",
        plan.non_const_buffer_sizes
            .iter()
            .map(|n| thousands((*n).max(0) as u64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if plan.operators.is_empty() {
        let _ = writeln!(out, "  operators     -");
    } else {
        let _ = writeln!(out, "  operators     {}", plan.operators.len());
        let mut t = Table::new(&["#", "operator"]);
        for (i, op) in plan.operators.iter().enumerate() {
            t.row(vec![i.to_string(), op.clone()]);
        }
        t.render("    ", out);
    }
    if plan.delegates.is_empty() {
        let _ = writeln!(out, "  delegates     -");
    } else {
        let _ = writeln!(out, "  delegates     {}", plan.delegates.len());
        let mut t = Table::new(&["#", "id", "stored", "bytes", "compile specs"]);
        for (i, d) in plan.delegates.iter().enumerate() {
            t.row(vec![
                i.to_string(),
                d.id.clone(),
                format!("{} {}", d.processed.location, d.processed.index),
                d.processed.size.map_or("?".into(), thousands),
                if d.compile_specs.is_empty() {
                    "-".into()
                } else {
                    d.compile_specs.join(", ")
                },
            ]);
        }
        t.render("    ", out);
    }
}

/// What segment `index` holds, as listed in the segments table.
fn segment_holds(s: &PteSummary, index: u32) -> Vec<String> {
    let mut holds = Vec::new();
    if s.constant_segment.segment_index == index && s.constant_buffer_len == 0 {
        holds.push(format!(
            "constants ({} entries)",
            s.constant_segment.offsets
        ));
    }
    for m in &s.mutable_data_segments {
        if m.segment_index == index {
            holds.push(format!("mutable state ({} entries)", m.offsets));
        }
    }
    let delegates: usize = s
        .execution_plans
        .iter()
        .flat_map(|p| &p.delegates)
        .filter(|d| d.processed.location == "segment" && d.processed.index == index)
        .count();
    if delegates > 0 {
        holds.push(format!("delegate payload (x{delegates})"));
    }
    let named = s
        .named_data
        .iter()
        .filter(|n| n.segment_index == index)
        .count();
    if named > 0 {
        holds.push(format!("named data (x{named})"));
    }
    holds
}

fn render_segments(out: &mut String, s: &PteSummary) {
    let _ = writeln!(out, "\nsegments {}", s.segments.len());
    if s.segments.is_empty() {
        return;
    }
    let mut t = Table::new(&["#", "offset", "size", "holds"]);
    for (i, seg) in s.segments.iter().enumerate() {
        let holds = segment_holds(s, i as u32);
        t.row(vec![
            i.to_string(),
            thousands(seg.offset),
            thousands(seg.size),
            if holds.is_empty() {
                "-".into()
            } else {
                holds.join(", ")
            },
        ]);
    }
    t.render("  ", out);
}

fn render_named_data(out: &mut String, s: &PteSummary) {
    if s.named_data.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nnamed data {}", s.named_data.len());
    let mut t = Table::new(&["segment", "key"]);
    for n in &s.named_data {
        t.row(vec![n.segment_index.to_string(), n.key.clone()]);
    }
    t.render("  ", out);
}

fn render_size_breakdown(out: &mut String, s: &PteSummary) {
    let b = &s.size_breakdown;
    let _ = writeln!(out, "\nsize breakdown");
    let mut t = Table::new(&["part", "bytes", "share"]);
    let share = |n: u64| {
        if s.bytes == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", n as f64 * 100.0 / s.bytes as f64)
        }
    };
    let parts: [(&str, u64); 9] = [
        ("program (flatbuffer + header)", b.program),
        ("  of which inline constants", b.inline_constants),
        ("  of which inline delegate data", b.inline_delegate_data),
        ("constant segment", b.constant_segment),
        ("mutable state", b.mutable_data),
        ("delegate segments", b.delegate_segments),
        ("named data", b.named_data),
        ("other segments", b.other_segments),
        ("padding", b.padding),
    ];
    for (name, n) in parts {
        if n > 0 || name.starts_with("program") {
            t.row(vec![name.into(), thousands(n), share(n)]);
        }
    }
    t.render("  ", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(384 << 20), "384.0 MiB");
    }
}
