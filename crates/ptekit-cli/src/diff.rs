//! `ptekit diff A B`: text rendering of a [`ProgramDiff`] in the reference's vocabulary
//! (`diff_pte.py`), plus layout and payload sections; two `.ptd` files compare as a
//! [`TensorDataDiff`] in the same vocabulary.

use std::fmt::Write as _;
use std::path::Path;

use ptekit_format::analysis::diff::{
    diff_files, DataStats, DiffOptions, FileDiff, NamedDataDiff, ProgramDiff, TensorInfo,
};
use ptekit_format::analysis::ptd_diff::{diff_tensor_data, NamedTensorInfo, TensorDataDiff};
use serde::Serialize;

use crate::commands::{detect, CliError, Kind};
use crate::input::{display_name, program_of, tensor_data_of, Input};
use crate::render::{human, printable, thousands};
use ptekit_format::units::quoted;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Program => "a program (.pte)",
        Kind::Bundled => "a bundled program (.bpte)",
        Kind::TensorData => "a tensor-data file (.ptd)",
    }
}

/// Runs `ptekit diff A B`; `Ok(true)` when the files are equivalent.
pub fn diff(a: &Path, b: &Path, json: bool, max_samples: usize) -> Result<bool, CliError> {
    let (ia, ib) = (Input::open(a)?, Input::open(b)?);
    let (ka, kb) = (detect(a, ia.bytes())?, detect(b, ib.bytes())?);
    let options = DiffOptions { max_samples };
    let names = (display_name(a), display_name(b));
    match (ka == Kind::TensorData, kb == Kind::TensorData) {
        (true, true) => {
            let (fa, fb) = (tensor_data_of(a, &ia)?, tensor_data_of(b, &ib)?);
            let d = diff_tensor_data(&fa, &fb, &options);
            let text = || render_ptd_diff(&names.0, &names.1, &d);
            emit(json, &d, "tensor_data", &names, d.is_equivalent(), text)
        }
        (false, false) => {
            let (fa, fb) = (program_of(a, &ia, "diff")?, program_of(b, &ib, "diff")?);
            let d = diff_files(&fa, &fb, &options).map_err(|e| CliError::Pte {
                path: if e.side == 0 { a } else { b }.to_path_buf(),
                source: e.source,
            })?;
            let text = || {
                let mut s = render_diff(&names.0, &names.1, &d);
                for (name, kind) in [(&names.0, ka), (&names.1, kb)] {
                    if kind == Kind::Bundled {
                        let _ = writeln!(
                            s,
                            "\nNote: {name} is a bundled program; its embedded program was \
                             compared (sizes are the program's), its test suites were not."
                        );
                    }
                }
                s
            };
            emit(json, &d, "program", &names, d.is_equivalent(), text)
        }
        _ => Err(CliError::Usage {
            path: a.to_path_buf(),
            message: format!(
                "is {} and {} is {}: diff compares two programs (.pte or .bpte) or two \
                 tensor-data files (.ptd)",
                kind_name(ka),
                names.1,
                kind_name(kb)
            ),
        }),
    }
}

/// Prints the diff (JSON with `kind`, the file names and `equivalent` added, or text);
/// returns `equivalent`.
fn emit(
    json: bool,
    d: &impl Serialize,
    kind: &str,
    (na, nb): &(String, String),
    equivalent: bool,
    text: impl FnOnce() -> String,
) -> Result<bool, CliError> {
    let out = if json {
        let mut v = serde_json::to_value(d)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("kind".into(), kind.into());
            m.insert("a".into(), na.as_str().into());
            m.insert("b".into(), nb.as_str().into());
            m.insert("equivalent".into(), equivalent.into());
        }
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        text()
    };
    out!("{out}");
    Ok(equivalent)
}

/// The first lines: names, sizes, status and version; `false` when the files are
/// bitwise equal (nothing more to say).
fn render_status(
    s: &mut String,
    (path_a, path_b): (&str, &str),
    f: &FileDiff,
    equivalent: bool,
) -> bool {
    let _ = writeln!(
        s,
        "Comparing: {path_a} ({}) vs {path_b} ({})",
        human(f.size_a),
        human(f.size_b)
    );
    if f.bitwise_equal {
        let _ = writeln!(s, "Status: bitwise equal");
        return false;
    }
    let status = if equivalent {
        "equivalent"
    } else {
        "different"
    };
    let _ = writeln!(s, "Status: {status}");
    if let Some((x, y)) = f.version {
        let _ = writeln!(s, "Version: {x} vs {y}");
    }
    true
}

/// A layout value in the one number style (`33,280`); other text as it is.
fn num(v: &str) -> String {
    v.parse::<u64>().map_or_else(|_| v.to_string(), thousands)
}

/// The named-data (the entries given), layout and padding sections.
fn render_tail(s: &mut String, f: &FileDiff, named_data: &[&NamedDataDiff]) {
    if !named_data.is_empty() {
        let _ = writeln!(s, "\nNamed data differences:");
        for n in named_data {
            match n.only_in {
                Some(side) => {
                    let _ = writeln!(s, "  {}: only in {side}", quoted(&n.key));
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  {}: bytes differ ({} vs {} bytes)",
                        quoted(&n.key),
                        thousands(n.bytes_a),
                        thousands(n.bytes_b)
                    );
                }
            }
        }
    }
    if !f.layout.fields.is_empty() {
        let _ = writeln!(s, "\nLayout:");
        for l in &f.layout.fields {
            let _ = writeln!(s, "  {}: {} vs {}", l.field, num(&l.a), num(&l.b));
        }
    }
    if f.other_bytes_differ {
        let _ = writeln!(
            s,
            "\nThe files differ only in bytes no field refers to (padding)."
        );
    }
}

/// The data lines of a differing tensor: element statistics and the first differences.
fn render_stats(s: &mut String, t: &DataStats, bytes_differ: bool, bytes: (u64, u64)) {
    if bytes_differ && t.differing > 0 {
        let _ = writeln!(
            s,
            "      {} / {} elements differ",
            thousands(t.differing),
            thousands(t.elements)
        );
        let _ = writeln!(
            s,
            "      max_abs_diff={}  mean_abs_diff={}",
            g6(t.max_abs_diff),
            g6(t.mean_abs_diff)
        );
        if !t.samples.is_empty() {
            let _ = writeln!(s, "      first differences:");
            for e in &t.samples {
                let idx: Vec<String> = e.index.iter().map(u64::to_string).collect();
                let _ = writeln!(
                    s,
                    "        [{}]: {} vs {} (diff={})",
                    idx.join(","),
                    e.a,
                    e.b,
                    g6((e.a - e.b).abs())
                );
            }
            let rest = t.differing.saturating_sub(t.samples.len() as u64);
            if rest > 0 {
                let _ = writeln!(s, "        ... and {} more", thousands(rest));
            }
        }
    } else if bytes_differ && (bytes.0 == 0 || bytes.1 == 0) {
        let side = if bytes.0 == 0 { "B" } else { "A" };
        let _ = writeln!(s, "      data only in {side}");
    } else if bytes_differ {
        let _ = writeln!(
            s,
            "      bytes differ, values equal (e.g. -0.0 vs 0.0, padding)"
        );
    }
}

/// Renders a `.ptd` diff as text: status, differing tensors, keys on one side, layout.
pub fn render_ptd_diff(path_a: &str, path_b: &str, d: &TensorDataDiff) -> String {
    let mut s = String::new();
    if !render_status(&mut s, (path_a, path_b), &d.file, d.is_equivalent()) {
        return s;
    }
    if !d.tensors.is_empty() {
        let _ = writeln!(s, "\nDiffering tensors ({}):", d.tensors.len());
        for t in &d.tensors {
            let _ = writeln!(s, "    {}  {}", quoted(&t.key), named_tensor_line(&t.a));
            let _ = writeln!(
                s,
                "      byte sizes: {} vs {}",
                thousands(t.a.nbytes),
                thousands(t.b.nbytes)
            );
            for m in &t.metadata {
                let _ = writeln!(s, "      {}: {} vs {}", m.field, num(&m.a), num(&m.b));
            }
            render_stats(&mut s, &t.stats, t.bytes_differ, (t.a.nbytes, t.b.nbytes));
        }
    }
    // Keys both files have are shown above with their data.
    let one_side: Vec<&NamedDataDiff> = d
        .file
        .named_data
        .iter()
        .filter(|n| n.only_in.is_some())
        .collect();
    render_tail(&mut s, &d.file, &one_side);
    s
}

fn named_tensor_line(t: &NamedTensorInfo) -> String {
    let what = match (&t.dtype, &t.sizes) {
        (Some(dtype), Some(sizes)) => {
            let sizes: Vec<String> = sizes.iter().map(i32::to_string).collect();
            format!("{dtype}[{}]", sizes.join(","))
        }
        _ => "bytes".to_string(),
    };
    format!(
        "{what} in segment {} (file offset {})",
        t.segment_index,
        thousands(t.offset)
    )
}

/// Renders a diff as text, in the reference's vocabulary, plus the layout section.
pub fn render_diff(path_a: &str, path_b: &str, d: &ProgramDiff) -> String {
    let mut s = String::new();
    if !render_status(&mut s, (path_a, path_b), &d.file, d.is_equivalent()) {
        return s;
    }
    for p in &d.plans {
        let _ = write!(s, "\nPlan {} {}", p.index, quoted(&p.name_a));
        if p.name_a != p.name_b {
            let _ = write!(
                s,
                " (name differs: {} vs {})",
                quoted(&p.name_a),
                quoted(&p.name_b)
            );
        }
        let _ = writeln!(s, ":");
        let list = |s: &mut String, what: &str, v: &[String]| {
            if !v.is_empty() {
                let names: Vec<_> = v.iter().map(|n| printable(n)).collect();
                let _ = writeln!(s, "  {what}: {}", names.join(", "));
            }
        };
        list(&mut s, "Operators only in A", &p.operators_only_in_a);
        list(&mut s, "Operators only in B", &p.operators_only_in_b);
        list(&mut s, "Delegates only in A", &p.delegates_only_in_a);
        list(&mut s, "Delegates only in B", &p.delegates_only_in_b);
        for dd in &p.delegate_payloads {
            let _ = writeln!(
                s,
                "  Delegate {} ({}): payload {} vs {} bytes{}{}",
                dd.index,
                printable(&dd.id_a),
                thousands(dd.payload_a),
                thousands(dd.payload_b),
                if dd.payload_differs {
                    ", bytes differ"
                } else {
                    ""
                },
                if dd.compile_specs_differ {
                    ", compile specs differ"
                } else {
                    ""
                }
            );
        }
        if let Some((x, y)) = &p.non_const_buffer_sizes {
            let _ = writeln!(s, "  non_const_buffer_sizes: {x:?} vs {y:?}");
        }
        if let Some((x, y)) = p.value_count {
            let _ = writeln!(
                s,
                "  Value count: {} vs {}",
                thousands(x as u64),
                thousands(y as u64)
            );
        }
        if let Some((x, y)) = p.instruction_count {
            let _ = writeln!(
                s,
                "  Instruction count: {} vs {}",
                thousands(x as u64),
                thousands(y as u64)
            );
        }
        if let Some((x, y)) = &p.inputs {
            let _ = writeln!(s, "  Inputs: {x:?} vs {y:?}");
        }
        if let Some((x, y)) = &p.outputs {
            let _ = writeln!(s, "  Outputs: {x:?} vs {y:?}");
        }
        if !p.tensors.is_empty() {
            let _ = writeln!(s, "  Differing tensors ({}):", p.tensors.len());
            for t in &p.tensors {
                let _ = writeln!(s, "    {}", tensor_line(&t.a));
                let _ = writeln!(
                    s,
                    "      byte sizes: {} vs {}",
                    thousands(t.bytes_a),
                    thousands(t.bytes_b)
                );
                for u in &t.a.usages {
                    let _ = writeln!(
                        s,
                        "      used as arg {} of {}",
                        u.arg_index,
                        printable(&u.name)
                    );
                }
                for m in &t.metadata {
                    let _ = writeln!(s, "      {}: {} vs {}", m.field, m.a, m.b);
                }
                render_stats(&mut s, &t.stats, t.bytes_differ, (t.bytes_a, t.bytes_b));
            }
        }
        if !p.values.is_empty() {
            let _ = writeln!(s, "  Differing values ({}):", p.values.len());
            for v in &p.values {
                if v.kind_a != v.kind_b {
                    let _ = writeln!(
                        s,
                        "    [idx={}]  type: {} vs {}",
                        v.value_index, v.kind_a, v.kind_b
                    );
                } else {
                    let _ = writeln!(s, "    [idx={}]  {}", v.value_index, v.kind_a);
                    for f in &v.fields {
                        let _ = writeln!(s, "      {}: {} vs {}", f.field, f.a, f.b);
                    }
                }
                for u in &v.usages_a {
                    let _ = writeln!(
                        s,
                        "      used in A as arg {} of {}",
                        u.arg_index,
                        printable(&u.name)
                    );
                }
                if v.usages_b != v.usages_a {
                    for u in &v.usages_b {
                        let _ = writeln!(
                            s,
                            "      used in B as arg {} of {}",
                            u.arg_index,
                            printable(&u.name)
                        );
                    }
                }
            }
        }
        for (what, v) in [("A", &p.tensors_only_in_a), ("B", &p.tensors_only_in_b)] {
            if !v.is_empty() {
                let _ = writeln!(s, "  Tensors only in {what} ({}):", v.len());
                for t in v {
                    let _ = writeln!(s, "    {}", tensor_line(t));
                }
            }
        }
    }
    for (side, plans) in [("A", &d.extra_plans_in_a), ("B", &d.extra_plans_in_b)] {
        if !plans.is_empty() {
            let names: Vec<_> = plans.iter().map(|n| printable(n)).collect();
            let _ = writeln!(s, "\nExtra plans in {side}: {}", names.join(", "));
        }
    }
    let named: Vec<&NamedDataDiff> = d.file.named_data.iter().collect();
    render_tail(&mut s, &d.file, &named);
    s
}

fn tensor_line(t: &TensorInfo) -> String {
    let kind = if t.data_buffer_idx > 0 { "CT" } else { "T" };
    let sizes: Vec<String> = t.sizes.iter().map(i32::to_string).collect();
    let fqn = t
        .fqn
        .as_ref()
        .map_or_else(String::new, |f| format!("  {}", quoted(f)));
    format!(
        "[idx={}]  {kind} {}[{}]{fqn}",
        t.value_index,
        t.dtype,
        sizes.join(",")
    )
}

/// `%.6g`-like formatting.
fn g6(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor();
    if !(-5.0..6.0).contains(&exp) {
        return format!("{v:.5e}");
    }
    let decimals = (5.0 - exp).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}
