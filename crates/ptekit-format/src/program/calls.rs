//! The calls of a method: its `KernelCall` and `DelegateCall` instructions with their
//! targets and argument values, and the questions answered from them (which calls use a
//! value). Shared by the `.pte` summary and the analyses above it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{ExecutionPlan, InstructionArguments, KernelTypes, Operator, Tensor};

/// `name.overload`, or `name` when the overload is empty (the reference's spelling).
pub fn operator_name(op: &Operator) -> String {
    let name = op.name.as_deref().unwrap_or("");
    match op.overload.as_deref() {
        Some(o) if !o.is_empty() => format!("{name}.{o}"),
        _ => name.to_string(),
    }
}

/// What an instruction calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// A kernel: index into the plan's `operators`.
    Kernel(usize),
    /// A delegate: index into the plan's `delegates`.
    Delegate(usize),
}

/// One `KernelCall` or `DelegateCall` instruction.
#[derive(Debug, Clone, Copy)]
pub struct Call<'p> {
    /// What it calls (the index may be out of range in an unvalidated program).
    pub callee: Callee,
    /// Its argument value indices.
    pub args: &'p [i32],
}

/// The kernel and delegate calls of `plan`, chain by chain in instruction order
/// (negative target indices are skipped).
pub fn calls<'p>(plan: &'p ExecutionPlan<'_>) -> impl Iterator<Item = Call<'p>> + 'p {
    plan.chains
        .iter()
        .flatten()
        .flat_map(|c| c.instructions.iter().flatten())
        .filter_map(|ins| match &ins.instr_args {
            Some(InstructionArguments::KernelCall(k)) => Some(Call {
                callee: Callee::Kernel(usize::try_from(k.op_index).ok()?),
                args: k.args.as_deref().unwrap_or(&[]),
            }),
            Some(InstructionArguments::DelegateCall(d)) => Some(Call {
                callee: Callee::Delegate(usize::try_from(d.delegate_index).ok()?),
                args: d.args.as_deref().unwrap_or(&[]),
            }),
            _ => None,
        })
}

/// The name of what a call targets: the operator's name, or `delegate:ID`; `None` when
/// the index is out of range.
pub fn callee_name(plan: &ExecutionPlan<'_>, callee: Callee) -> Option<String> {
    match callee {
        Callee::Kernel(i) => plan.operators.as_deref()?.get(i).map(operator_name),
        Callee::Delegate(i) => plan
            .delegates
            .as_deref()?
            .get(i)
            .map(|d| format!("delegate:{}", d.id.as_deref().unwrap_or(""))),
    }
}

/// Where a value is used: argument `arg_index` of an operator or delegate call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Operator name, or `delegate:ID`.
    pub name: String,
    /// Position in the call's arguments.
    pub arg_index: usize,
}

/// `value index → calls using it` (as a direct argument), like the reference's
/// `_build_tensor_to_operators` in `diff_pte.py`.
pub fn value_usages(plan: &ExecutionPlan<'_>) -> BTreeMap<usize, Vec<Usage>> {
    let mut map: BTreeMap<usize, Vec<Usage>> = BTreeMap::new();
    for call in calls(plan) {
        let Some(name) = callee_name(plan, call.callee) else {
            continue;
        };
        for (arg_index, &v) in call.args.iter().enumerate() {
            if let Ok(v) = usize::try_from(v) {
                map.entry(v).or_default().push(Usage {
                    name: name.clone(),
                    arg_index,
                });
            }
        }
    }
    map
}

/// The tensor at value index `index`, if that value is a tensor.
pub fn tensor_at<'p>(plan: &'p ExecutionPlan<'_>, index: i32) -> Option<&'p Tensor> {
    let values = plan.values.as_deref()?;
    match usize::try_from(index).ok().and_then(|i| values.get(i))?.val {
        Some(KernelTypes::Tensor(ref t)) => Some(t),
        _ => None,
    }
}

/// The tensors an argument value stands for: itself when it is a tensor, the items of a
/// `TensorList` or `OptionalTensorList` (nulls skipped), nothing otherwise. Yields value
/// indices.
pub fn argument_tensors(plan: &ExecutionPlan<'_>, arg: i32) -> Vec<usize> {
    let Some(values) = plan.values.as_deref() else {
        return Vec::new();
    };
    let is_tensor = |i: i32| tensor_at(plan, i).is_some();
    let Some(value) = usize::try_from(arg).ok().and_then(|i| values.get(i)) else {
        return Vec::new();
    };
    let items = match &value.val {
        Some(KernelTypes::Tensor(_)) => return usize::try_from(arg).into_iter().collect(),
        Some(KernelTypes::TensorList(l)) => l.items.as_deref(),
        Some(KernelTypes::OptionalTensorList(l)) => l.items.as_deref(),
        _ => None,
    };
    items
        .unwrap_or(&[])
        .iter()
        .filter(|&&i| is_tensor(i))
        .filter_map(|&i| usize::try_from(i).ok())
        .collect()
}
