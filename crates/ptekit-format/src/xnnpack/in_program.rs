//! The XNNPACK payloads of a `.pte` program: finding them, and checking each one
//! (verified decode + cross-references against the program's named data and an
//! optional `.ptd`).

use std::collections::HashMap;

use ptekit_flatbuffers::Limits;

use super::decode::{decode_payload, Payload};
use super::error::{XnnpackError, XnnpackErrorKind};
use super::model::{XNNGraph, XNNTensorValue};
use super::validate::{check_definable_payload, validate_payload};
use super::BACKEND_ID;
use crate::flat_tensor::FlatTensorFile;
use crate::program::{
    locate, DataLocation, InstructionArguments, KernelTypes, Tensor, TensorShapeDynamism,
};
use crate::pte::PteFile;
use crate::write::{len64, offset_within};

/// One XNNPACK delegate of a program and its payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct DelegatePayload<'a> {
    /// Index of the execution plan.
    pub plan: usize,
    /// Index of the delegate in the plan's `delegates`.
    pub delegate: usize,
    /// The payload (`None` when the program's reference to it is missing or out of
    /// range; [`PteFile::parse`] rejects out-of-range references, so only an absent
    /// `processed` gives `None`).
    pub bytes: Option<&'a [u8]>,
    /// Where the payload starts in the program's bytes (`None` without a payload).
    pub start: Option<u64>,
}

/// Every delegate whose backend id is `XnnpackBackend`, in plan then delegate order.
pub fn delegate_payloads<'a>(pte: &'a PteFile<'_>) -> Vec<DelegatePayload<'a>> {
    let program = pte.program();
    let inline = program.backend_delegate_data.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for (p, plan) in program.execution_plan.iter().flatten().enumerate() {
        for (d, del) in plan.delegates.iter().flatten().enumerate() {
            if del.id.as_deref() != Some(BACKEND_ID) {
                continue;
            }
            let bytes = del.processed.and_then(|r| {
                let i = r.index as usize;
                if r.location == DataLocation::SEGMENT {
                    pte.segment_data(i)
                } else {
                    inline.get(i).and_then(|b| b.data.as_deref())
                }
            });
            out.push(DelegatePayload {
                plan: p,
                delegate: d,
                bytes,
                start: bytes.and_then(|b| offset_within(pte.bytes(), b)).map(len64),
            });
        }
    }
    out
}

/// Sizes of the named data a program's payloads can refer to: the program's own
/// `named_data` (segment sizes) and, if given, a `.ptd`'s named blobs. The second map
/// holds the keys found only in the `.ptd`.
#[derive(Debug, Clone, Default)]
pub struct NamedSizes {
    /// Keys in the program's named data.
    pub program: HashMap<String, u64>,
    /// Keys in the given `.ptd`.
    pub external: HashMap<String, u64>,
    /// Whether a `.ptd` was given.
    pub with_ptd: bool,
}

impl NamedSizes {
    /// Collects the keys of `pte` and of `ptd`.
    pub fn new(pte: &PteFile<'_>, ptd: Option<&FlatTensorFile<'_>>) -> Self {
        let mut program = HashMap::new();
        for n in pte.program().named_data.iter().flatten() {
            if let Some(key) = &n.key {
                let size = pte
                    .segment_data(n.segment_index as usize)
                    .map_or(0, |d| d.len() as u64);
                program.insert(key.clone(), size);
            }
        }
        let mut external = HashMap::new();
        if let Some(ptd) = ptd {
            for n in ptd.flat_tensor().named_data.iter().flatten() {
                if let Some(key) = &n.key {
                    if let Some((_, data)) = ptd.named(key) {
                        external.insert(key.clone(), data.len() as u64);
                    }
                }
            }
        }
        NamedSizes {
            program,
            external,
            with_ptd: ptd.is_some(),
        }
    }

    /// Size of `key` in the program or the `.ptd`.
    pub fn any(&self, key: &str) -> Option<u64> {
        self.program
            .get(key)
            .or_else(|| self.external.get(key))
            .copied()
    }

    /// Size of `key` in the program's own named data.
    pub fn in_program(&self, key: &str) -> Option<u64> {
        self.program.get(key).copied()
    }
}

/// Decodes and fully checks one payload (header, flatbuffer, cross-references, then what
/// the runtime checks when it defines the graph in XNNPACK; named keys against `named`). Errors name the delegate and, with
/// the payload's start, the file offset.
pub fn check_payload<'a>(
    d: &DelegatePayload<'a>,
    named: &NamedSizes,
    limits: &Limits,
) -> Result<Payload<'a>, XnnpackError> {
    let located = |e: XnnpackError| {
        let e = e.in_delegate(d.plan, d.delegate);
        match d.start {
            Some(start) => e.in_file_at(start),
            None => e,
        }
    };
    let blob = d.bytes.ok_or_else(|| {
        located(XnnpackError::new(
            XnnpackErrorKind::Header,
            "the delegate has no processed data",
        ))
    })?;
    let payload = decode_payload(blob, limits).map_err(located)?;
    let lookup = |k: &str| named.any(k);
    validate_payload(&payload, Some(&lookup)).map_err(|e| {
        let e = match e.kind() {
            XnnpackErrorKind::NamedKey if named.with_ptd && e.path().ends_with("named_key") => {
                e.note(" nor in the given .ptd")
            }
            _ => e,
        };
        located(e)
    })?;
    check_definable_payload(&payload).map_err(located)?;
    Ok(payload)
}

/// Checks every XNNPACK payload of `pte` with [`check_payload`], named keys looked up in
/// the program's named data and then in `ptd`; returns how many payloads there are.
/// This is what `ptekit verify` checks of the payloads of a `.pte` and of the program
/// embedded in a `.bpte`.
pub fn check_payloads(
    pte: &PteFile<'_>,
    ptd: Option<&FlatTensorFile<'_>>,
    limits: &Limits,
) -> Result<usize, XnnpackError> {
    let named = NamedSizes::new(pte, ptd);
    let payloads = delegate_payloads(pte);
    for d in &payloads {
        let payload = check_payload(d, &named, limits)?;
        check_calls(pte, d, &payload.graph)?;
    }
    Ok(payloads.len())
}

/// XNNPACK's flag of an external input value (`XNN_VALUE_FLAG_EXTERNAL_INPUT`).
const EXTERNAL_INPUT: u32 = 0x1;
/// XNNPACK's flag of an external output value (`XNN_VALUE_FLAG_EXTERNAL_OUTPUT`).
const EXTERNAL_OUTPUT: u32 = 0x2;

/// Checks every call of delegate `d` against its payload `graph` the way the runtime's
/// XNNPACK delegate uses the call's arguments when it executes (`XNNExecutor::
/// prepare_args`, `resize_outputs`): each external input and output value of the graph
/// (a tensor value flagged external input or output) takes the call's argument at its
/// `external_id`, which must exist and be a Tensor (else InvalidArgument, or a read past
/// the arguments). The delegate reshapes an external input to whatever its tensor's
/// sizes are, and resizes an output's tensor to the shape XNNPACK computes: the tensor of
/// an external output has the rank of the value (the runtime does not change a tensor's
/// rank) and, when static, its dims (dims\[j\] = sizes\[dim_order\[j\]\]; a static
/// tensor is not resized: NotSupported). Errors are at the offset of the call's argument
/// in the file.
fn check_calls(
    pte: &PteFile<'_>,
    d: &DelegatePayload<'_>,
    graph: &XNNGraph,
) -> Result<(), XnnpackError> {
    let Some(plan) = pte
        .program()
        .execution_plan
        .as_deref()
        .and_then(|p| p.get(d.plan))
    else {
        return Ok(());
    };
    let values = plan.values.as_deref().unwrap_or_default();
    let externals: Vec<(usize, &XNNTensorValue, &str)> = graph
        .xvalues
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, v)| v.xvalue_union.as_ref()?.tensor().map(|t| (j, t)))
        .flat_map(|(j, t)| {
            let input = (t.flags & EXTERNAL_INPUT != 0).then_some((j, t, "input"));
            let output = (t.flags & EXTERNAL_OUTPUT != 0).then_some((j, t, "output"));
            input.into_iter().chain(output)
        })
        .collect();
    for (c, chain) in plan.chains.iter().flatten().enumerate() {
        for (i, ins) in chain.instructions.iter().flatten().enumerate() {
            let Some(InstructionArguments::DelegateCall(call)) = &ins.instr_args else {
                continue;
            };
            if usize::try_from(call.delegate_index).ok() != Some(d.delegate) {
                continue;
            }
            let Some(args) = call.args.as_deref() else {
                continue; // validate reports it
            };
            let args_path = format!(
                "execution_plan[{}].chains[{c}].instructions[{i}].instr_args.DelegateCall.args",
                d.plan
            );
            for &(j, t, kind) in &externals {
                let ext = t.external_id as usize;
                let fail = |field: String, message: String| {
                    let at = locate(pte.program_bytes(), &field).unwrap_or(0);
                    XnnpackError::new(XnnpackErrorKind::CallArguments, message)
                        .in_field(field)
                        .at_program_field(at)
                };
                let external = format!(
                    "external {kind} xvalues[{j}] (external_id {ext}) of delegate {}",
                    d.delegate
                );
                let Some(&arg) = args.get(ext) else {
                    return Err(fail(
                        args_path.clone(),
                        format!(
                            "{} arguments, but the {external} takes argument {ext}",
                            args.len()
                        ),
                    ));
                };
                let arg_path = format!("{args_path}[{ext}]");
                let Some(value) = usize::try_from(arg).ok().and_then(|a| values.get(a)) else {
                    continue; // validate reports it
                };
                let tensor = match &value.val {
                    Some(KernelTypes::Tensor(tensor)) => tensor,
                    other => {
                        let kind_name = other.as_ref().map_or("NONE", KernelTypes::kind_name);
                        return Err(fail(
                            arg_path,
                            format!(
                                "value {arg} is a {kind_name}, but the {external} takes a \
                                 Tensor: the runtime refuses the call"
                            ),
                        ));
                    }
                };
                if kind == "input" {
                    continue;
                }
                if let Some(message) = output_misfit(tensor, t) {
                    return Err(fail(
                        arg_path,
                        format!(
                            "value {arg} is {message}, but the {external} is {:?}",
                            dims_of(t)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn dims_of(t: &XNNTensorValue) -> &[u32] {
    t.dims.as_deref().unwrap_or_default()
}

/// How a program tensor does not fit the external output value `t` it is passed for
/// (see [`check_calls`]), or `None` when it fits.
fn output_misfit(tensor: &Tensor, t: &XNNTensorValue) -> Option<String> {
    let sizes = tensor.sizes.as_deref().unwrap_or_default();
    let dims = dims_of(t);
    if sizes.len() != dims.len() {
        return Some(format!("a tensor of rank {} ({sizes:?})", sizes.len()));
    }
    if tensor.shape_dynamism != TensorShapeDynamism::STATIC {
        return None;
    }
    let order = tensor.dim_order.as_deref().unwrap_or_default();
    let fits = dims.iter().enumerate().all(|(j, &dim)| {
        let size = order.get(j).and_then(|&o| sizes.get(usize::from(o)));
        size.is_some_and(|&s| i64::from(s) == i64::from(dim))
    });
    (!fits).then(|| format!("a static tensor of sizes {sizes:?} (dim order {order:?})"))
}
