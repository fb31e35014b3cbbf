//! Writing payloads byte-identical to the reference: `convert_to_flatbuffer` (JSON +
//! `flatc --binary`, flatc 24.3.25) and `serialize_xnnpack_binary` (header + padding).
//!
//! The order is flatc's JSON-parser order ([`ptekit_flatbuffers::flatc_order`]): each
//! table's children (strings, vectors, sub-tables, union members) created in the order
//! the reference's JSON names them (the dataclass field order, which is the schema
//! order; a union's value comes before its `_type` key), then its fields added in size
//! passes (8, 4, 2, 1 bytes), highest slot first. Strings are not shared; vtables are.
//! Float fields are stored as flatc stores them: NaN canonical, `-0.0` omitted (equal to
//! the default), see [`flatc_f32`] for the conversion from a Python `float`.

use ptekit_flatbuffers::flatc_order::{create_force_aligned_vector, FlatcTable};
use ptekit_flatbuffers::{Builder, UOffset};

use super::error::XnnpackError;
use super::header::{XnnHeader, CONSTANT_TENSOR_ALIGNMENT, FILE_IDENTIFIER};
use super::model::*;

/// The NaN flatc writes for any NaN in the JSON (`0x7fc00000`).
pub const CANONICAL_NAN: u32 = 0x7fc0_0000;

/// The `f32` flatc stores for a Python `float` `x` written into the JSON by `json.dumps`
/// (`repr(x)`, the shortest digits that round-trip the double): the decimal text parsed
/// to `f32` in one correctly rounded step (`strtof`), not `x as f32` (which rounds
/// twice). NaN of any sign or payload becomes [`CANONICAL_NAN`]; values below the
/// smallest subnormal become `±0.0`, values beyond `f32::MAX` become `±inf`.
///
/// ```
/// use ptekit_format::xnnpack::flatc_f32;
/// // 1 + 2^-24, the midpoint between two f32s: `as` rounds to even, flatc rounds the
/// // shortest decimal text ("1.0000000596046448"), which lies above the midpoint.
/// assert_eq!(flatc_f32(1.0000000596046448).to_bits(), 0x3f800001);
/// assert_eq!((1.0000000596046448f64 as f32).to_bits(), 0x3f800000);
/// assert_eq!(flatc_f32(1e39), f32::INFINITY);
/// assert_eq!(flatc_f32(-f64::NAN).to_bits(), 0x7fc00000);
/// ```
pub fn flatc_f32(x: f64) -> f32 {
    if x.is_nan() {
        return f32::from_bits(CANONICAL_NAN);
    }
    let narrow = x as f32;
    if x.is_infinite() || f64::from(narrow) == x {
        // Exactly representable: every decimal that rounds to `x` as f64 lies within
        // half an f64 ulp of it, far inside the f32 rounding interval.
        return narrow;
    }
    flatc_f32_from_decimal(&format!("{x:e}")).unwrap_or(narrow)
}

/// The `f32` flatc stores for the decimal text `s` of a JSON number (e.g. the `str()` of
/// a Python `int` given for a float field): correctly rounded (`strtof`). `None` if `s`
/// is not a decimal number.
pub fn flatc_f32_from_decimal(s: &str) -> Option<f32> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'));
    if !ok {
        return None;
    }
    s.parse::<f32>().ok()
}

fn canon(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(CANONICAL_NAN)
    } else {
        x
    }
}

fn f32_vector(b: &mut Builder, v: &[f32]) -> UOffset {
    if v.iter().any(|x| x.is_nan()) {
        let c: Vec<f32> = v.iter().copied().map(canon).collect();
        b.create_scalar_vector(&c)
    } else {
        b.create_scalar_vector(v)
    }
}

struct ChildSink<'b> {
    b: &'b mut Builder,
    children: [UOffset; MAX_NODE_FIELDS],
}

impl FieldSink for ChildSink<'_> {
    fn u32(&mut self, _: &'static str, _: usize, _: u32) {}
    fn f32(&mut self, _: &'static str, _: usize, _: f32) {}
    fn u32s(&mut self, _: &'static str, slot: usize, value: Option<&[u32]>) {
        if let Some(v) = value {
            let off = self.b.create_scalar_vector(v);
            if let Some(c) = self.children.get_mut(slot) {
                *c = off;
            }
        }
    }
}

struct AddSink<'t> {
    t: &'t mut FlatcTable,
    children: [UOffset; MAX_NODE_FIELDS],
}

impl FieldSink for AddSink<'_> {
    fn u32(&mut self, _: &'static str, slot: usize, value: u32) {
        self.t.add_u32(slot, value, 0);
    }
    fn f32(&mut self, _: &'static str, slot: usize, value: f32) {
        self.t.add_f32(slot, canon(value), 0.0);
    }
    fn u32s(&mut self, _: &'static str, slot: usize, _: Option<&[u32]>) {
        self.t
            .add_offset(slot, self.children.get(slot).copied().unwrap_or(0));
    }
}

fn node_table(b: &mut Builder, n: &XNodeUnion) -> UOffset {
    let mut children = ChildSink {
        b,
        children: [0; MAX_NODE_FIELDS],
    };
    n.put(&mut children);
    let ChildSink { b, children } = children;
    let mut t = FlatcTable::new(n.fields().len());
    n.put(&mut AddSink {
        t: &mut t,
        children,
    });
    t.end(b)
}

fn output_min_max(b: &mut Builder, m: &OutputMinMax) -> UOffset {
    let mut t = FlatcTable::new(2);
    t.add_f32(0, canon(m.output_min), 0.0);
    t.add_f32(1, canon(m.output_max), 0.0);
    t.end(b)
}

fn xnode(b: &mut Builder, n: &XNode) -> UOffset {
    let union = n
        .xnode_union
        .as_ref()
        .map(|u| (u.type_code(), node_table(b, u)));
    let omm = n.output_min_max.as_ref().map(|m| output_min_max(b, m));
    let mut t = FlatcTable::new(4);
    if let Some((code, off)) = union {
        t.add_u8(0, code, 0);
        t.add_offset(1, off);
    }
    t.add_u32(2, n.debug_handle, 0);
    t.add_offset(3, omm.unwrap_or(0));
    t.end(b)
}

fn tensor_value(b: &mut Builder, v: &XNNTensorValue) -> UOffset {
    let dims = v.dims.as_deref().map(|d| b.create_scalar_vector(d));
    let mut t = FlatcTable::new(8);
    t.add_i16(0, v.datatype.0, 0);
    t.add_u32(1, v.num_dims, 0);
    t.add_offset(2, dims.unwrap_or(0));
    t.add_u32(3, v.constant_buffer_idx, 0);
    t.add_u32(4, v.external_id, 0);
    t.add_u32(5, v.flags, 0);
    t.add_u32(6, v.id_out, 0);
    t.add_i16(7, v.dq_datatype.0, 0);
    t.end(b)
}

fn quant_params(b: &mut Builder, q: &XNNQuantParams) -> UOffset {
    match q {
        XNNQuantParams::PerChannelQuant(p) => {
            let scale = p.scale.as_deref().map(|s| f32_vector(b, s));
            let mut t = FlatcTable::new(4);
            t.add_offset(0, scale.unwrap_or(0));
            t.add_i32(1, p.channel_dim, 0);
            t.add_u32(2, p.scale_buffer_idx, 0);
            t.add_u32(3, p.num_scales, 0);
            t.end(b)
        }
        XNNQuantParams::PerTensorQuant(p) => {
            let mut t = FlatcTable::new(2);
            t.add_f32(0, canon(p.scale), 0.0);
            t.add_i32(1, p.zero_point, 0);
            t.end(b)
        }
        XNNQuantParams::PerTokenDynamicQuant(p) => {
            let mut t = FlatcTable::new(1);
            t.add_i32(0, p.num_nonbatch_dims, 0);
            t.end(b)
        }
        XNNQuantParams::PerChannelGroupQuant(p) => {
            let scale = p.scale.as_deref().map(|s| f32_vector(b, s));
            let bf16 = p.scale_bf16.as_deref().map(|s| b.create_scalar_vector(s));
            let mut t = FlatcTable::new(6);
            t.add_offset(0, scale.unwrap_or(0));
            t.add_i32(1, p.channel_dim, 0);
            t.add_i32(2, p.group_size, 0);
            t.add_offset(3, bf16.unwrap_or(0));
            t.add_u32(4, p.scale_buffer_idx, 0);
            t.add_u32(5, p.num_scales, 0);
            t.end(b)
        }
    }
}

fn xvalue(b: &mut Builder, v: &XValue) -> UOffset {
    let union = v.xvalue_union.as_ref().map(|u| {
        let off = match u {
            XValueUnion::XNNTensorValue(t) => tensor_value(b, t),
            XValueUnion::XNNQuantizedTensorValue(q) => {
                let tv = q.tensor_value.as_ref().map(|t| tensor_value(b, t));
                let qp = q
                    .quant_params
                    .as_ref()
                    .map(|p| (p.type_code(), quant_params(b, p)));
                let mut t = FlatcTable::new(3);
                t.add_offset(0, tv.unwrap_or(0));
                if let Some((code, off)) = qp {
                    t.add_u8(1, code, 0);
                    t.add_offset(2, off);
                }
                t.end(b)
            }
        };
        (u.type_code(), off)
    });
    let mut t = FlatcTable::new(2);
    if let Some((code, off)) = union {
        t.add_u8(0, code, 0);
        t.add_offset(1, off);
    }
    t.end(b)
}

fn constant_data_offset(b: &mut Builder, c: &ConstantDataOffset) -> UOffset {
    let key = c.named_key.as_deref().map(|k| b.create_string(k));
    let mut t = FlatcTable::new(3);
    t.add_u64(0, c.offset, 0);
    t.add_u64(1, c.size, 0);
    t.add_offset(2, key.unwrap_or(0));
    t.end(b)
}

fn buffer(b: &mut Builder, buf: &Buffer) -> UOffset {
    let storage = buf
        .storage
        .as_deref()
        .map(|s| create_force_aligned_vector(b, s, 1, CONSTANT_TENSOR_ALIGNMENT as usize));
    let mut t = FlatcTable::new(1);
    t.add_offset(0, storage.unwrap_or(0));
    t.end(b)
}

fn table_vector<T>(
    b: &mut Builder,
    items: Option<&[T]>,
    mut one: impl FnMut(&mut Builder, &T) -> UOffset,
) -> UOffset {
    match items {
        None => 0,
        Some(items) => {
            let offs: Vec<UOffset> = items.iter().map(|x| one(b, x)).collect();
            b.create_offset_vector(&offs)
        }
    }
}

/// A rough size of the packed graph, to size the builder once.
fn estimated_size(g: &XNNGraph) -> usize {
    let n = g.xnodes.as_ref().map_or(0, Vec::len);
    let v = g.xvalues.as_ref().map_or(0, Vec::len);
    let c = g.constant_data.as_ref().map_or(0, Vec::len);
    n.saturating_mul(96)
        .saturating_add(v.saturating_mul(72))
        .saturating_add(c.saturating_mul(104))
        .saturating_add(256)
}

/// Packs `g` as a bare flatbuffer with file identifier `identifier`, in flatc's order.
pub fn pack_flatbuffer(g: &XNNGraph, identifier: &[u8; 4]) -> Result<Vec<u8>, XnnpackError> {
    let mut b = Builder::with_capacity(estimated_size(g));
    let version = g.version.as_deref().map(|s| b.create_string(s));
    let xnodes = table_vector(&mut b, g.xnodes.as_deref(), xnode);
    let xvalues = table_vector(&mut b, g.xvalues.as_deref(), xvalue);
    let input_ids = g.input_ids.as_deref().map(|v| b.create_scalar_vector(v));
    let output_ids = g.output_ids.as_deref().map(|v| b.create_scalar_vector(v));
    let constant_buffer = table_vector(&mut b, g.constant_buffer.as_deref(), buffer);
    let mem_buffer_sizes = g
        .mem_buffer_sizes
        .as_deref()
        .map(|v| b.create_scalar_vector(v));
    let constant_data = table_vector(&mut b, g.constant_data.as_deref(), constant_data_offset);
    let mut t = FlatcTable::new(9);
    t.add_offset(0, version.unwrap_or(0));
    t.add_offset(1, xnodes);
    t.add_offset(2, xvalues);
    t.add_u32(3, g.num_externs, 0);
    t.add_offset(4, input_ids.unwrap_or(0));
    t.add_offset(5, output_ids.unwrap_or(0));
    t.add_offset(6, constant_buffer);
    t.add_offset(7, mem_buffer_sizes.unwrap_or(0));
    t.add_offset(8, constant_data);
    let root = t.end(&mut b);
    b.try_finish(root, Some(identifier))
        .map_err(XnnpackError::from_build)?;
    b.try_into_finished_data().map_err(XnnpackError::from_build)
}

/// The reference's `convert_to_flatbuffer(graph)`: the bare flatbuffer (identifier
/// `XN01`) that `flatc --binary` writes for the graph's JSON.
pub fn convert_to_flatbuffer(g: &XNNGraph) -> Result<Vec<u8>, XnnpackError> {
    pack_flatbuffer(g, &FILE_IDENTIFIER)
}

/// Wraps a flatbuffer and constant data in the container of the reference's
/// `serialize_xnnpack_binary`: the 32-byte `XH00` header, the flatbuffer zero-padded to
/// a multiple of 16, then the constant data (not padded).
pub fn wrap_payload(flatbuffer: &[u8], constant_data: &[u8]) -> Result<Vec<u8>, XnnpackError> {
    let header = XnnHeader::for_sizes(flatbuffer.len() as u64, constant_data.len() as u64)
        .filter(|_| !flatbuffer.is_empty())
        .ok_or_else(|| {
            XnnpackError::new(
                super::error::XnnpackErrorKind::Build,
                format!(
                    "a flatbuffer of {} bytes cannot be described by the XH00 header",
                    flatbuffer.len()
                ),
            )
        })?;
    let start = header.constant_data_offset as usize;
    let mut out = Vec::with_capacity(start.saturating_add(constant_data.len()));
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(flatbuffer);
    out.resize(start, 0);
    out.extend_from_slice(constant_data);
    Ok(out)
}

/// The reference's `serialize_xnnpack_binary(graph, constant_data)`.
pub fn serialize_xnnpack_binary(
    g: &XNNGraph,
    constant_data: &[u8],
) -> Result<Vec<u8>, XnnpackError> {
    wrap_payload(&convert_to_flatbuffer(g)?, constant_data)
}
