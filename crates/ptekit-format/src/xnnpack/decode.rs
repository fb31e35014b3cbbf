//! Verified decoding of payloads: the container ([`split_payload`]), the identifier,
//! then every table of the flatbuffer through the shared verifier and its [`Limits`].
//! Errors carry the field path (`xnodes[17].XNNFullyConnected.filter_id`) and the byte
//! offset in the payload.

use ptekit_flatbuffers::{Error as FbError, ErrorKind as FbErrorKind, Limits, Table, Verifier};

use super::error::{XnnpackError, XnnpackErrorKind};
use super::header::{split_payload, XnnHeader, FILE_IDENTIFIER, LEGACY_FILE_IDENTIFIER};
use super::model::*;
use crate::fields::{get, named, scalars, R};

/// A decoded payload: the header (if any), the identifier, the graph, and the constant
/// data it carries (borrowed).
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    /// The `XH00` header; `None` for a legacy blob.
    pub header: Option<XnnHeader>,
    /// The flatbuffer's identifier (`XN01` or `XN00`).
    pub identifier: [u8; 4],
    /// Offset of the flatbuffer in the payload.
    pub flatbuffer_offset: usize,
    /// Length of the flatbuffer.
    pub flatbuffer_len: usize,
    /// The graph.
    pub graph: XNNGraph,
    /// Offset of the constant data in the payload.
    pub constant_data_offset: usize,
    /// The constant data after the flatbuffer (empty for legacy blobs).
    pub constant_data: &'a [u8],
    /// Where the tables are in the payload (for error offsets of later checks).
    pub positions: Positions,
}

/// Payload offsets of the root table and of each element table of `xnodes`, `xvalues`
/// and `constant_data` (in element order), and of the fields that the define-time checks
/// look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// The `XNNGraph` table.
    pub root: usize,
    /// Each `XNode` table.
    pub xnodes: Vec<usize>,
    /// Each `XValue` table.
    pub xvalues: Vec<usize>,
    /// Each `ConstantDataOffset` table.
    pub constant_data: Vec<usize>,
    /// The root table's fields.
    pub root_fields: TableFields,
    /// Per node: its union member table's fields (`None`: union type NONE).
    pub node_members: Vec<Option<TableFields>>,
    /// Per node: its `OutputMinMax` table's fields (`None`: absent).
    pub node_min_max: Vec<Option<TableFields>>,
    /// Per value: its `XNNTensorValue` table's fields (of a quantized value: its
    /// `tensor_value`; `None` when there is none).
    pub value_tensors: Vec<Option<TableFields>>,
}

/// Payload offsets of one table and of its fields, by vtable slot (`None`: absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFields {
    /// The table (its `soffset`).
    pub table: usize,
    /// Each field's bytes, by slot.
    pub slots: Vec<Option<usize>>,
}

impl TableFields {
    fn of(t: &Table<'_, '_>) -> Self {
        TableFields {
            table: t.position(),
            // The table was verified: a field position it cannot give is one that is
            // absent. Only the schema's slots are kept: a vtable may claim up to 32,766
            // and be shared by every table of a payload, and recording them all would let
            // a small payload ask for gigabytes.
            slots: (0..t.num_fields().min(MAX_NODE_FIELDS))
                .map(|slot| t.field_position(slot).ok().flatten())
                .collect(),
        }
    }

    /// Where field `slot` is, or the table when the field is absent (its default).
    pub fn field(&self, slot: usize) -> usize {
        self.slots
            .get(slot)
            .copied()
            .flatten()
            .unwrap_or(self.table)
    }

    fn rebase(&mut self, base: usize) {
        self.table = self.table.saturating_add(base);
        for p in self.slots.iter_mut().flatten() {
            *p = p.saturating_add(base);
        }
    }
}

impl Positions {
    fn rebased(mut self, base: usize) -> Self {
        self.root = self.root.saturating_add(base);
        for v in [&mut self.xnodes, &mut self.xvalues, &mut self.constant_data] {
            for p in v.iter_mut() {
                *p = p.saturating_add(base);
            }
        }
        self.root_fields.rebase(base);
        for t in [
            &mut self.node_members,
            &mut self.node_min_max,
            &mut self.value_tensors,
        ] {
            for f in t.iter_mut().flatten() {
                f.rebase(base);
            }
        }
        self
    }
}

/// Decodes and verifies a whole payload (header, flatbuffer, every table).
///
/// Cross-references (value ids, constant indices and ranges, named keys) are checked
/// separately by [`validate`](super::validate).
pub fn decode_payload<'a>(blob: &'a [u8], limits: &Limits) -> Result<Payload<'a>, XnnpackError> {
    let parts = split_payload(blob)?;
    let (graph, identifier, positions) = decode_with_positions(parts.flatbuffer, limits)
        .map_err(|e| e.rebase(parts.flatbuffer_offset))?;
    Ok(Payload {
        header: parts.header,
        identifier,
        flatbuffer_offset: parts.flatbuffer_offset,
        flatbuffer_len: parts.flatbuffer.len(),
        graph,
        constant_data_offset: parts.constant_data_offset,
        constant_data: parts.constant_data,
        positions: positions.rebased(parts.flatbuffer_offset),
    })
}

/// Decodes a bare flatbuffer (identifier `XN00` or `XN01`, as the runtime accepts).
/// Error offsets are relative to `fb`.
pub fn decode_flatbuffer(fb: &[u8], limits: &Limits) -> Result<(XNNGraph, [u8; 4]), XnnpackError> {
    decode_with_positions(fb, limits).map(|(g, id, _)| (g, id))
}

fn decode_with_positions(
    fb: &[u8],
    limits: &Limits,
) -> Result<(XNNGraph, [u8; 4], Positions), XnnpackError> {
    let verifier = Verifier::new(fb, *limits).map_err(|e| XnnpackError::from_flatbuffer(e, 0))?;
    let id = verifier.file_identifier();
    let identifier = match id {
        Some(id) if id == FILE_IDENTIFIER || id == LEGACY_FILE_IDENTIFIER => id,
        _ => {
            let shown = id.map_or_else(
                || "none (shorter than 8 bytes)".to_string(),
                |id| format!("{:?}", String::from_utf8_lossy(&id)),
            );
            return Err(XnnpackError::new(
                XnnpackErrorKind::Identifier,
                format!("flatbuffer identifier {shown}, expected \"XN00\" or \"XN01\""),
            )
            .at(4));
        }
    };
    let root = verifier
        .root()
        .map_err(|e| XnnpackError::from_flatbuffer(e, 0))?;
    let mut positions = Positions {
        root: root.position(),
        root_fields: TableFields::of(&root),
        ..Positions::default()
    };
    let graph = xnn_graph(root, &mut positions).map_err(|e| XnnpackError::from_flatbuffer(e, 0))?;
    Ok((graph, identifier, positions))
}

impl XnnpackError {
    /// Shifts the offset of an error found in a flatbuffer that starts at `base`.
    fn rebase(self, base: usize) -> Self {
        match self.offset() {
            Some(o) => self.at(o.saturating_add(base as u64)),
            None => self,
        }
    }
}

fn xnn_graph(t: Table<'_, '_>, pos: &mut Positions) -> R<XNNGraph> {
    Ok(XNNGraph {
        version: t.string(0).map_err(named("version"))?.map(str::to_owned),
        xnodes: t.decode_table_vector(1, "xnodes", |n| {
            pos.xnodes.push(n.position());
            xnode(n, pos)
        })?,
        xvalues: t.decode_table_vector(2, "xvalues", |v| {
            pos.xvalues.push(v.position());
            xvalue(v, pos)
        })?,
        num_externs: t.get_u32(3, 0).map_err(named("num_externs"))?,
        input_ids: scalars(&t, 4, "input_ids")?,
        output_ids: scalars(&t, 5, "output_ids")?,
        constant_buffer: t.decode_table_vector(6, "constant_buffer", |b| {
            Ok(Buffer {
                storage: b.bytes(0).map_err(named("storage"))?.map(<[u8]>::to_vec),
            })
        })?,
        mem_buffer_sizes: scalars(&t, 7, "mem_buffer_sizes")?,
        constant_data: t.decode_table_vector(8, "constant_data", |c| {
            pos.constant_data.push(c.position());
            Ok(ConstantDataOffset {
                offset: c.get_u64(0, 0).map_err(named("offset"))?,
                size: c.get_u64(1, 0).map_err(named("size"))?,
                named_key: c.string(2).map_err(named("named_key"))?.map(str::to_owned),
            })
        })?,
    })
}

struct TableSource<'t, 'v, 'buf>(&'t Table<'v, 'buf>);

impl FieldSource for TableSource<'_, '_, '_> {
    type Error = FbError;
    fn u32(&mut self, name: &'static str, slot: usize) -> R<u32> {
        get(self.0, slot, 0u32, name)
    }
    fn f32(&mut self, name: &'static str, slot: usize) -> R<f32> {
        get(self.0, slot, 0.0f32, name)
    }
    fn u32s(&mut self, name: &'static str, slot: usize) -> R<Option<Vec<u32>>> {
        scalars(self.0, slot, name)
    }
}

fn xnode(t: Table<'_, '_>, pos: &mut Positions) -> R<XNode> {
    let union = t.union(0, 1).map_err(named("xnode_union"))?;
    pos.node_members
        .push(union.map(|u| TableFields::of(&u.table())));
    pos.node_min_max
        .push(t.table(3).ok().flatten().map(|m| TableFields::of(&m)));
    let xnode_union = match union {
        None => None,
        Some(u) => {
            let name = XNodeUnion::name_of(u.tag())
                .ok_or_else(|| u.unknown_tag().in_field("xnode_union"))?;
            let table = u.table();
            let node = XNodeUnion::take_named(name, &mut TableSource(&table))
                .unwrap_or_else(|| Err(u.unknown_tag()))
                .map_err(|e| e.in_union_member(name))?;
            Some(node)
        }
    };
    Ok(XNode {
        xnode_union,
        debug_handle: t.get_u32(2, 0).map_err(named("debug_handle"))?,
        output_min_max: match t.table(3).map_err(named("output_min_max"))? {
            None => None,
            Some(m) => Some(OutputMinMax {
                output_min: m
                    .get_f32(0, 0.0)
                    .map_err(named("output_min"))
                    .map_err(named("output_min_max"))?,
                output_max: m
                    .get_f32(1, 0.0)
                    .map_err(named("output_max"))
                    .map_err(named("output_min_max"))?,
            }),
        },
    })
}

fn tensor_value(t: Table<'_, '_>) -> R<XNNTensorValue> {
    Ok(XNNTensorValue {
        datatype: XNNDatatype(t.get_i16(0, 0).map_err(named("datatype"))?),
        num_dims: t.get_u32(1, 0).map_err(named("num_dims"))?,
        dims: scalars(&t, 2, "dims")?,
        constant_buffer_idx: t.get_u32(3, 0).map_err(named("constant_buffer_idx"))?,
        external_id: t.get_u32(4, 0).map_err(named("external_id"))?,
        flags: t.get_u32(5, 0).map_err(named("flags"))?,
        id_out: t.get_u32(6, 0).map_err(named("id_out"))?,
        dq_datatype: XNNDatatype(t.get_i16(7, 0).map_err(named("dq_datatype"))?),
    })
}

fn quant_params(tag: u8, t: Table<'_, '_>) -> Option<R<XNNQuantParams>> {
    let r = match tag {
        1 => (|| {
            Ok(XNNQuantParams::PerChannelQuant(PerChannelQuant {
                scale: scalars(&t, 0, "scale")?,
                channel_dim: t.get_i32(1, 0).map_err(named("channel_dim"))?,
                scale_buffer_idx: t.get_u32(2, 0).map_err(named("scale_buffer_idx"))?,
                num_scales: t.get_u32(3, 0).map_err(named("num_scales"))?,
            }))
        })(),
        2 => (|| {
            Ok(XNNQuantParams::PerTensorQuant(PerTensorQuant {
                scale: t.get_f32(0, 0.0).map_err(named("scale"))?,
                zero_point: t.get_i32(1, 0).map_err(named("zero_point"))?,
            }))
        })(),
        3 => t
            .get_i32(0, 0)
            .map_err(named("num_nonbatch_dims"))
            .map(|n| {
                XNNQuantParams::PerTokenDynamicQuant(PerTokenDynamicQuant {
                    num_nonbatch_dims: n,
                })
            }),
        4 => (|| {
            Ok(XNNQuantParams::PerChannelGroupQuant(PerChannelGroupQuant {
                scale: scalars(&t, 0, "scale")?,
                channel_dim: t.get_i32(1, 0).map_err(named("channel_dim"))?,
                group_size: t.get_i32(2, 0).map_err(named("group_size"))?,
                scale_bf16: t
                    .scalar_vector::<u16>(3)
                    .map_err(named("scale_bf16"))?
                    .map(|v| v.to_vec()),
                scale_buffer_idx: t.get_u32(4, 0).map_err(named("scale_buffer_idx"))?,
                num_scales: t.get_u32(5, 0).map_err(named("num_scales"))?,
            }))
        })(),
        _ => return None,
    };
    Some(r)
}

fn xvalue(t: Table<'_, '_>, pos: &mut Positions) -> R<XValue> {
    let union = t.union(0, 1).map_err(named("xvalue_union"))?;
    pos.value_tensors.push(union.and_then(|u| {
        match u.tag() {
            2 => u
                .table()
                .table(0)
                .ok()
                .flatten()
                .map(|t| TableFields::of(&t)),
            _ => Some(TableFields::of(&u.table())),
        }
    }));
    let xvalue_union = match union {
        None => None,
        Some(u) => match u.tag() {
            1 => Some(XValueUnion::XNNTensorValue(
                tensor_value(u.table()).map_err(|e| e.in_union_member("XNNTensorValue"))?,
            )),
            2 => {
                let q = u.table();
                let name = "XNNQuantizedTensorValue";
                let tensor_value = match q
                    .table(0)
                    .map_err(named("tensor_value"))
                    .map_err(|e| e.in_union_member(name))?
                {
                    None => None,
                    Some(tv) => Some(
                        tensor_value(tv)
                            .map_err(named("tensor_value"))
                            .map_err(|e| e.in_union_member(name))?,
                    ),
                };
                let quant_params = match q
                    .union(1, 2)
                    .map_err(named("quant_params"))
                    .map_err(|e| e.in_union_member(name))?
                {
                    None => None,
                    Some(p) => {
                        let member = XNNQuantParams::NAMES
                            .get(usize::from(p.tag()).wrapping_sub(1))
                            .copied()
                            .unwrap_or("?");
                        let decoded = quant_params(p.tag(), p.table())
                            .unwrap_or_else(|| Err(p.unknown_tag()))
                            .map_err(|e| {
                                let e = if matches!(e.kind(), FbErrorKind::BadUnionType { .. }) {
                                    e
                                } else {
                                    e.in_union_member(member)
                                };
                                e.in_field("quant_params").in_union_member(name)
                            })?;
                        Some(decoded)
                    }
                };
                Some(XValueUnion::XNNQuantizedTensorValue(
                    XNNQuantizedTensorValue {
                        tensor_value,
                        quant_params,
                    },
                ))
            }
            _ => return Err(u.unknown_tag().in_field("xvalue_union")),
        },
    };
    Ok(XValue { xvalue_union })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptekit_flatbuffers::Builder;

    /// A graph whose root vtable claims 30,000 slots (one unknown field set far out, which
    /// readers skip): the positions kept for error messages stay at the schema's size.
    #[test]
    fn a_huge_vtable_records_only_the_schema_slots() {
        let mut b = Builder::new();
        b.start_object(30_000);
        b.add_scalar(3, 2u32, 0); // num_externs
        b.add_scalar(29_999, 1u8, 0);
        let root = b.end_object();
        b.finish(root, Some(&FILE_IDENTIFIER));
        let fb = b.finished_data();
        let (graph, _, positions) =
            decode_with_positions(fb, &Limits::default()).expect("a valid flatbuffer");
        assert_eq!(graph.num_externs, 2);
        assert_eq!(positions.root_fields.slots.len(), MAX_NODE_FIELDS);
        assert!(positions.root_fields.slots[3].is_some());
    }
}
