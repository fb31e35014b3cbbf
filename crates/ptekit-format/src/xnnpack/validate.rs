//! The payload's own cross-references, checked after decoding: every value id a node or
//! the graph names is defined by a value (or is `XNN_INVALID_VALUE_ID`), every constant
//! index lies in `constant_data` (or the legacy `constant_buffer`), inline constant
//! ranges lie inside the payload's constant data, and named keys exist where the
//! program keeps its named data, and constants hold what their values' dims need.
//! [`check_definable`] adds what the runtime checks when it defines the graph in XNNPACK
//! (see [`define`](super::define)).

use super::decode::{Payload, Positions};
use super::define::{self, Where};
use super::error::{XnnpackError, XnnpackErrorKind};
use super::model::*;

/// `XNN_INVALID_VALUE_ID`: "no value" in id fields (unused concatenation inputs, no
/// bias, internal values' `external_id`).
pub const XNN_INVALID_VALUE_ID: u32 = u32::MAX;

/// Looks up a named-data key: `Some(size in bytes)` when present, `None` when missing.
pub type NamedLookup<'a> = &'a dyn Fn(&str) -> Option<u64>;

/// Where the constants of a payload can be found.
#[derive(Clone, Copy, Default)]
pub struct ConstantSources<'a> {
    /// The payload's constant data (after the flatbuffer).
    pub constant_data: &'a [u8],
    /// Named data (the program's, plus a given `.ptd`); `None` skips the key check.
    pub named: Option<NamedLookup<'a>>,
}

impl std::fmt::Debug for ConstantSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstantSources")
            .field("constant_data", &self.constant_data.len())
            .field("named", &self.named.is_some())
            .finish()
    }
}

fn err(kind: XnnpackErrorKind, message: String) -> XnnpackError {
    XnnpackError::new(kind, message)
}

struct Ids {
    /// Sorted defined ids.
    defined: Vec<u32>,
}

impl Ids {
    fn check(&self, id: u32) -> Result<(), XnnpackError> {
        if id == XNN_INVALID_VALUE_ID || self.defined.binary_search(&id).is_ok() {
            return Ok(());
        }
        Err(err(
            XnnpackErrorKind::ValueId,
            format!(
                "value id {id} is not defined by any of the {} values",
                self.defined.len()
            ),
        ))
    }
}

struct IdSink<'a> {
    ids: &'a Ids,
    first_error: Option<XnnpackError>,
}

impl FieldSink for IdSink<'_> {
    fn u32(&mut self, name: &'static str, _: usize, value: u32) {
        if self.first_error.is_none() && name.ends_with("_id") {
            if let Err(e) = self.ids.check(value) {
                self.first_error = Some(e.in_field(name));
            }
        }
    }
    fn f32(&mut self, _: &'static str, _: usize, _: f32) {}
    fn u32s(&mut self, _: &'static str, _: usize, _: Option<&[u32]>) {}
}

/// Checks the cross-references of `g` (see the [module documentation](self)).
pub fn validate(g: &XNNGraph, sources: &ConstantSources<'_>) -> Result<(), XnnpackError> {
    check(g, sources).map_err(|b| b.0)
}

/// Checks the cross-references of a decoded payload against its own constant data and
/// `named` (`None`: keys not checked); errors carry the payload offset of the table
/// concerned.
pub fn validate_payload(
    p: &Payload<'_>,
    named: Option<NamedLookup<'_>>,
) -> Result<(), XnnpackError> {
    let sources = ConstantSources {
        constant_data: p.constant_data,
        named,
    };
    check(&p.graph, &sources).map_err(|b| {
        let (e, at) = *b;
        locate(e, at, &p.positions)
    })
}

/// Where an error was found: the element of a table vector, or the root.
#[derive(Debug, Clone, Copy)]
enum At {
    Root,
    Node(usize),
    Value(usize),
    Constant(usize),
    Define(Where),
}

fn locate(e: XnnpackError, at: At, p: &Positions) -> XnnpackError {
    let pos = match at {
        At::Root => Some(p.root),
        At::Node(i) => p.xnodes.get(i).copied(),
        At::Value(i) => p.xvalues.get(i).copied(),
        At::Constant(i) => p.constant_data.get(i).copied(),
        At::Define(w) => {
            let field = |t: Option<&Option<super::decode::TableFields>>, slot: usize| {
                t.and_then(Option::as_ref).map(|f| f.field(slot))
            };
            match w {
                Where::Root(slot) => Some(p.root_fields.field(slot)),
                Where::Value(i, slot) => field(p.value_tensors.get(i), slot),
                Where::Node(i, slot) => field(p.node_members.get(i), slot),
                Where::MinMax(i, slot) => field(p.node_min_max.get(i), slot),
            }
        }
    };
    match pos {
        Some(pos) => e.at(pos as u64),
        None => e,
    }
}

/// An error and where it was found (boxed: the error path is the rare one).
type Checked = Result<(), Box<(XnnpackError, At)>>;

fn check(g: &XNNGraph, sources: &ConstantSources<'_>) -> Checked {
    let values = g.xvalues.as_deref().unwrap_or_default();
    let mut defined = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let at = |e: XnnpackError| Box::new((e.in_field(format!("xvalues[{i}]")), At::Value(i)));
        let tensor = match &v.xvalue_union {
            None => {
                return Err(at(err(
                    XnnpackErrorKind::ValueId,
                    "value has no tensor (union type NONE)".into(),
                )
                .in_field("xvalue_union")))
            }
            Some(u) => u.tensor().ok_or_else(|| {
                at(err(
                    XnnpackErrorKind::ValueId,
                    "quantized value has no tensor_value".into(),
                )
                .in_field("tensor_value")
                .in_field(u.name()))
            })?,
        };
        defined.push(tensor.id_out);
    }
    defined.sort_unstable();
    if let Some(w) = defined.windows(2).find(|w| w[0] == w[1]) {
        let dup = w[0];
        let second = values
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                v.xvalue_union
                    .as_ref()
                    .and_then(XValueUnion::tensor)
                    .map(|t| t.id_out)
                    == Some(dup)
            })
            .nth(1)
            .map_or(0, |(i, _)| i);
        return Err(Box::new((
            err(
                XnnpackErrorKind::ValueId,
                format!("value id {dup} is defined more than once"),
            )
            .in_field("id_out")
            .in_field(format!("xvalues[{second}]")),
            At::Value(second),
        )));
    }
    let ids = Ids { defined };

    for (name, list) in [("input_ids", &g.input_ids), ("output_ids", &g.output_ids)] {
        for (i, id) in list.as_deref().unwrap_or_default().iter().enumerate() {
            ids.check(*id)
                .map_err(|e| Box::new((e.in_field(format!("{name}[{i}]")), At::Root)))?;
        }
    }

    for (i, n) in g.xnodes.as_deref().unwrap_or_default().iter().enumerate() {
        let Some(u) = &n.xnode_union else {
            return Err(Box::new((
                err(
                    XnnpackErrorKind::ValueId,
                    "node has no operation (union type NONE)".into(),
                )
                .in_field("xnode_union")
                .in_field(format!("xnodes[{i}]")),
                At::Node(i),
            )));
        };
        let mut sink = IdSink {
            ids: &ids,
            first_error: None,
        };
        u.put(&mut sink);
        if let Some(e) = sink.first_error {
            return Err(Box::new((
                e.in_field(u.name()).in_field(format!("xnodes[{i}]")),
                At::Node(i),
            )));
        }
    }

    check_constants(g, values, sources)
}

/// Checks what the reference runtime refuses when it defines `g` in XNNPACK (see
/// [`define`](super::define)); errors without offsets. Run after [`validate`]: it assumes
/// the cross-references hold.
pub fn check_definable(g: &XNNGraph) -> Result<(), XnnpackError> {
    define::check(g).map_err(|b| b.0)
}

/// [`check_definable`] on a decoded payload: errors carry the payload offset of the
/// field concerned.
pub fn check_definable_payload(p: &Payload<'_>) -> Result<(), XnnpackError> {
    define::check(&p.graph).map_err(|b| {
        let (e, w) = *b;
        locate(e, At::Define(w), &p.positions)
    })
}

/// Bytes per element of the datatypes stored a whole number of bytes per element (`None`
/// for 4-bit, dynamically quantized and undeclared ones).
fn element_size(d: XNNDatatype) -> Option<u64> {
    match d.name()? {
        "fp32" | "qint32" | "qcint32" | "int32" | "pfp32" => Some(4),
        "fp16" | "bf16" => Some(2),
        "qint8" | "quint8" | "qcint8" => Some(1),
        _ => None,
    }
}

/// A constant value whose dims need more bytes than its constant holds: XNNPACK reads
/// (and packs) dims-many elements from the constant's data, whatever its size, so the
/// runtime reads past the data (and may crash). Named data of unknown size (no lookup, or
/// a missing key, reported on its own) is not checked.
fn constant_too_short(
    g: &XNNGraph,
    t: &XNNTensorValue,
    sources: &ConstantSources<'_>,
) -> Option<XnnpackError> {
    let idx = t.constant_buffer_idx as usize;
    if idx == 0 {
        return None;
    }
    let size = element_size(t.datatype)?;
    let dims = t.dims.as_deref().unwrap_or_default();
    let need = dims
        .iter()
        .try_fold(size, |n, &d| n.checked_mul(u64::from(d)));
    let (have, what) = match (&g.constant_data, &g.constant_buffer) {
        (Some(entries), _) => {
            let c = entries.get(idx)?;
            let have = match c.lookup_key() {
                Some(key) => (sources.named?)(key)?,
                None => (sources.constant_data.len() as u64).saturating_sub(c.offset),
            };
            (have, format!("constant_data[{idx}]"))
        }
        (None, Some(buffers)) => {
            let b = buffers.get(idx)?;
            (
                b.storage.as_ref().map_or(0, |s| s.len() as u64),
                format!("constant_buffer[{idx}]"),
            )
        }
        (None, None) => return None,
    };
    match need {
        Some(need) if need <= have => None,
        _ => Some(err(
            XnnpackErrorKind::ConstantRange,
            format!(
                "{dims:?} of {} need {} bytes, but {what} holds {have}: XNNPACK would read past it",
                t.datatype.name().unwrap_or("?"),
                need.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
            ),
        )),
    }
}

fn check_constants(g: &XNNGraph, values: &[XValue], sources: &ConstantSources<'_>) -> Checked {
    let entries = g.constant_data.as_deref();
    let (limit, list) = match (entries, g.constant_buffer.as_deref()) {
        (Some(c), _) => (c.len(), "constant_data"),
        (None, Some(b)) => (b.len(), "constant_buffer"),
        (None, None) => (0, "constant_data"),
    };
    let index_ok = |idx: u32| idx == 0 || (idx as usize) < limit;
    let index_err = |idx: u32| {
        err(
            XnnpackErrorKind::ConstantIndex,
            format!("index {idx} is outside {list} ({limit} entries)"),
        )
    };
    for (i, v) in values.iter().enumerate() {
        let Some(u) = &v.xvalue_union else { continue };
        let at = |e: XnnpackError| {
            Box::new((
                e.in_field(u.name()).in_field(format!("xvalues[{i}]")),
                At::Value(i),
            ))
        };
        if let Some(t) = u.tensor() {
            if !index_ok(t.constant_buffer_idx) {
                let e = index_err(t.constant_buffer_idx).in_field("constant_buffer_idx");
                return Err(at(match u {
                    XValueUnion::XNNQuantizedTensorValue(_) => e.in_field("tensor_value"),
                    XValueUnion::XNNTensorValue(_) => e,
                }));
            }
        }
        if let XValueUnion::XNNQuantizedTensorValue(q) = u {
            let scale_idx = match &q.quant_params {
                Some(XNNQuantParams::PerChannelQuant(p)) => {
                    Some((p.scale_buffer_idx, "PerChannelQuant"))
                }
                Some(XNNQuantParams::PerChannelGroupQuant(p)) => {
                    Some((p.scale_buffer_idx, "PerChannelGroupQuant"))
                }
                _ => None,
            };
            if let Some((idx, member)) = scale_idx {
                if idx != 0 && (idx as usize) >= entries.map_or(0, <[_]>::len) {
                    return Err(at(err(
                        XnnpackErrorKind::ConstantIndex,
                        format!(
                            "index {idx} is outside constant_data ({} entries)",
                            entries.map_or(0, <[_]>::len)
                        ),
                    )
                    .in_field("scale_buffer_idx")
                    .in_field(member)
                    .in_field("quant_params")));
                }
            }
        }
    }

    // Entry 0 is the placeholder of index 0 ("no constant"): nothing reads it.
    for (i, c) in entries.unwrap_or_default().iter().enumerate().skip(1) {
        let at = |e: XnnpackError| {
            Box::new((e.in_field(format!("constant_data[{i}]")), At::Constant(i)))
        };
        match c.lookup_key() {
            Some(key) => {
                let Some(lookup) = sources.named else {
                    continue;
                };
                match lookup(key) {
                    None => {
                        return Err(at(err(
                            XnnpackErrorKind::NamedKey,
                            format!(
                                "named data key {} is not in the program's named data",
                                crate::units::quoted(key)
                            ),
                        )
                        .in_field("named_key")))
                    }
                    Some(have) if have < c.size => {
                        return Err(at(err(
                            XnnpackErrorKind::NamedKey,
                            format!(
                                "named data {} holds {have} bytes, the entry needs {}",
                                crate::units::quoted(key),
                                c.size
                            ),
                        )
                        .in_field("size")))
                    }
                    Some(_) => {}
                }
            }
            None => {
                let len = sources.constant_data.len() as u64;
                if c.offset.checked_add(c.size).is_none_or(|end| end > len) {
                    return Err(at(err(
                        XnnpackErrorKind::ConstantRange,
                        format!(
                            "inline constant at offset {} of {} bytes is outside the payload's {len} bytes of constant data",
                            c.offset, c.size
                        ),
                    )
                    .in_field("offset")));
                }
            }
        }
    }
    // With every entry in range: the constants hold what their values' dims need.
    for (i, v) in values.iter().enumerate() {
        let Some(u) = &v.xvalue_union else { continue };
        let Some(e) = u.tensor().and_then(|t| constant_too_short(g, t, sources)) else {
            continue;
        };
        let e = e.in_field("dims");
        let e = match u {
            XValueUnion::XNNQuantizedTensorValue(_) => e.in_field("tensor_value"),
            XValueUnion::XNNTensorValue(_) => e,
        };
        // At the dims (slot 2) of the tensor table.
        return Err(Box::new((
            e.in_field(u.name()).in_field(format!("xvalues[{i}]")),
            At::Define(Where::Value(i, 2)),
        )));
    }
    Ok(())
}
