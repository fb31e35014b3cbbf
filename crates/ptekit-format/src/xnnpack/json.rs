//! Lossless JSON of a payload (`ptekit xnnpack dump`): the reference dataclasses' field
//! names, `null` for absent fields, unions as `{"<member>": {...}}` objects, floats as
//! the exact value of the stored `f32` (`"nan"`, `"inf"`, `"-inf"` as strings; a
//! non-canonical NaN as `"nan:0x........"`), u64 as JSON integers.

use serde_json::{json, Map, Value};

use super::decode::Payload;
use super::model::*;
use super::pack::CANONICAL_NAN;

/// An `f32` as JSON without loss.
pub fn f32_json(x: f32) -> Value {
    if x.is_nan() {
        if x.to_bits() == CANONICAL_NAN {
            return json!("nan");
        }
        return json!(format!("nan:0x{:08x}", x.to_bits()));
    }
    if x.is_infinite() {
        return json!(if x > 0.0 { "inf" } else { "-inf" });
    }
    // f32 -> f64 is exact; serde_json prints the shortest text that reads back as this f64.
    json!(f64::from(x))
}

fn opt<T>(x: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    x.map_or(Value::Null, f)
}

struct JsonSink(Map<String, Value>);

impl FieldSink for JsonSink {
    fn u32(&mut self, name: &'static str, _: usize, value: u32) {
        self.0.insert(name.into(), json!(value));
    }
    fn f32(&mut self, name: &'static str, _: usize, value: f32) {
        self.0.insert(name.into(), f32_json(value));
    }
    fn u32s(&mut self, name: &'static str, _: usize, value: Option<&[u32]>) {
        self.0.insert(name.into(), opt(value, |v| json!(v)));
    }
}

fn tensor(t: &XNNTensorValue) -> Value {
    json!({
        "datatype": t.datatype.0,
        "num_dims": t.num_dims,
        "dims": t.dims,
        "constant_buffer_idx": t.constant_buffer_idx,
        "external_id": t.external_id,
        "flags": t.flags,
        "id_out": t.id_out,
        "dq_datatype": t.dq_datatype.0,
    })
}

fn f32s(v: Option<&[f32]>) -> Value {
    opt(v, |v| {
        Value::Array(v.iter().map(|x| f32_json(*x)).collect())
    })
}

fn quant(q: &XNNQuantParams) -> Value {
    let body = match q {
        XNNQuantParams::PerChannelQuant(p) => json!({
            "scale": f32s(p.scale.as_deref()), "channel_dim": p.channel_dim,
            "scale_buffer_idx": p.scale_buffer_idx, "num_scales": p.num_scales,
        }),
        XNNQuantParams::PerTensorQuant(p) => json!({
            "scale": f32_json(p.scale), "zero_point": p.zero_point,
        }),
        XNNQuantParams::PerTokenDynamicQuant(p) => json!({
            "num_nonbatch_dims": p.num_nonbatch_dims,
        }),
        XNNQuantParams::PerChannelGroupQuant(p) => json!({
            "scale": f32s(p.scale.as_deref()), "channel_dim": p.channel_dim,
            "group_size": p.group_size, "scale_bf16": p.scale_bf16,
            "scale_buffer_idx": p.scale_buffer_idx, "num_scales": p.num_scales,
        }),
    };
    json!({ q.name(): body })
}

/// The graph as JSON.
pub fn graph_json(g: &XNNGraph) -> Value {
    let xnodes = g.xnodes.as_deref().map(|ns| {
        ns.iter()
            .map(|n| {
                let union = opt(n.xnode_union.as_ref(), |u| {
                    let mut sink = JsonSink(Map::new());
                    u.put(&mut sink);
                    json!({ u.name(): Value::Object(sink.0) })
                });
                json!({
                    "xnode_union": union,
                    "debug_handle": n.debug_handle,
                    "output_min_max": opt(n.output_min_max.as_ref(), |m| json!({
                        "output_min": f32_json(m.output_min),
                        "output_max": f32_json(m.output_max),
                    })),
                })
            })
            .collect::<Vec<_>>()
    });
    let xvalues = g.xvalues.as_deref().map(|vs| {
        vs.iter()
            .map(|v| {
                json!({ "xvalue_union": opt(v.xvalue_union.as_ref(), |u| match u {
                    XValueUnion::XNNTensorValue(t) => json!({ "XNNTensorValue": tensor(t) }),
                    XValueUnion::XNNQuantizedTensorValue(q) => json!({ "XNNQuantizedTensorValue": {
                        "tensor_value": opt(q.tensor_value.as_ref(), tensor),
                        "quant_params": opt(q.quant_params.as_ref(), quant),
                    }}),
                })})
            })
            .collect::<Vec<_>>()
    });
    json!({
        "version": g.version,
        "xnodes": xnodes,
        "xvalues": xvalues,
        "num_externs": g.num_externs,
        "input_ids": g.input_ids,
        "output_ids": g.output_ids,
        "constant_buffer": g.constant_buffer.as_deref().map(|bs| bs.iter().map(|b| json!({"storage": b.storage})).collect::<Vec<_>>()),
        "mem_buffer_sizes": g.mem_buffer_sizes,
        "constant_data": g.constant_data.as_deref().map(|cs| cs.iter().map(|c| json!({
            "offset": c.offset, "size": c.size, "named_key": c.named_key,
        })).collect::<Vec<_>>()),
    })
}

/// The payload as JSON: container facts and the graph (constant bytes by size only).
pub fn payload_json(p: &Payload<'_>) -> Value {
    json!({
        "header": opt(p.header.as_ref(), |h| json!({
            "header_length": h.header_length,
            "flatbuffer_offset": h.flatbuffer_offset,
            "flatbuffer_size": h.flatbuffer_size,
            "constant_data_offset": h.constant_data_offset,
            "constant_data_size": h.constant_data_size,
        })),
        "identifier": String::from_utf8_lossy(&p.identifier),
        "graph": graph_json(&p.graph),
    })
}
