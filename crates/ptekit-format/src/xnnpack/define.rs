//! What the reference runtime refuses when it builds the XNNPACK subgraph of a payload
//! (executorch 1.5.1 `XNNCompiler::compileModel`, then `xnn_define_*` of the XNNPACK
//! revision it is built with), checked on the decoded graph so that `verify` refuses
//! what the runtime cannot load:
//!
//! - the graph: `xvalues` and `xnodes` present, `num_externs` at most 4096;
//! - every value (`defineTensor`, `xnn_define_tensor_value` and its quantized variants):
//!   flags only external input/output, at most 6 dimensions, an `external_id` below
//!   `num_externs` (or none), a plain tensor's datatype one XNNPACK keeps unquantized
//!   (fp32, fp16, bf16, int32, pfp32), a `dq_datatype` of qint8 only and only on an
//!   external input;
//! - every node: the value ids it must have are not `XNN_INVALID_VALUE_ID` (optional:
//!   bias, the third to fifth concatenation input, attention's scale and mask), the
//!   clamp (`output_min_max`) of nodes that pass it to XNNPACK is no NaN and not
//!   reversed;
//! - pooling nodes: a window of at least 2 elements;
//! - fully-connected nodes over plain tensors: the input, filter, bias and output
//!   datatypes XNNPACK accepts, and a bf16 filter is constant.
//!
//! Errors name the field and carry where it is ([`Where`]).

use std::collections::HashMap;

use super::error::{XnnpackError, XnnpackErrorKind};
use super::model::*;
use super::validate::XNN_INVALID_VALUE_ID;

/// `XNN_VALUE_FLAG_EXTERNAL_INPUT | XNN_VALUE_FLAG_EXTERNAL_OUTPUT`: the only value
/// flags the delegate passes on.
const ALLOWED_VALUE_FLAGS: u32 = 0x1 | 0x2;
const EXTERNAL_INPUT: u32 = 0x1;
/// `XNN_MAX_TENSOR_DIMS`.
const MAX_DIMS: usize = 6;
/// The most external values the delegate creates a subgraph for.
const MAX_EXTERNS: u32 = 4096;

const FP32: XNNDatatype = XNNDatatype::FP32;
const FP16: XNNDatatype = XNNDatatype::FP16;
const BF16: XNNDatatype = XNNDatatype::BF16;

/// Where a define-time problem is: a field (by vtable slot) of the root table, of a
/// value's tensor table, of a node's member table or of its `OutputMinMax`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Where {
    Root(usize),
    Value(usize, usize),
    Node(usize, usize),
    MinMax(usize, usize),
}

type Checked = Result<(), Box<(XnnpackError, Where)>>;

fn define_err(message: String) -> XnnpackError {
    XnnpackError::new(XnnpackErrorKind::Define, message)
}

/// The `dq_datatype` the runtime acts on: a value the schema does not declare is read as
/// "invalid", i.e. not dynamically quantized.
fn effective_dq(t: &XNNTensorValue) -> XNNDatatype {
    match t.dq_datatype.name() {
        Some(_) => t.dq_datatype,
        None => XNNDatatype::INVALID,
    }
}

fn dtype(d: XNNDatatype) -> String {
    d.name().map_or_else(|| format!("{}", d.0), str::to_owned)
}

/// The checks of the [module documentation](self), in the order the runtime makes them
/// (graph, values in order, nodes in order).
pub(super) fn check(g: &XNNGraph) -> Checked {
    if g.xvalues.is_none() || g.xnodes.is_none() {
        let (slot, name) = if g.xvalues.is_none() {
            (2, "xvalues")
        } else {
            (1, "xnodes")
        };
        return Err(Box::new((
            define_err("missing (the runtime refuses a graph without values or nodes)".into())
                .in_field(name),
            Where::Root(slot),
        )));
    }
    if g.num_externs > MAX_EXTERNS {
        return Err(Box::new((
            define_err(format!(
                "{} external values, the runtime takes at most {MAX_EXTERNS}",
                g.num_externs
            ))
            .in_field("num_externs"),
            Where::Root(3),
        )));
    }
    let values = g.xvalues.as_deref().unwrap_or_default();
    let mut by_id = HashMap::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let Some(u) = &v.xvalue_union else { continue };
        let Some(t) = u.tensor() else { continue };
        check_value(u, t, g.num_externs).map_err(|(e, slot)| {
            let e = match u {
                XValueUnion::XNNQuantizedTensorValue(_) => e.in_field("tensor_value"),
                XValueUnion::XNNTensorValue(_) => e,
            };
            Box::new((
                e.in_field(u.name()).in_field(format!("xvalues[{i}]")),
                Where::Value(i, slot),
            ))
        })?;
        by_id.entry(t.id_out).or_insert(u);
    }
    for (i, n) in g.xnodes.as_deref().unwrap_or_default().iter().enumerate() {
        let Some(u) = &n.xnode_union else { continue };
        let in_node = |e: XnnpackError| e.in_field(format!("xnodes[{i}]"));
        check_ids(u)
            .map_err(|(e, slot)| Box::new((in_node(e.in_field(u.name())), Where::Node(i, slot))))?;
        if takes_output_range(u) {
            if let Some(m) = &n.output_min_max {
                check_range(m).map_err(|(e, slot)| {
                    Box::new((
                        in_node(e.in_field("output_min_max")),
                        Where::MinMax(i, slot),
                    ))
                })?;
            }
        }
        let member = |(e, slot): (XnnpackError, usize)| {
            Box::new((in_node(e.in_field(u.name())), Where::Node(i, slot)))
        };
        check_pooling(u).map_err(member)?;
        if let XNodeUnion::XNNFullyConnected(fc) = u {
            check_fully_connected(fc, &by_id).map_err(member)?;
        }
    }
    Ok(())
}

fn check_value(
    u: &XValueUnion,
    t: &XNNTensorValue,
    num_externs: u32,
) -> Result<(), (XnnpackError, usize)> {
    if t.flags & !ALLOWED_VALUE_FLAGS != 0 {
        return Err((
            define_err(format!(
                "0x{:x} has bits other than external input (0x1) and output (0x2): the runtime refuses them",
                t.flags
            ))
            .in_field("flags"),
            5,
        ));
    }
    let num_dims = t.dims.as_ref().map_or(0, Vec::len);
    if num_dims > MAX_DIMS {
        return Err((
            define_err(format!(
                "{num_dims} dimensions, XNNPACK takes at most {MAX_DIMS}"
            ))
            .in_field("dims"),
            2,
        ));
    }
    if t.external_id != XNN_INVALID_VALUE_ID && t.external_id >= num_externs {
        return Err((
            define_err(format!(
                "{} is not below num_externs ({num_externs})",
                t.external_id
            ))
            .in_field("external_id"),
            4,
        ));
    }
    // The runtime maps a datatype the schema does not declare to "invalid", and an
    // invalid dq_datatype means "not dynamically quantized".
    let dq = effective_dq(t);
    if dq != XNNDatatype::INVALID {
        if dq != XNNDatatype::QINT8 {
            return Err((
                define_err(format!(
                    "{}: the runtime quantizes dynamically to qint8 only",
                    dtype(t.dq_datatype)
                ))
                .in_field("dq_datatype"),
                7,
            ));
        }
        if t.flags & EXTERNAL_INPUT == 0 {
            return Err((
                define_err(
                    "set on a value that is no external input: the runtime quantizes only those dynamically"
                        .into(),
                )
                .in_field("dq_datatype"),
                7,
            ));
        }
    }
    if matches!(u, XValueUnion::XNNTensorValue(_))
        && dq == XNNDatatype::INVALID
        && !matches!(
            t.datatype,
            FP32 | FP16 | BF16 | XNNDatatype::INT32 | XNNDatatype::PFP32
        )
    {
        return Err((
            define_err(format!(
                "{} for an unquantized tensor: XNNPACK takes fp32, fp16, bf16, int32 or pfp32",
                dtype(t.datatype)
            ))
            .in_field("datatype"),
            0,
        ));
    }
    Ok(())
}

/// Value-id fields a node may leave at `XNN_INVALID_VALUE_ID`.
fn optional_id(name: &str) -> bool {
    matches!(
        name,
        "bias_id" | "input3_id" | "input4_id" | "input5_id" | "scale_id" | "mask_id"
    )
}

struct RequiredIds {
    missing: Option<(&'static str, usize)>,
}

impl FieldSink for RequiredIds {
    fn u32(&mut self, name: &'static str, slot: usize, value: u32) {
        if self.missing.is_none()
            && name.ends_with("_id")
            && !optional_id(name)
            && value == XNN_INVALID_VALUE_ID
        {
            self.missing = Some((name, slot));
        }
    }
    fn f32(&mut self, _: &'static str, _: usize, _: f32) {}
    fn u32s(&mut self, _: &'static str, _: usize, _: Option<&[u32]>) {}
}

fn check_ids(u: &XNodeUnion) -> Result<(), (XnnpackError, usize)> {
    let mut sink = RequiredIds { missing: None };
    u.put(&mut sink);
    match sink.missing {
        None => Ok(()),
        Some((name, slot)) => Err((
            define_err(format!(
                "XNN_INVALID_VALUE_ID ({XNN_INVALID_VALUE_ID}): XNNPACK needs this value"
            ))
            .in_field(name),
            slot,
        )),
    }
}

/// Nodes whose `output_min_max` the runtime passes to an `xnn_define_*` that checks it.
/// Clamp and the binary nodes (Add, Subtract, Multiply, Div) carry a range too, but the
/// XNNPACK of the 1.5.1 wheel defines and runs them with a reversed or NaN one (the
/// reference exporter writes `clamp(x, 2, 1)` as a Clamp of range [2, 1]; a Clamp with
/// a NaN output_min and an Add with output_max -inf or NaN load and execute), so their
/// ranges are not checked.
fn takes_output_range(u: &XNodeUnion) -> bool {
    matches!(
        u,
        XNodeUnion::XNNFullyConnected(_)
            | XNodeUnion::XNNConv2d(_)
            | XNodeUnion::XNNDepthwiseConv2d(_)
            | XNodeUnion::XNNConvTranspose2d(_)
            | XNodeUnion::XNNAvgPooling2d(_)
            | XNodeUnion::XNNMaxPooling2d(_)
            | XNodeUnion::XNNGlobalAvgPooling2d(_)
    )
}

fn check_range(m: &OutputMinMax) -> Result<(), (XnnpackError, usize)> {
    for (name, slot, v) in [
        ("output_min", 0, m.output_min),
        ("output_max", 1, m.output_max),
    ] {
        if v.is_nan() {
            return Err((
                define_err("NaN: XNNPACK refuses a NaN bound".into()).in_field(name),
                slot,
            ));
        }
    }
    if m.output_min > m.output_max {
        return Err((
            define_err(format!(
                "{} is below output_min {}: XNNPACK refuses a reversed range",
                m.output_max, m.output_min
            ))
            .in_field("output_max"),
            1,
        ));
    }
    Ok(())
}

/// Pooling windows: XNNPACK refuses an empty one (height times width, in 32 bits, is 0)
/// and a single element, for max, average and argmax pooling alike.
fn check_pooling(u: &XNodeUnion) -> Result<(), (XnnpackError, usize)> {
    // The slots of pooling_height and pooling_width in both tables.
    const HEIGHT: usize = 4;
    let (h, w) = match u {
        XNodeUnion::XNNMaxPooling2d(p) | XNodeUnion::XNNAvgPooling2d(p) => {
            (p.pooling_height, p.pooling_width)
        }
        XNodeUnion::XNNArgMaxPooling2d(p) => (p.pooling_height, p.pooling_width),
        _ => return Ok(()),
    };
    match h.wrapping_mul(w) {
        0 | 1 => Err((
            define_err(format!(
                "a {h}x{w} pooling window: XNNPACK needs at least 2 elements"
            ))
            .in_field("pooling_height"),
            HEIGHT,
        )),
        _ => Ok(()),
    }
}

/// The (input, filter, bias, output) datatypes of an unquantized fully-connected node
/// that XNNPACK defines (`None`: no bias).
const FC_DATATYPES: [(XNNDatatype, XNNDatatype, Option<XNNDatatype>, XNNDatatype); 11] = [
    (BF16, BF16, Some(FP32), FP32),
    (FP32, FP32, Some(FP32), FP32),
    (FP16, FP32, Some(FP32), FP16),
    (FP16, FP16, Some(FP16), FP16),
    (FP32, FP16, Some(FP16), FP32),
    (FP32, FP16, Some(FP32), FP32),
    (BF16, BF16, None, FP32),
    (FP32, FP32, None, FP32),
    (FP16, FP32, None, FP16),
    (FP16, FP16, None, FP16),
    (FP32, FP16, None, FP32),
];

/// Slots of `XNNFullyConnected`.
const FC_INPUT: usize = 0;
const FC_FILTER: usize = 1;

fn check_fully_connected(
    fc: &XNNFullyConnected,
    by_id: &HashMap<u32, &XValueUnion>,
) -> Result<(), (XnnpackError, usize)> {
    // Unquantized tensors only: the datatype XNNPACK sees is the one stored.
    let plain = |id: u32| match by_id.get(&id) {
        Some(XValueUnion::XNNTensorValue(t)) if effective_dq(t) == XNNDatatype::INVALID => Some(t),
        _ => None,
    };
    let (Some(input), Some(filter), Some(output)) = (
        plain(fc.input1_id),
        plain(fc.filter_id),
        plain(fc.output_id),
    ) else {
        return Ok(());
    };
    let bias = match fc.bias_id {
        XNN_INVALID_VALUE_ID => None,
        id => match plain(id) {
            Some(b) => Some(b.datatype),
            None => return Ok(()),
        },
    };
    if filter.datatype == BF16 && filter.constant_buffer_idx == 0 {
        return Err((
            define_err(
                "a bf16 filter that is not constant: XNNPACK takes only constant bf16 filters"
                    .into(),
            )
            .in_field("filter_id"),
            FC_FILTER,
        ));
    }
    // The runtime computes a bf16 x bf16 -> bf16 node in fp32 and converts the output.
    let out = if [input, filter, output].iter().all(|t| t.datatype == BF16) {
        FP32
    } else {
        output.datatype
    };
    let key = (input.datatype, filter.datatype, bias, out);
    if FC_DATATYPES.contains(&key) {
        return Ok(());
    }
    let bias_text = match bias {
        Some(b) => format!(", bias {}", dtype(b)),
        None => String::new(),
    };
    Err((
        define_err(format!(
            "datatypes input {}, filter {}{bias_text}, output {}: XNNPACK has no fully-connected operator for them",
            dtype(input.datatype),
            dtype(filter.datatype),
            dtype(output.datatype)
        ))
        .in_field("input1_id"),
        FC_INPUT,
    ))
}
