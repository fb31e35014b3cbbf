//! Size attribution (`ptekit inspect --top N`): the largest stored tensors with the calls
//! that use them, the largest delegate payloads and the largest named-data entries.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::Serialize;

use super::method::tensor_nbytes;
use super::{MethodSummary, NamedDataSummary, SegmentSummary};
use crate::program::calls::value_usages;
use crate::program::{KernelTypes, Program, TensorDataLocation};

/// The largest items of each kind, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopSummary {
    /// How many of each kind were asked for.
    pub limit: usize,
    /// Tensors with stored data: constants (in the program or outside it) and the initial
    /// values of mutable state. One entry per stored item (values sharing it are counted).
    pub tensors: Vec<TopTensor>,
    /// Delegate payloads.
    pub delegate_payloads: Vec<TopDelegate>,
    /// Entries of the program's named data.
    pub named_data: Vec<TopNamedData>,
}

/// One stored tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopTensor {
    /// The method of the first value that refers to it.
    pub method: String,
    /// That value's index.
    pub value_index: usize,
    /// Element type (schema name).
    pub dtype: String,
    /// Sizes.
    pub sizes: Vec<i32>,
    /// Bytes of the tensor (`nbytes` as the runtime computes it; `null` when it cannot).
    pub bytes: Option<u64>,
    /// Where its data is: `constant_segment`, `constant_buffer` (legacy inline
    /// constants), `external` (a `.ptd`, by `key`) or `mutable_state` (initial value in a
    /// mutable-data segment).
    pub stored: &'static str,
    /// Index of its data: `data_buffer_idx`, or the mutable-data entry (`null` for
    /// external data).
    pub index: Option<u64>,
    /// The fully qualified name, when recorded (the key of external data).
    pub key: Option<String>,
    /// Values (over all methods) that refer to the same data.
    pub values: usize,
    /// The calls that take it as an argument (operator names, `delegate:ID`), each once.
    pub used_by: Vec<String>,
}

/// One delegate payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopDelegate {
    /// Method name.
    pub method: String,
    /// Index in the method's `delegates`.
    pub delegate: usize,
    /// Backend id.
    pub id: String,
    /// `inline` or `segment`.
    pub location: &'static str,
    /// Index into `backend_delegate_data` or `segments`.
    pub index: u32,
    /// Payload bytes.
    pub bytes: Option<u64>,
}

/// One named-data entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopNamedData {
    /// Its key.
    pub key: String,
    /// Index into `segments`.
    pub segment_index: u32,
    /// Bytes of its segment.
    pub bytes: Option<u64>,
}

/// Identity of a tensor's stored data, so values sharing it are listed once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Storage {
    Buffer(u32),
    External(String),
    Mutable(u64),
}

fn largest_first<T>(items: &mut Vec<T>, bytes: impl Fn(&T) -> Option<u64>, limit: usize) {
    // Stable: ties keep file order.
    items.sort_by_key(|t| Reverse(bytes(t).unwrap_or(0)));
    items.truncate(limit);
}

/// The largest stored tensors of `program`.
fn tensors(program: &Program<'_>, limit: usize) -> Vec<TopTensor> {
    let in_segment = program
        .constant_segment
        .as_ref()
        .is_some_and(|c| c.offsets.as_ref().is_some_and(|o| !o.is_empty()));
    let mut by_storage: BTreeMap<Storage, usize> = BTreeMap::new();
    let mut out: Vec<TopTensor> = Vec::new();
    for plan in program.execution_plan.iter().flatten() {
        let usages = value_usages(plan);
        let method = plan.name.clone().unwrap_or_default();
        for (i, v) in plan.values.iter().flatten().enumerate() {
            let Some(KernelTypes::Tensor(t)) = &v.val else {
                continue;
            };
            let key = t
                .extra_tensor_info
                .as_ref()
                .and_then(|e| e.fully_qualified_name.clone())
                .filter(|k| !k.is_empty());
            let external = t
                .extra_tensor_info
                .as_ref()
                .is_some_and(|e| e.location == TensorDataLocation::EXTERNAL);
            let mutable = t
                .extra_tensor_info
                .as_ref()
                .map_or(0, |e| e.mutable_data_segments_idx);
            // External tensors may carry a `data_buffer_idx` too: the name decides.
            let (storage, stored, index) = if external {
                match &key {
                    Some(k) => (Storage::External(k.clone()), "external", None),
                    None => continue,
                }
            } else if t.data_buffer_idx > 0 {
                let stored = if in_segment {
                    "constant_segment"
                } else {
                    "constant_buffer"
                };
                (
                    Storage::Buffer(t.data_buffer_idx),
                    stored,
                    Some(u64::from(t.data_buffer_idx)),
                )
            } else if mutable > 0 {
                (Storage::Mutable(mutable), "mutable_state", Some(mutable))
            } else {
                continue;
            };
            let users = usages.get(&i).map(Vec::as_slice).unwrap_or(&[]);
            let slot = match by_storage.get(&storage) {
                Some(&slot) => slot,
                None => {
                    by_storage.insert(storage, out.len());
                    out.push(TopTensor {
                        method: method.clone(),
                        value_index: i,
                        dtype: t.scalar_type.to_string(),
                        sizes: t.sizes.clone().unwrap_or_default(),
                        bytes: tensor_nbytes(t),
                        stored,
                        index,
                        key: key.clone(),
                        values: 0,
                        used_by: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            if let Some(entry) = out.get_mut(slot) {
                entry.values += 1;
                for u in users {
                    if !entry.used_by.contains(&u.name) {
                        entry.used_by.push(u.name.clone());
                    }
                }
            }
        }
    }
    largest_first(&mut out, |t| t.bytes, limit);
    out
}

/// The `limit` largest items of each kind (see [`TopSummary`]).
pub fn top(
    program: &Program<'_>,
    plans: &[MethodSummary],
    segments: &[SegmentSummary],
    named: &[NamedDataSummary],
    limit: usize,
) -> TopSummary {
    let mut delegate_payloads: Vec<TopDelegate> = plans
        .iter()
        .flat_map(|m| {
            m.delegates.iter().enumerate().map(|(i, d)| TopDelegate {
                method: m.name.clone(),
                delegate: i,
                id: d.id.clone(),
                location: d.processed.location,
                index: d.processed.index,
                bytes: d.processed.size,
            })
        })
        .collect();
    largest_first(&mut delegate_payloads, |d| d.bytes, limit);
    let named_data = named.iter().map(|n| TopNamedData {
        key: n.key.clone(),
        segment_index: n.segment_index,
        bytes: segments.get(n.segment_index as usize).map(|s| s.size),
    });
    TopSummary {
        tensors: tensors(program, limit),
        delegate_payloads,
        ..top_named_data(named_data, limit)
    }
}

/// The `limit` largest of `named_data` (for a `.ptd`, whose entries are all named data;
/// no tensors or payloads).
pub fn top_named_data(named_data: impl Iterator<Item = TopNamedData>, limit: usize) -> TopSummary {
    let mut named_data: Vec<TopNamedData> = named_data.collect();
    largest_first(&mut named_data, |n| n.bytes, limit);
    TopSummary {
        limit,
        named_data,
        ..TopSummary::default()
    }
}
