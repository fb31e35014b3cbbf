//! The operators a program calls and the kernel keys a selective build needs: the
//! content of the reference's `gen_oplist --model_file_path` (`operators` and
//! `et_kernel_metadata`).
//!
//! Facts reproduced from the reference (`codegen/tools/selective_build.cpp` and
//! `gen_oplist.py`, executorch 1.5.1):
//! - an operator's name is `name.overload`, or `name` when the overload is empty; every
//!   operator listed by a method counts, called or not;
//! - kernel keys come from `KernelCall` instructions only: `v1/` followed by
//!   `dtype;dim,order` for every tensor argument, joined by `|`. A `TensorList`
//!   argument counts as its first tensor, an `OptionalTensorList` as its first non-null
//!   tensor; an empty list and every non-tensor argument are left out. A call without
//!   tensor arguments gives the key `v1`;
//! - keys of an operator are merged over methods (and files) into a sorted set.

use std::collections::{BTreeMap, BTreeSet};

pub use crate::program::calls::operator_name;
use crate::program::calls::tensor_at;
use crate::program::{ExecutionPlan, KernelTypes, Program, Tensor};

/// Operators and kernel keys of one or more programs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpList {
    /// Every operator listed by any method, sorted, each with the indices (in the order
    /// they were added) of the programs that list it.
    pub operators: BTreeMap<String, Vec<usize>>,
    /// Kernel keys per called operator, sorted.
    pub kernel_metadata: BTreeMap<String, BTreeSet<String>>,
}

impl OpList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the operators and kernel keys of `program`, recorded as source `source`.
    pub fn add_program(&mut self, program: &Program<'_>, source: usize) {
        for plan in program.execution_plan.iter().flatten() {
            for op in plan.operators.iter().flatten() {
                let users = self.operators.entry(operator_name(op)).or_default();
                if users.last() != Some(&source) {
                    users.push(source);
                }
            }
            for (name, key) in kernel_keys(plan) {
                self.kernel_metadata.entry(name).or_default().insert(key);
            }
        }
    }
}

/// The tensor an argument contributes to the kernel key, if any.
fn key_tensor<'p>(plan: &'p ExecutionPlan<'_>, arg: i32) -> Option<&'p Tensor> {
    let values = plan.values.as_deref()?;
    match &usize::try_from(arg).ok().and_then(|i| values.get(i))?.val {
        Some(KernelTypes::Tensor(t)) => Some(t),
        Some(KernelTypes::TensorList(list)) => list
            .items
            .as_deref()
            .and_then(|items| items.first())
            .and_then(|&i| tensor_at(plan, i)),
        Some(KernelTypes::OptionalTensorList(list)) => list
            .items
            .iter()
            .flatten()
            .filter(|&&i| i != -1)
            .find_map(|&i| tensor_at(plan, i)),
        _ => None,
    }
}

/// `(operator, kernel key)` of every kernel call of a method, in instruction order.
pub fn kernel_keys(plan: &ExecutionPlan<'_>) -> Vec<(String, String)> {
    let operators = plan.operators.as_deref().unwrap_or(&[]);
    let mut out = Vec::new();
    for chain in plan.chains.iter().flatten() {
        for ins in chain.instructions.iter().flatten() {
            let Some(crate::program::InstructionArguments::KernelCall(call)) = &ins.instr_args
            else {
                continue;
            };
            let Some(op) = usize::try_from(call.op_index)
                .ok()
                .and_then(|i| operators.get(i))
            else {
                continue;
            };
            let mut key = String::from("v1/");
            for &arg in call.args.iter().flatten() {
                if let Some(t) = key_tensor(plan, arg) {
                    let order: Vec<String> = t
                        .dim_order
                        .iter()
                        .flatten()
                        .map(ToString::to_string)
                        .collect();
                    key.push_str(&format!("{};{}|", t.scalar_type.0, order.join(",")));
                }
            }
            key.pop();
            out.push((operator_name(op), key));
        }
    }
    out
}

/// Quotes a YAML scalar the way a safe dumper would need it: plain when unambiguous,
/// else single-quoted.
fn yaml_scalar(s: &str) -> String {
    let plain_char = |c: char| c.is_ascii_alphanumeric() || "_-./:;,|+@".contains(c);
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/' || c == '.');
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~" | ".inf" | ".nan"
    );
    if first_ok
        && !reserved
        && s.chars().all(plain_char)
        && !s.contains(": ")
        && !s.ends_with(':')
        && !s.contains("::::")
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// The selective-build YAML (`selected_operators.yaml`) as `gen_oplist` writes it: keys
/// sorted, every operator a root operator used for training without all overloads, its
/// `debug_info` the names of the sources that list it.
pub fn selective_build_yaml(list: &OpList, source_names: &[String]) -> String {
    let mut y = String::new();
    y.push_str("build_features: []\ncustom_classes: []\n");
    if list.kernel_metadata.is_empty() {
        y.push_str("et_kernel_metadata: {}\n");
    } else {
        y.push_str("et_kernel_metadata:\n");
        for (op, keys) in &list.kernel_metadata {
            y.push_str(&format!("  {}:\n", yaml_scalar(op)));
            for k in keys {
                y.push_str(&format!("  - {}\n", yaml_scalar(k)));
            }
        }
    }
    y.push_str("include_all_non_op_selectives: false\ninclude_all_operators: false\n");
    y.push_str("kernel_metadata: {}\n");
    if list.operators.is_empty() {
        y.push_str("operators: {}\n");
    } else {
        y.push_str("operators:\n");
        for (op, sources) in &list.operators {
            y.push_str(&format!("  {}:\n    debug_info:\n", yaml_scalar(op)));
            for &s in sources {
                let name = source_names.get(s).map_or("", String::as_str);
                y.push_str(&format!("    - {}\n", yaml_scalar(name)));
            }
            y.push_str(
                "    include_all_overloads: false\n    is_root_operator: true\n    is_used_for_training: true\n",
            );
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::yaml_scalar;

    #[test]
    fn yaml_scalars_quote_what_would_be_ambiguous() {
        assert_eq!(yaml_scalar("aten::add.out"), "aten::add.out");
        assert_eq!(yaml_scalar("v1/6;0,1|6;0,1"), "v1/6;0,1|6;0,1");
        assert_eq!(yaml_scalar("/work/a b.pte"), "'/work/a b.pte'");
        assert_eq!(yaml_scalar("yes"), "'yes'");
        assert_eq!(yaml_scalar("it's"), "'it''s'");
        assert_eq!(yaml_scalar(""), "''");
    }
}
