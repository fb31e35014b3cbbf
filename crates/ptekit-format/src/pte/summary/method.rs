//! What a method's summary says beyond counts: its inputs and outputs in the vocabulary
//! of the runtime's `MethodMeta`, how often each operator is called, how much of the
//! work and of the constant bytes sits in delegates, and the values a constant method
//! returns.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, Serializer};

use crate::program::calls::{argument_tensors, calls, operator_name, tensor_at, Callee};
use crate::program::{ExecutionPlan, KernelTypes, Tensor, TensorDataLocation};

/// One input or output tensor, as the runtime's `MethodMeta::input_tensor_meta` /
/// `output_tensor_meta` (executorch 1.5.1, `runtime/executor/method_meta.cpp`) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorMeta {
    /// Index of the value in the method's `values`.
    pub value_index: usize,
    /// Element type: the schema's `ScalarType` name (`FLOAT`, ...; `ScalarType(n)` for a
    /// value the schema does not declare).
    pub dtype: String,
    /// Sizes as stored (the upper bounds of a dynamic tensor), as `MethodMeta` reports them.
    pub sizes: Vec<i32>,
    /// Dimension order as stored.
    pub dim_order: Vec<u8>,
    /// The runtime's `is_memory_planned`: the tensor has `allocation_info` or constant
    /// data (`data_buffer_idx != 0`).
    pub memory_planned: bool,
    /// The runtime's `nbytes`: product of the sizes times the element size (`null` when a
    /// size is negative, the element type unknown or the product overflows, where the
    /// runtime refuses).
    pub nbytes: Option<u64>,
    /// Whether the shape may change at run time (`shape_dynamism` is not `STATIC`).
    pub dynamic: bool,
    /// The schema's `TensorShapeDynamism` name: `STATIC`, `DYNAMIC_BOUND` (sizes are upper
    /// bounds) or `DYNAMIC_UNBOUND`.
    pub shape_dynamism: String,
}

/// The bytes of a tensor as the runtime computes them (`calculate_nbytes`).
pub fn tensor_nbytes(t: &Tensor) -> Option<u64> {
    let elem = u64::try_from(t.scalar_type.element_size()?).ok()?;
    t.sizes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

/// A tensor's metadata (see [`TensorMeta`]).
pub fn tensor_meta(value_index: usize, t: &Tensor) -> TensorMeta {
    TensorMeta {
        value_index,
        dtype: t.scalar_type.to_string(),
        sizes: t.sizes.clone().unwrap_or_default(),
        dim_order: t.dim_order.clone().unwrap_or_default(),
        memory_planned: t.allocation_info.is_some() || t.data_buffer_idx != 0,
        nbytes: tensor_nbytes(t),
        dynamic: t.shape_dynamism != crate::program::TensorShapeDynamism::STATIC,
        shape_dynamism: t.shape_dynamism.to_string(),
    }
}

/// One entry per index: the tensor's metadata, `None` for a value that is not a tensor
/// (or an index out of range).
pub fn io_tensors(plan: &ExecutionPlan<'_>, indices: &[i32]) -> Vec<Option<TensorMeta>> {
    indices
        .iter()
        .map(|&i| {
            let t = tensor_at(plan, i)?;
            Some(tensor_meta(usize::try_from(i).ok()?, t))
        })
        .collect()
}

/// How many `KernelCall` instructions call each operator (listed operators that are
/// never called count 0; a name listed twice sums).
pub fn operator_calls(plan: &ExecutionPlan<'_>) -> BTreeMap<String, usize> {
    let operators = plan.operators.as_deref().unwrap_or(&[]);
    let mut counts: Vec<usize> = vec![0; operators.len()];
    for call in calls(plan) {
        if let Callee::Kernel(i) = call.callee {
            if let Some(n) = counts.get_mut(i) {
                *n += 1;
            }
        }
    }
    let mut out = BTreeMap::new();
    for (op, n) in operators.iter().zip(counts) {
        *out.entry(operator_name(op)).or_insert(0) += n;
    }
    out
}

/// Whether a tensor's data is a constant: stored in the program (`data_buffer_idx > 0`)
/// or outside it (`extra_tensor_info.location == EXTERNAL`, keyed by its name).
pub fn is_constant(t: &Tensor) -> bool {
    t.data_buffer_idx > 0
        || t.extra_tensor_info
            .as_ref()
            .is_some_and(|e| e.location == TensorDataLocation::EXTERNAL)
}

/// How a method's work and constant bytes divide between portable kernels and delegates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delegation {
    /// `KernelCall` instructions (operators run by kernels linked into the runtime).
    pub kernel_calls: usize,
    /// `DelegateCall` instructions.
    pub delegate_calls: usize,
    /// Bytes of the constant tensors that kernel calls take as arguments (each tensor
    /// once; `nbytes` as the runtime computes it).
    pub kernel_constant_bytes: u64,
    /// Bytes of the constant tensors passed to delegate calls as arguments.
    pub delegate_constant_bytes: u64,
    /// Bytes of the method's delegate payloads (the compiled blobs, which usually hold
    /// the delegated weights unless they live in named data).
    pub delegate_payload_bytes: u64,
}

impl Delegation {
    /// Adds another method's figures.
    pub fn add(&mut self, other: &Delegation) {
        self.kernel_calls += other.kernel_calls;
        self.delegate_calls += other.delegate_calls;
        self.kernel_constant_bytes = self
            .kernel_constant_bytes
            .saturating_add(other.kernel_constant_bytes);
        self.delegate_constant_bytes = self
            .delegate_constant_bytes
            .saturating_add(other.delegate_constant_bytes);
        self.delegate_payload_bytes = self
            .delegate_payload_bytes
            .saturating_add(other.delegate_payload_bytes);
    }
}

/// The delegation figures of a method; `payload_sizes` are its delegates' payload sizes.
pub fn delegation(plan: &ExecutionPlan<'_>, payload_sizes: &[Option<u64>]) -> Delegation {
    let mut d = Delegation::default();
    let mut kernel_constants = BTreeSet::new();
    let mut delegate_constants = BTreeSet::new();
    for call in calls(plan) {
        let seen = match call.callee {
            Callee::Kernel(_) => {
                d.kernel_calls += 1;
                &mut kernel_constants
            }
            Callee::Delegate(_) => {
                d.delegate_calls += 1;
                &mut delegate_constants
            }
        };
        for &arg in call.args {
            seen.extend(argument_tensors(plan, arg));
        }
    }
    let constant_bytes = |set: &BTreeSet<usize>| -> u64 {
        set.iter()
            .filter_map(|&i| tensor_at(plan, i32::try_from(i).ok()?))
            .filter(|t| is_constant(t))
            .filter_map(tensor_nbytes)
            .fold(0u64, u64::saturating_add)
    };
    d.kernel_constant_bytes = constant_bytes(&kernel_constants);
    d.delegate_constant_bytes = constant_bytes(&delegate_constants);
    d.delegate_payload_bytes = payload_sizes
        .iter()
        .flatten()
        .fold(0u64, |acc, &n| acc.saturating_add(n));
    d
}

/// A value a constant method returns.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstantValue {
    /// `None`.
    Null,
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A double (non-finite values serialize as the strings `nan`, `inf`, `-inf`).
    Double(f64),
    /// A string.
    String(String),
    /// A list of integers (resolved from the list's value indices).
    IntList(Vec<i64>),
    /// A list of doubles.
    DoubleList(Vec<f64>),
    /// A list of booleans.
    BoolList(Vec<bool>),
    /// A tensor: its metadata.
    Tensor(TensorMeta),
    /// Another kind of value (named by kind), or an index that resolves to nothing.
    Other(&'static str),
}

fn serialize_double<S: Serializer>(x: f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() {
        s.serialize_f64(x)
    } else if x.is_nan() {
        s.serialize_str("nan")
    } else if x > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

impl Serialize for ConstantValue {
    /// Scalars, strings and lists as plain JSON values (`null`, numbers, `true`, ...); a
    /// tensor as `{"tensor": {...}}`; another kind as `{"kind": NAME}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Self::Null => s.serialize_unit(),
            Self::Int(x) => s.serialize_i64(*x),
            Self::Bool(x) => s.serialize_bool(*x),
            Self::Double(x) => serialize_double(*x, s),
            Self::String(x) => s.serialize_str(x),
            Self::IntList(x) => x.serialize(s),
            Self::BoolList(x) => x.serialize(s),
            Self::DoubleList(x) => {
                struct D(f64);
                impl Serialize for D {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        serialize_double(self.0, s)
                    }
                }
                let mut seq = s.serialize_seq(Some(x.len()))?;
                for &v in x {
                    seq.serialize_element(&D(v))?;
                }
                seq.end()
            }
            Self::Tensor(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("tensor", t)?;
                m.end()
            }
            Self::Other(kind) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("kind", kind)?;
                m.end()
            }
        }
    }
}

impl ConstantValue {
    /// The value as text: `128`, `true`, `0.7`, `"tiny"`, `[1, 2]`, `FLOAT [2, 3]`.
    pub fn render(&self) -> String {
        match self {
            Self::Null => "None".into(),
            Self::Int(x) => x.to_string(),
            Self::Bool(x) => x.to_string(),
            Self::Double(x) => format!("{x:?}"),
            Self::String(x) => crate::units::quoted(x),
            Self::IntList(x) => format!("{x:?}"),
            Self::DoubleList(x) => format!("{x:?}"),
            Self::BoolList(x) => format!("{x:?}"),
            Self::Tensor(t) => format!("tensor {} {:?}", t.dtype, t.sizes),
            Self::Other(kind) => (*kind).to_string(),
        }
    }
}

/// The value at `index`.
fn constant_value(plan: &ExecutionPlan<'_>, index: i32) -> ConstantValue {
    let values = plan.values.as_deref().unwrap_or(&[]);
    let Some(v) = usize::try_from(index).ok().and_then(|i| values.get(i)) else {
        return ConstantValue::Other("out of range");
    };
    match &v.val {
        None | Some(KernelTypes::Null(_)) => ConstantValue::Null,
        Some(KernelTypes::Int(x)) => ConstantValue::Int(x.int_val),
        Some(KernelTypes::Bool(x)) => ConstantValue::Bool(x.bool_val),
        Some(KernelTypes::Double(x)) => ConstantValue::Double(x.double_val),
        Some(KernelTypes::String(x)) => {
            ConstantValue::String(x.string_val.clone().unwrap_or_default())
        }
        Some(KernelTypes::IntList(l)) => {
            let ints: Option<Vec<i64>> = l
                .items
                .iter()
                .flatten()
                .map(|&i| {
                    let v = values.get(usize::try_from(i).ok()?)?;
                    match &v.val {
                        Some(KernelTypes::Int(x)) => Some(x.int_val),
                        _ => None,
                    }
                })
                .collect();
            ints.map_or(ConstantValue::Other("IntList"), ConstantValue::IntList)
        }
        Some(KernelTypes::DoubleList(l)) => {
            ConstantValue::DoubleList(l.items.clone().unwrap_or_default())
        }
        Some(KernelTypes::BoolList(l)) => {
            ConstantValue::BoolList(l.items.clone().unwrap_or_default())
        }
        Some(KernelTypes::Tensor(t)) => match usize::try_from(index) {
            Ok(i) => ConstantValue::Tensor(tensor_meta(i, t)),
            Err(_) => ConstantValue::Other("Tensor"),
        },
        Some(other) => ConstantValue::Other(other.kind_name()),
    }
}

/// The values a constant method returns: a method without inputs and without any
/// instruction (the exporter's way of storing metadata such as an LLM's
/// `max_seq_len`), one per output. `None` for every other method.
pub fn constant_values(plan: &ExecutionPlan<'_>) -> Option<Vec<ConstantValue>> {
    let instructions: usize = plan
        .chains
        .iter()
        .flatten()
        .map(|c| c.instructions.as_ref().map_or(0, Vec::len))
        .sum();
    let inputs = plan.inputs.as_deref().unwrap_or(&[]);
    let outputs = plan.outputs.as_deref().unwrap_or(&[]);
    if instructions > 0 || !inputs.is_empty() || outputs.is_empty() {
        return None;
    }
    Some(outputs.iter().map(|&i| constant_value(plan, i)).collect())
}
