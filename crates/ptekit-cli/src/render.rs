//! Human-readable rendering of a `.pte` [`PteSummary`] (built by the library):
//! aligned tables for a terminal.

use std::fmt::Write as _;

use ptekit_format::pte::{
    ConstantValue, ExternalData, MethodSummary, PteSummary, TensorMeta, TopSummary,
};

pub use ptekit_format::units::{bytes, human, printable, share, thousands};

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

    /// Writes the rows as aligned columns; every cell through [`printable`] (cells
    /// hold names and keys read from the file).
    fn render(&self, indent: &str, out: &mut String) {
        let rows: Vec<Vec<std::borrow::Cow<'_, str>>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| printable(c)).collect())
            .collect();
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                rows.iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &rows {
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

/// Renders the summary of a program file as text: the file line and header, each
/// method, delegation over all methods, external data, the segments, the named data, the
/// size breakdown and, when asked for, the largest items.
pub fn render_program(path: &str, s: &PteSummary) -> String {
    let mut out = String::new();
    render_file(&mut out, path, s);
    for method in &s.execution_plans {
        render_method(&mut out, method);
    }
    render_delegation(&mut out, s);
    render_external(&mut out, &s.external_data);
    render_segments(&mut out, s);
    render_named_data(&mut out, s);
    render_size_breakdown(&mut out, s);
    if let Some(top) = &s.top {
        render_top(&mut out, top);
    }
    out
}

fn render_file(out: &mut String, path: &str, s: &PteSummary) {
    let _ = writeln!(
        out,
        "{path}: ExecuTorch program ({}), schema version {}",
        s.identifier, s.version
    );
    let _ = writeln!(out, "  size      {}", bytes(s.bytes));
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

fn list<T: ToString>(v: &[T]) -> String {
    let parts: Vec<String> = v.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// The inputs or outputs of a method as a table (`label` is `inputs` or `outputs`).
fn render_io(out: &mut String, label: &str, indices: &[i32], tensors: &[Option<TensorMeta>]) {
    if indices.is_empty() {
        let _ = writeln!(out, "  {label:<13} -");
        return;
    }
    let _ = writeln!(out, "  {label:<13} {}", indices.len());
    let mut t = Table::new(&[
        "#",
        "value",
        "dtype",
        "sizes",
        "dim order",
        "planned",
        "bytes",
    ]);
    for (i, &value) in indices.iter().enumerate() {
        match tensors.get(i).and_then(Option::as_ref) {
            Some(m) => {
                let sizes = match m.shape_dynamism.as_str() {
                    "STATIC" => list(&m.sizes),
                    "DYNAMIC_BOUND" => format!("{} (upper bounds)", list(&m.sizes)),
                    other => format!("{} ({other})", list(&m.sizes)),
                };
                t.row(vec![
                    i.to_string(),
                    value.to_string(),
                    m.dtype.clone(),
                    sizes,
                    list(&m.dim_order),
                    if m.memory_planned { "yes" } else { "no" }.into(),
                    m.nbytes.map_or("?".into(), thousands),
                ]);
            }
            None => t.row(vec![
                i.to_string(),
                value.to_string(),
                "(not a tensor)".into(),
            ]),
        }
    }
    t.render("    ", out);
}

/// `n of total (share)`.
fn of(n: usize, total: usize) -> String {
    format!("{n} of {total} ({})", share(n as u64, total as u64))
}

fn render_method(out: &mut String, plan: &MethodSummary) {
    let _ = writeln!(out, "\nmethod {}", printable(&plan.name));
    if let Some(values) = &plan.constant_values {
        let shown: Vec<String> = values.iter().map(ConstantValue::render).collect();
        let _ = writeln!(
            out,
            "  constant      {} (no inputs, no instructions)",
            shown.join(", ")
        );
        return;
    }
    render_io(out, "inputs", &plan.inputs, &plan.input_tensors);
    render_io(out, "outputs", &plan.outputs, &plan.output_tensors);
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
    let d = &plan.delegation;
    if d.delegate_calls > 0 {
        let _ = writeln!(
            out,
            "  delegated     {} calls; constants: {} in delegate payloads, {} passed to delegates, {} to kernels",
            of(d.delegate_calls, d.delegate_calls + d.kernel_calls),
            thousands(d.delegate_payload_bytes),
            thousands(d.delegate_constant_bytes),
            thousands(d.kernel_constant_bytes)
        );
    }
    let _ = writeln!(
        out,
        "  planned       {}",
        plan.non_const_buffer_sizes
            .iter()
            .map(|n| thousands(u64::try_from(*n).unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if plan.operators.is_empty() {
        let _ = writeln!(out, "  operators     -");
    } else {
        let calls: usize = plan.operator_calls.values().sum();
        let _ = writeln!(
            out,
            "  operators     {}, {calls} kernel call(s)",
            plan.operators.len()
        );
        let mut t = Table::new(&["#", "operator", "calls"]);
        for (i, op) in plan.operators.iter().enumerate() {
            let n = plan.operator_calls.get(op).copied().unwrap_or(0);
            t.row(vec![i.to_string(), op.clone(), n.to_string()]);
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

/// Delegation over all methods (only for programs with delegates).
fn render_delegation(out: &mut String, s: &PteSummary) {
    let d = &s.delegation;
    if d.delegate_calls == 0 && s.execution_plans.iter().all(|m| m.delegates.is_empty()) {
        return;
    }
    let _ = writeln!(out, "\ndelegation (all methods)");
    let _ = writeln!(
        out,
        "  calls           {} delegated",
        of(d.delegate_calls, d.delegate_calls + d.kernel_calls)
    );
    let named = s.size_breakdown.named_data;
    let delegated = d
        .delegate_payload_bytes
        .saturating_add(d.delegate_constant_bytes)
        .saturating_add(named);
    let all = delegated.saturating_add(d.kernel_constant_bytes);
    let _ = writeln!(
        out,
        "  constant bytes  {} in delegates ({} payloads, {} named data, {} arguments), {} for kernels",
        of_bytes(delegated, all),
        thousands(d.delegate_payload_bytes),
        thousands(named),
        thousands(d.delegate_constant_bytes),
        thousands(d.kernel_constant_bytes)
    );
}

/// `n of total (share)` for byte counts.
fn of_bytes(n: u64, total: u64) -> String {
    format!(
        "{} of {} ({})",
        thousands(n),
        thousands(total),
        share(n, total)
    )
}

fn render_external(out: &mut String, x: &ExternalData) {
    if x.keys.is_empty() && x.check.is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "\nexternal data {} key(s) (expected from a .ptd)",
        x.keys.len()
    );
    let checked = x.check.is_some();
    let mut header = vec!["key", "kind", "dtype", "sizes", "bytes", "methods"];
    if checked {
        header.push("in data file");
    }
    let mut t = Table::new(&header);
    for k in &x.keys {
        let mut row = vec![
            k.key.clone(),
            k.kind.to_string(),
            k.dtype.clone().unwrap_or_else(|| "-".into()),
            k.sizes.as_deref().map_or("-".into(), list),
            k.bytes.map_or("?".into(), thousands),
            k.methods.join(", "),
        ];
        if checked {
            row.push(match (k.found, &k.problem) {
                (Some(true), None) => "yes".into(),
                (Some(true), Some(p)) => format!("does not fit: {p}"),
                _ => "MISSING".into(),
            });
        }
        t.row(row);
    }
    if !x.keys.is_empty() {
        t.render("  ", out);
    }
    if let Some(c) = &x.check {
        let verdict = if c.satisfied {
            format!("has all {} key(s)", x.keys.len())
        } else {
            format!(
                "does NOT satisfy the program: {} missing, {} not fitting",
                c.missing.len(),
                c.mismatched.len()
            )
        };
        let unused = if c.unused.is_empty() {
            String::new()
        } else {
            format!("; {} other key(s) in the file", c.unused.len())
        };
        let _ = writeln!(out, "  {}: {verdict}{unused}", c.file);
    }
}

fn render_top(out: &mut String, top: &TopSummary) {
    let _ = writeln!(out, "\nlargest tensors (top {})", top.limit);
    if top.tensors.is_empty() {
        let _ = writeln!(out, "  -");
    } else {
        let mut t = Table::new(&[
            "bytes", "dtype", "sizes", "stored", "method", "value", "used by",
        ]);
        for x in &top.tensors {
            let stored = match (&x.key, x.index) {
                (Some(k), _) if x.stored == "external" => format!("external {k}"),
                (_, Some(i)) => format!("{} {i}", x.stored.replace('_', " ")),
                _ => x.stored.replace('_', " "),
            };
            let shared = if x.values > 1 {
                format!(" (+{} more)", x.values - 1)
            } else {
                String::new()
            };
            t.row(vec![
                x.bytes.map_or("?".into(), thousands),
                x.dtype.clone(),
                list(&x.sizes),
                stored,
                x.method.clone(),
                format!("{}{shared}", x.value_index),
                if x.used_by.is_empty() {
                    "-".into()
                } else {
                    x.used_by.join(", ")
                },
            ]);
        }
        t.render("  ", out);
    }
    if !top.delegate_payloads.is_empty() {
        let _ = writeln!(out, "\nlargest delegate payloads (top {})", top.limit);
        let mut t = Table::new(&["bytes", "method", "delegate", "id", "stored"]);
        for d in &top.delegate_payloads {
            t.row(vec![
                d.bytes.map_or("?".into(), thousands),
                d.method.clone(),
                d.delegate.to_string(),
                d.id.clone(),
                format!("{} {}", d.location, d.index),
            ]);
        }
        t.render("  ", out);
    }
    render_top_named_data(out, top);
}

/// The named-data part of `--top` (all of it for a `.ptd`).
pub fn render_top_named_data(out: &mut String, top: &TopSummary) {
    if !top.named_data.is_empty() {
        let _ = writeln!(out, "\nlargest named data (top {})", top.limit);
        let mut t = Table::new(&["bytes", "segment", "key"]);
        for n in &top.named_data {
            t.row(vec![
                n.bytes.map_or("?".into(), thousands),
                n.segment_index.to_string(),
                n.key.clone(),
            ]);
        }
        t.render("  ", out);
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
            t.row(vec![name.into(), thousands(n), share(n, s.bytes)]);
        }
    }
    t.row(vec![
        "total (file size)".into(),
        thousands(s.bytes),
        share(s.bytes, s.bytes),
    ]);
    t.render("  ", out);
}
