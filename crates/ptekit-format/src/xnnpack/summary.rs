//! What `ptekit inspect` shows for one XNNPACK payload.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::decode::Payload;
use super::model::*;
use super::validate::NamedLookup;
use crate::units::thousands;

/// Value flag: the value is a delegate input (`XNN_VALUE_FLAG_EXTERNAL_INPUT`).
pub const FLAG_EXTERNAL_INPUT: u32 = 1;
/// Value flag: the value is a delegate output (`XNN_VALUE_FLAG_EXTERNAL_OUTPUT`).
pub const FLAG_EXTERNAL_OUTPUT: u32 = 2;

/// Bytes of constants by where they are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConstantStorage {
    /// In the payload's own constant data (after the flatbuffer).
    pub inline: u64,
    /// In the program's named data (`.pte` segments).
    pub named_data: u64,
    /// In named data the program does not hold (an external `.ptd`, given or not).
    pub external: u64,
    /// In the legacy `constant_buffer` inside the flatbuffer.
    pub legacy_buffer: u64,
}

/// Summary of one payload (`execution_plans[].delegates[].xnnpack` in `inspect --json`).
#[derive(Debug, Clone, Serialize)]
pub struct XnnpackSummary {
    /// Flatbuffer identifier (`XN01`, or `XN00`).
    pub identifier: String,
    /// Whether the payload has the `XH00` header (false: legacy bare flatbuffer).
    pub header: bool,
    /// Flatbuffer size in bytes.
    pub flatbuffer_bytes: usize,
    /// Node count by kind (schema names, e.g. `XNNFullyConnected`).
    pub nodes: BTreeMap<&'static str, usize>,
    /// Total nodes.
    pub num_nodes: usize,
    /// Number of values.
    pub num_values: usize,
    /// `num_externs` as stored.
    pub num_externs: u32,
    /// Values flagged as delegate inputs.
    pub external_inputs: usize,
    /// Values flagged as delegate outputs.
    pub external_outputs: usize,
    /// Values that are constants (`constant_buffer_idx != 0`).
    pub constant_values: usize,
    /// Other values (intermediates).
    pub intermediates: usize,
    /// Delegate input value ids.
    pub input_ids: Vec<u32>,
    /// Delegate output value ids.
    pub output_ids: Vec<u32>,
    /// Non-empty `constant_data` (or legacy `constant_buffer`) entries.
    pub constant_entries: usize,
    /// Bytes of all constants (saturating: sizes are as the payload states them).
    pub constant_bytes: u64,
    /// Where the constant bytes are.
    pub constant_storage: ConstantStorage,
    /// Named-data keys, in entry order.
    pub named_keys: Vec<String>,
    /// Quantized values by quantization kind (e.g. `PerChannelQuant`).
    pub quant_kinds: BTreeMap<&'static str, usize>,
    /// Values by datatype (e.g. `fp32`, `qcint8`; unknown values as numbers).
    pub datatypes: BTreeMap<String, usize>,
}

/// Summarizes a decoded payload. `named` looks keys up in the program's own named data;
/// keys it does not find count as external.
pub fn summary(p: &Payload<'_>, named: Option<NamedLookup<'_>>) -> XnnpackSummary {
    let g = &p.graph;
    let mut nodes = BTreeMap::new();
    for n in g.xnodes.as_deref().unwrap_or_default() {
        let name = n.xnode_union.as_ref().map_or("NONE", XNodeUnion::name);
        *nodes.entry(name).or_insert(0) += 1;
    }
    let values = g.xvalues.as_deref().unwrap_or_default();
    let (mut ins, mut outs, mut consts, mut inter) = (0, 0, 0, 0);
    let mut quant_kinds = BTreeMap::new();
    let mut datatypes = BTreeMap::new();
    for v in values {
        let Some(u) = &v.xvalue_union else { continue };
        if let XValueUnion::XNNQuantizedTensorValue(q) = u {
            let kind = q.quant_params.as_ref().map_or("NONE", XNNQuantParams::name);
            *quant_kinds.entry(kind).or_insert(0) += 1;
        }
        let Some(t) = u.tensor() else { continue };
        let dt = t
            .datatype
            .name()
            .map_or_else(|| t.datatype.0.to_string(), str::to_owned);
        *datatypes.entry(dt).or_insert(0) += 1;
        let external = t.flags & (FLAG_EXTERNAL_INPUT | FLAG_EXTERNAL_OUTPUT) != 0;
        if t.flags & FLAG_EXTERNAL_INPUT != 0 {
            ins += 1;
        }
        if t.flags & FLAG_EXTERNAL_OUTPUT != 0 {
            outs += 1;
        }
        if t.constant_buffer_idx != 0 {
            consts += 1;
        } else if !external {
            inter += 1;
        }
    }
    let mut storage = ConstantStorage::default();
    let mut entries = 0;
    let mut named_keys = Vec::new();
    for c in g.constant_data.as_deref().unwrap_or_default() {
        if c.size == 0 && c.key().is_none() {
            continue;
        }
        entries += 1;
        match c.key() {
            Some(k) => {
                named_keys.push(k.to_owned());
                if named.is_some_and(|f| f(k).is_some()) {
                    storage.named_data = storage.named_data.saturating_add(c.size);
                } else {
                    storage.external = storage.external.saturating_add(c.size);
                }
            }
            None => storage.inline = storage.inline.saturating_add(c.size),
        }
    }
    for b in g.constant_buffer.as_deref().unwrap_or_default() {
        let len = b.storage.as_ref().map_or(0, Vec::len) as u64;
        if len > 0 {
            entries += 1;
            storage.legacy_buffer = storage.legacy_buffer.saturating_add(len);
        }
    }
    XnnpackSummary {
        identifier: String::from_utf8_lossy(&p.identifier).into_owned(),
        header: p.header.is_some(),
        flatbuffer_bytes: p.flatbuffer_len,
        num_nodes: g.xnodes.as_ref().map_or(0, Vec::len),
        nodes,
        num_values: values.len(),
        num_externs: g.num_externs,
        external_inputs: ins,
        external_outputs: outs,
        constant_values: consts,
        intermediates: inter,
        input_ids: g.input_ids.clone().unwrap_or_default(),
        output_ids: g.output_ids.clone().unwrap_or_default(),
        constant_entries: entries,
        constant_bytes: storage
            .inline
            .saturating_add(storage.named_data)
            .saturating_add(storage.external)
            .saturating_add(storage.legacy_buffer),
        constant_storage: storage,
        named_keys,
        quant_kinds,
        datatypes,
    }
}

fn counts<K: std::fmt::Display>(m: &BTreeMap<K, usize>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    let mut v: Vec<(&K, &usize)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the summary as indented text lines (each starting with `indent`).
pub fn render_summary(s: &XnnpackSummary, indent: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{indent}xnnpack   {} ({}), flatbuffer {} bytes",
        s.identifier,
        if s.header {
            "XH00 header"
        } else {
            "no header, legacy"
        },
        thousands(s.flatbuffer_bytes as u64)
    );
    let _ = writeln!(
        out,
        "{indent}  nodes     {}: {}",
        s.num_nodes,
        counts(&s.nodes)
    );
    let _ = writeln!(
        out,
        "{indent}  values    {}: {} inputs, {} outputs, {} constants, {} intermediates",
        s.num_values, s.external_inputs, s.external_outputs, s.constant_values, s.intermediates
    );
    let st = &s.constant_storage;
    let mut wher = Vec::new();
    for (name, n) in [
        ("named data", st.named_data),
        ("external .ptd", st.external),
        ("inline", st.inline),
        ("legacy buffer", st.legacy_buffer),
    ] {
        if n > 0 {
            wher.push(format!("{name} {}", thousands(n)));
        }
    }
    let _ = writeln!(
        out,
        "{indent}  constants {} entries, {} bytes{}",
        s.constant_entries,
        thousands(s.constant_bytes),
        if wher.is_empty() {
            String::new()
        } else {
            format!(" ({})", wher.join(", "))
        }
    );
    let _ = writeln!(out, "{indent}  datatypes {}", counts(&s.datatypes));
    let _ = writeln!(out, "{indent}  quant     {}", counts(&s.quant_kinds));
    out
}
