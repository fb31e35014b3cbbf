//! `ptekit diff A B`: text rendering of a [`ProgramDiff`] in the reference's vocabulary
//! (`diff_pte.py`), plus layout and payload sections.

use std::path::Path;

use ptekit_format::analysis::diff::{diff_files, DiffOptions, ProgramDiff, TensorInfo};

use crate::commands::CliError;
use crate::input::{display_name, program_of, Input};
use crate::render::{human, thousands};

/// Runs `ptekit diff A B`; `Ok(true)` when the files are equivalent.
pub fn diff(a: &Path, b: &Path, json: bool, max_samples: usize) -> Result<bool, CliError> {
    let (ia, ib) = (Input::open(a)?, Input::open(b)?);
    let (fa, fb) = (program_of(a, &ia, "diff")?, program_of(b, &ib, "diff")?);
    let d = diff_files(&fa, &fb, &DiffOptions { max_samples }).map_err(|e| CliError::Pte {
        path: if e.side == 0 { a } else { b }.to_path_buf(),
        source: e.source,
    })?;
    let (na, nb) = (display_name(a), display_name(b));
    let out = if json {
        let mut v = serde_json::to_value(&d)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("a".into(), na.into());
            m.insert("b".into(), nb.into());
            m.insert("equivalent".into(), d.is_equivalent().into());
        }
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        render_diff(&na, &nb, &d)
    };
    out!("{out}");
    Ok(d.is_equivalent())
}

/// Renders a diff as text, in the reference's vocabulary, plus the layout section.
pub fn render_diff(path_a: &str, path_b: &str, d: &ProgramDiff) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Comparing: {path_a} ({}) vs {path_b} ({})",
        human(d.size_a),
        human(d.size_b)
    );
    if d.bitwise_equal {
        let _ = writeln!(s, "Status: bitwise equal");
        return s;
    }
    let _ = writeln!(
        s,
        "Status: {}",
        if d.is_equivalent() {
            "equivalent"
        } else {
            "different"
        }
    );
    if let Some((x, y)) = d.version {
        let _ = writeln!(s, "Version: {x} vs {y}");
    }
    for p in &d.plans {
        let _ = write!(s, "\nPlan {} \"{}\"", p.index, p.name_a);
        if p.name_a != p.name_b {
            let _ = write!(s, " (name differs: {:?} vs {:?})", p.name_a, p.name_b);
        }
        let _ = writeln!(s, ":");
        let list = |s: &mut String, what: &str, v: &[String]| {
            if !v.is_empty() {
                let _ = writeln!(s, "  {what}: {}", v.join(", "));
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
                dd.id_a,
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
            let _ = writeln!(s, "  Value count: {x} vs {y}");
        }
        if let Some((x, y)) = p.instruction_count {
            let _ = writeln!(s, "  Instruction count: {x} vs {y}");
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
                    let _ = writeln!(s, "      used as arg {} of {}", u.arg_index, u.name);
                }
                for m in &t.metadata {
                    let _ = writeln!(s, "      {}: {} vs {}", m.field, m.a, m.b);
                }
                if t.bytes_differ && t.differing > 0 {
                    let _ = writeln!(s, "      {} / {} elements differ", t.differing, t.elements);
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
                            let _ = writeln!(s, "        ... and {rest} more");
                        }
                    }
                } else if t.bytes_differ && (t.bytes_a == 0 || t.bytes_b == 0) {
                    let side = if t.bytes_a == 0 { "B" } else { "A" };
                    let _ = writeln!(s, "      data only in {side}");
                } else if t.bytes_differ {
                    let _ = writeln!(
                        s,
                        "      bytes differ, values equal (e.g. -0.0 vs 0.0, padding)"
                    );
                }
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
                    let _ = writeln!(s, "      used in A as arg {} of {}", u.arg_index, u.name);
                }
                if v.usages_b != v.usages_a {
                    for u in &v.usages_b {
                        let _ = writeln!(s, "      used in B as arg {} of {}", u.arg_index, u.name);
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
    if !d.extra_plans_in_a.is_empty() {
        let _ = writeln!(s, "\nExtra plans in A: {}", d.extra_plans_in_a.join(", "));
    }
    if !d.extra_plans_in_b.is_empty() {
        let _ = writeln!(s, "\nExtra plans in B: {}", d.extra_plans_in_b.join(", "));
    }
    if !d.named_data.is_empty() {
        let _ = writeln!(s, "\nNamed data differences:");
        for n in &d.named_data {
            match n.only_in {
                Some(side) => {
                    let _ = writeln!(s, "  {:?}: only in {side}", n.key);
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  {:?}: bytes differ ({} vs {} bytes)",
                        n.key,
                        thousands(n.bytes_a),
                        thousands(n.bytes_b)
                    );
                }
            }
        }
    }
    if !d.layout.fields.is_empty() {
        let _ = writeln!(s, "\nLayout:");
        for f in &d.layout.fields {
            let _ = writeln!(s, "  {}: {} vs {}", f.field, f.a, f.b);
        }
    }
    if d.other_bytes_differ {
        let _ = writeln!(
            s,
            "\nThe files differ only in bytes no field refers to (padding)."
        );
    }
    s
}

fn tensor_line(t: &TensorInfo) -> String {
    let kind = if t.data_buffer_idx > 0 { "CT" } else { "T" };
    let sizes: Vec<String> = t.sizes.iter().map(i32::to_string).collect();
    let fqn = t
        .fqn
        .as_ref()
        .map_or_else(String::new, |f| format!("  \"{f}\""));
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
