//! How two programs differ: everything the reference's `devtools/pte_tool/diff_pte.py`
//! reports (methods, operators, delegates, value and instruction counts, planned buffer
//! sizes, per-tensor metadata and data with summary statistics, named data), plus the
//! container layout (header, segments, alignment) and delegate payloads.
//!
//! Semantics follow the reference where it defines them: methods are paired by index;
//! operators and delegates are compared as multisets of names; values are compared by
//! index; a tensor's data is its restored constant (with the padding up to the next
//! constant, as the reference's `deserialize_pte_binary` restores it) or its mutable
//! initial state; element statistics decode the little-endian values of the types the
//! reference decodes and compare bytes otherwise.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::program::{
    DataLocation, ExecutionPlan, ExtraTensorInfo, KernelTypes, ScalarType, Tensor,
};
use crate::pte::{restore, PteError, PteFile, PteModel};

use crate::program::calls::operator_name;
pub use crate::program::calls::{value_usages, Usage};

/// A field that differs, with both values rendered as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// Field name, e.g. `sizes` or `extra_tensor_info.location`.
    pub field: String,
    /// Value in A.
    pub a: String,
    /// Value in B.
    pub b: String,
}

impl FieldDiff {
    fn new(field: &str, a: impl std::fmt::Debug, b: impl std::fmt::Debug) -> Self {
        Self {
            field: field.to_string(),
            a: format!("{a:?}"),
            b: format!("{b:?}"),
        }
    }
}

/// A tensor as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// Value index.
    pub value_index: usize,
    /// Element type name (`Float`, ...).
    pub dtype: String,
    /// Sizes.
    pub sizes: Vec<i32>,
    /// Fully qualified name, if recorded.
    pub fqn: Option<String>,
    /// Constant data index (0 = not a constant).
    pub data_buffer_idx: u32,
    /// Calls that use the tensor.
    pub usages: Vec<Usage>,
}

/// One element that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElementDiff {
    /// Index in the flattened tensor.
    pub flat_index: u64,
    /// Index per dimension.
    pub index: Vec<u64>,
    /// Value in A.
    pub a: f64,
    /// Value in B.
    pub b: f64,
}

/// A tensor whose metadata or data differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorDiff {
    /// The tensor in A.
    pub a: TensorInfo,
    /// The tensor in B.
    pub b: TensorInfo,
    /// Data bytes in A (0 without data).
    pub bytes_a: u64,
    /// Data bytes in B.
    pub bytes_b: u64,
    /// Whether the data bytes differ.
    pub bytes_differ: bool,
    /// Differing metadata fields.
    pub metadata: Vec<FieldDiff>,
    /// Element statistics (zero when the data is equal or absent on a side).
    #[serde(flatten)]
    pub stats: DataStats,
}

/// Element statistics of two tensors' data (the reference's `_compute_tensor_stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataStats {
    /// Elements compared (bytes for types compared bytewise).
    pub elements: u64,
    /// Elements that differ.
    pub differing: u64,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Mean absolute difference over the differing elements.
    pub mean_abs_diff: f64,
    /// The first differing elements (at most the sample limit).
    pub samples: Vec<ElementDiff>,
}

/// A non-tensor value that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueDiff {
    /// Value index.
    pub value_index: usize,
    /// Kind in A (`Int`, ...).
    pub kind_a: String,
    /// Kind in B.
    pub kind_b: String,
    /// Differing fields (empty when the kinds differ).
    pub fields: Vec<FieldDiff>,
    /// Calls using the value in A.
    pub usages_a: Vec<Usage>,
    /// Calls using the value in B.
    pub usages_b: Vec<Usage>,
}

/// A delegate (same index in both methods) whose payload or specs differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelegateDiff {
    /// Index in the method's delegate list.
    pub index: usize,
    /// Backend id in A.
    pub id_a: String,
    /// Backend id in B.
    pub id_b: String,
    /// Payload bytes in A.
    pub payload_a: u64,
    /// Payload bytes in B.
    pub payload_b: u64,
    /// Whether the payload bytes differ.
    pub payload_differs: bool,
    /// Whether the compile specs differ.
    pub compile_specs_differ: bool,
}

/// Differences of one method pair (same index).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanDiff {
    /// Method index.
    pub index: usize,
    /// Method name in A.
    pub name_a: String,
    /// Method name in B.
    pub name_b: String,
    /// Operators (as a multiset) only in A.
    pub operators_only_in_a: Vec<String>,
    /// Operators only in B.
    pub operators_only_in_b: Vec<String>,
    /// Delegate ids (multiset) only in A.
    pub delegates_only_in_a: Vec<String>,
    /// Delegate ids only in B.
    pub delegates_only_in_b: Vec<String>,
    /// Delegates at the same index whose payloads or compile specs differ.
    pub delegate_payloads: Vec<DelegateDiff>,
    /// Planned buffer sizes, when they differ.
    pub non_const_buffer_sizes: Option<(Vec<i64>, Vec<i64>)>,
    /// Value counts, when they differ.
    pub value_count: Option<(usize, usize)>,
    /// Instruction counts, when they differ.
    pub instruction_count: Option<(usize, usize)>,
    /// Inputs (value indices), when they differ.
    pub inputs: Option<(Vec<i32>, Vec<i32>)>,
    /// Outputs (value indices), when they differ.
    pub outputs: Option<(Vec<i32>, Vec<i32>)>,
    /// Tensors that differ.
    pub tensors: Vec<TensorDiff>,
    /// Non-tensor values that differ.
    pub values: Vec<ValueDiff>,
    /// Tensors beyond the other method's values.
    pub tensors_only_in_a: Vec<TensorInfo>,
    /// Tensors beyond the other method's values.
    pub tensors_only_in_b: Vec<TensorInfo>,
}

impl PlanDiff {
    /// Whether anything differs.
    pub fn has_differences(&self) -> bool {
        self.name_a != self.name_b
            || !self.operators_only_in_a.is_empty()
            || !self.operators_only_in_b.is_empty()
            || !self.delegates_only_in_a.is_empty()
            || !self.delegates_only_in_b.is_empty()
            || !self.delegate_payloads.is_empty()
            || self.non_const_buffer_sizes.is_some()
            || self.value_count.is_some()
            || self.instruction_count.is_some()
            || self.inputs.is_some()
            || self.outputs.is_some()
            || !self.tensors.is_empty()
            || !self.values.is_empty()
            || !self.tensors_only_in_a.is_empty()
            || !self.tensors_only_in_b.is_empty()
    }
}

/// A named-data key present on one side only, or with different bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedDataDiff {
    /// The key.
    pub key: String,
    /// `"A"` or `"B"` when only one side has the key, `null` when both do.
    pub only_in: Option<&'static str>,
    /// Bytes in A (0 when absent).
    pub bytes_a: u64,
    /// Bytes in B.
    pub bytes_b: u64,
    /// Whether both have the key with different bytes.
    pub bytes_differ: bool,
}

/// Differences of the container layout.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LayoutDiff {
    /// Differing container fields: identifier, header fields, segment alignment, pack
    /// alignments, segment count and each segment's offset and size.
    pub fields: Vec<FieldDiff>,
}

/// What every comparison of two files reports besides its contents: sizes, bitwise
/// equality, version, named data, layout and padding (flattened into the JSON of
/// [`ProgramDiff`] and of [`TensorDataDiff`](super::ptd_diff::TensorDataDiff)).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileDiff {
    /// File size of A.
    pub size_a: u64,
    /// File size of B.
    pub size_b: u64,
    /// Whether the files are byte for byte equal.
    pub bitwise_equal: bool,
    /// Schema versions, when they differ.
    pub version: Option<(u32, u32)>,
    /// Named data differences: keys on one side only or with different bytes, sorted.
    pub named_data: Vec<NamedDataDiff>,
    /// Layout differences.
    pub layout: LayoutDiff,
    /// The files differ in bytes no field accounts for (padding).
    pub other_bytes_differ: bool,
}

impl FileDiff {
    /// Sizes and bitwise equality of `a` and `b`.
    pub(crate) fn new(a: &[u8], b: &[u8]) -> Self {
        Self {
            size_a: a.len() as u64,
            size_b: b.len() as u64,
            bitwise_equal: a == b,
            ..Self::default()
        }
    }

    /// Records versions `(a, b)` when they differ.
    pub(crate) fn version(&mut self, a: u32, b: u32) {
        if a != b {
            self.version = Some((a, b));
        }
    }

    fn fields_equal(&self) -> bool {
        self.version.is_none() && self.named_data.is_empty() && self.layout.fields.is_empty()
    }

    /// Sets `other_bytes_differ` once everything is compared: the files are not bitwise
    /// equal, yet neither these fields nor the contents (`contents_equal`) differ.
    pub(crate) fn finish(&mut self, contents_equal: bool) {
        self.other_bytes_differ = !self.bitwise_equal && contents_equal && self.fields_equal();
    }

    /// Whether the files are equivalent, given whether their contents are.
    pub fn is_equivalent(&self, contents_equal: bool) -> bool {
        self.bitwise_equal || (contents_equal && self.fields_equal() && !self.other_bytes_differ)
    }
}

/// The whole comparison of two programs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProgramDiff {
    /// Sizes, version, named data, layout.
    #[serde(flatten)]
    pub file: FileDiff,
    /// Methods that differ.
    pub plans: Vec<PlanDiff>,
    /// Names of methods beyond B's count.
    pub extra_plans_in_a: Vec<String>,
    /// Names of methods beyond A's count.
    pub extra_plans_in_b: Vec<String>,
}

impl ProgramDiff {
    fn contents_equal(&self) -> bool {
        self.plans.is_empty()
            && self.extra_plans_in_a.is_empty()
            && self.extra_plans_in_b.is_empty()
    }

    /// Whether the two files are equivalent (nothing differs).
    pub fn is_equivalent(&self) -> bool {
        self.file.is_equivalent(self.contents_equal())
    }
}

/// Options of [`diff_files`].
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// How many differing elements to sample per tensor (the reference's default is 10).
    pub max_samples: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self { max_samples: 10 }
    }
}

/// A file of the pair could not be restored.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct DiffError {
    /// 0 for A, 1 for B.
    pub side: usize,
    /// What is wrong with it.
    #[source]
    pub source: PteError,
}

/// Compares two parsed `.pte` files.
pub fn diff_files(
    a: &PteFile<'_>,
    b: &PteFile<'_>,
    options: &DiffOptions,
) -> Result<ProgramDiff, DiffError> {
    let mut out = ProgramDiff {
        file: FileDiff::new(a.bytes(), b.bytes()),
        ..ProgramDiff::default()
    };
    if out.file.bitwise_equal {
        return Ok(out);
    }
    let ma = restore(a).map_err(|source| DiffError { side: 0, source })?;
    let mb = restore(b).map_err(|source| DiffError { side: 1, source })?;
    let (pa, pb) = (&ma.program, &mb.program);
    out.file.version(pa.version, pb.version);
    let plans_a = pa.execution_plan.as_deref().unwrap_or(&[]);
    let plans_b = pb.execution_plan.as_deref().unwrap_or(&[]);
    for (i, (x, y)) in plans_a.iter().zip(plans_b).enumerate() {
        let d = diff_plan(i, (x, &ma), (y, &mb), options);
        if d.has_differences() {
            out.plans.push(d);
        }
    }
    let name = |p: &ExecutionPlan<'_>| p.name.clone().unwrap_or_default();
    out.extra_plans_in_a = plans_a.iter().skip(plans_b.len()).map(name).collect();
    out.extra_plans_in_b = plans_b.iter().skip(plans_a.len()).map(name).collect();
    out.file.named_data = diff_named_maps(&named_data_of(a), &named_data_of(b));
    out.file.layout = diff_layout(a, b);
    out.file.finish(out.contents_equal());
    Ok(out)
}

fn named_data_of<'a>(file: &PteFile<'a>) -> BTreeMap<String, &'a [u8]> {
    let mut map = BTreeMap::new();
    for n in file.program().named_data.iter().flatten() {
        let data = file.segment_data(n.segment_index as usize).unwrap_or(&[]);
        map.insert(n.key.clone().unwrap_or_default(), data);
    }
    map
}

/// Keys present on one side only or with different bytes, sorted by key.
pub(crate) fn diff_named_maps(
    na: &BTreeMap<String, &[u8]>,
    nb: &BTreeMap<String, &[u8]>,
) -> Vec<NamedDataDiff> {
    let keys: BTreeSet<&String> = na.keys().chain(nb.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (na.get(key), nb.get(key));
        let only_in = match (x, y) {
            (Some(_), None) => Some("A"),
            (None, Some(_)) => Some("B"),
            _ => None,
        };
        let bytes_differ = matches!((x, y), (Some(x), Some(y)) if x != y);
        if only_in.is_some() || bytes_differ {
            out.push(NamedDataDiff {
                key: key.clone(),
                only_in,
                bytes_a: x.map_or(0, |d| d.len() as u64),
                bytes_b: y.map_or(0, |d| d.len() as u64),
                bytes_differ,
            });
        }
    }
    out
}

/// Largest power of two dividing `v` (capped at 1 MiB; `None` for 0).
fn pow2_of(v: u64) -> Option<u64> {
    (v != 0).then(|| 1u64 << v.trailing_zeros().min(20))
}

/// The fields that differ, collected in order (layout and metadata comparisons).
#[derive(Debug, Default)]
pub(crate) struct ChangedFields(pub(crate) Vec<FieldDiff>);

impl ChangedFields {
    /// Records `name` when the rendered values differ.
    pub(crate) fn cmp(&mut self, name: &str, x: impl ToString, y: impl ToString) {
        let (x, y) = (x.to_string(), y.to_string());
        if x != y {
            self.0.push(FieldDiff {
                field: name.to_string(),
                a: x,
                b: y,
            });
        }
    }

    /// Compares two segment tables: `base` is the absolute segment base offset, each
    /// segment `(offset, size)` as stored (relative to the base). The segment alignment
    /// shows as the largest power of two dividing the base and every segment offset.
    pub(crate) fn segments(
        &mut self,
        (base_a, a): (u64, &[(u64, u64)]),
        (base_b, b): (u64, &[(u64, u64)]),
    ) {
        let align = |base: u64, segs: &[(u64, u64)]| -> String {
            std::iter::once(base)
                .chain(segs.iter().map(|s| s.0))
                .filter_map(pow2_of)
                .min()
                .map_or_else(|| "-".into(), |v| v.to_string())
        };
        if !a.is_empty() || !b.is_empty() {
            self.cmp("segment_alignment", align(base_a, a), align(base_b, b));
        }
        self.cmp("segments.count", a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            self.cmp(&format!("segments[{i}].offset"), x.0, y.0);
            self.cmp(&format!("segments[{i}].size"), x.1, y.1);
        }
    }
}

fn diff_layout(a: &PteFile<'_>, b: &PteFile<'_>) -> LayoutDiff {
    let mut fields = ChangedFields::default();
    let id = |f: &PteFile<'_>| String::from_utf8_lossy(&f.file_identifier()).into_owned();
    fields.cmp("identifier", id(a), id(b));
    let header = |f: &PteFile<'_>, what: u8| -> String {
        match f.header() {
            None => "none".into(),
            Some(h) => match what {
                0 => h.length.to_string(),
                1 => h.program_size.to_string(),
                2 => h.segment_base_offset.to_string(),
                _ => h.segment_data_size.unwrap_or(0).to_string(),
            },
        }
    };
    fields.cmp("header.length", header(a, 0), header(b, 0));
    fields.cmp("header.program_size", header(a, 1), header(b, 1));
    fields.cmp("header.segment_base_offset", header(a, 2), header(b, 2));
    fields.cmp("header.segment_data_size", header(a, 3), header(b, 3));
    fields.cmp(
        "inserted_block_length",
        a.inserted_block_len(),
        b.inserted_block_len(),
    );
    let table = |f: &PteFile<'_>| -> (u64, Vec<(u64, u64)>) {
        let base = f.header().map_or(0, |h| h.segment_base_offset);
        (
            base,
            f.segments().iter().map(|s| (s.offset, s.size)).collect(),
        )
    };
    let (ta, tb) = (table(a), table(b));
    fields.segments((ta.0, &ta.1), (tb.0, &tb.1));
    let offsets = |f: &PteFile<'_>| -> String {
        f.program().constant_segment.as_ref().map_or_else(
            || "none".into(),
            |c| format!("{:?}", c.offsets.as_deref().unwrap_or(&[])),
        )
    };
    let (oa, ob) = (offsets(a), offsets(b));
    if oa != ob {
        // Offsets are long lists: name the first difference instead of printing them.
        let count = |f: &PteFile<'_>| {
            f.program()
                .constant_segment
                .as_ref()
                .map_or(0, |c| c.offsets.as_ref().map_or(0, Vec::len))
        };
        fields.cmp(
            "constant_segment.offsets",
            format!("{} offsets", count(a)),
            format!("{} offsets", count(b)),
        );
        if count(a) == count(b) {
            let first = |f: &PteFile<'_>| -> Vec<u64> {
                f.program()
                    .constant_segment
                    .as_ref()
                    .and_then(|c| c.offsets.clone())
                    .unwrap_or_default()
            };
            let (fa, fb) = (first(a), first(b));
            if let Some((i, (x, y))) = fa.iter().zip(&fb).enumerate().find(|(_, (x, y))| x != y) {
                fields.cmp(&format!("constant_segment.offsets[{i}]"), x, y);
            }
        }
    }
    let (ta, tb) = (
        a.bytes()
            .len()
            .saturating_sub(a.segment_area_end() as usize),
        b.bytes()
            .len()
            .saturating_sub(b.segment_area_end() as usize),
    );
    fields.cmp("trailing_bytes", ta, tb);
    LayoutDiff { fields: fields.0 }
}

fn counted(names: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

/// Multiset difference `a - b`, sorted, with repetitions.
fn multiset_minus(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, &n) in a {
        let m = b.get(k).copied().unwrap_or(0);
        for _ in m..n {
            out.push(k.clone());
        }
    }
    out
}

fn instruction_count(plan: &ExecutionPlan<'_>) -> usize {
    plan.chains
        .iter()
        .flatten()
        .map(|c| c.instructions.as_ref().map_or(0, Vec::len))
        .sum()
}

/// The dtype name used in reports, as the reference's `diff_pte.py` spells it (`float`,
/// `half`, `qint8`, ...; `ScalarType(n)` when unknown).
pub fn dtype_name(t: ScalarType) -> String {
    t.name()
        .map_or_else(|| format!("ScalarType({})", t.0), str::to_ascii_lowercase)
}

fn tensor_info(index: usize, t: &Tensor, usages: &BTreeMap<usize, Vec<Usage>>) -> TensorInfo {
    TensorInfo {
        value_index: index,
        dtype: dtype_name(t.scalar_type),
        sizes: t.sizes.clone().unwrap_or_default(),
        fqn: t
            .extra_tensor_info
            .as_ref()
            .and_then(|e| e.fully_qualified_name.clone())
            .filter(|s| !s.is_empty()),
        data_buffer_idx: t.data_buffer_idx,
        usages: usages.get(&index).cloned().unwrap_or_default(),
    }
}

fn diff_extra(a: Option<&ExtraTensorInfo>, b: Option<&ExtraTensorInfo>, out: &mut Vec<FieldDiff>) {
    match (a, b) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            if x.mutable_data_segments_idx != y.mutable_data_segments_idx {
                out.push(FieldDiff::new(
                    "extra_tensor_info.mutable_data_segments_idx",
                    x.mutable_data_segments_idx,
                    y.mutable_data_segments_idx,
                ));
            }
            if x.fully_qualified_name != y.fully_qualified_name {
                out.push(FieldDiff::new(
                    "extra_tensor_info.fully_qualified_name",
                    &x.fully_qualified_name,
                    &y.fully_qualified_name,
                ));
            }
            if x.location != y.location {
                out.push(FieldDiff::new(
                    "extra_tensor_info.location",
                    x.location,
                    y.location,
                ));
            }
        }
        _ => out.push(FieldDiff::new("extra_tensor_info", a, b)),
    }
}

fn diff_tensor_metadata(a: &Tensor, b: &Tensor) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    if a.scalar_type != b.scalar_type {
        out.push(FieldDiff::new("scalar_type", a.scalar_type, b.scalar_type));
    }
    if a.storage_offset != b.storage_offset {
        out.push(FieldDiff::new(
            "storage_offset",
            a.storage_offset,
            b.storage_offset,
        ));
    }
    if a.sizes.as_deref().unwrap_or(&[]) != b.sizes.as_deref().unwrap_or(&[]) {
        out.push(FieldDiff::new(
            "sizes",
            a.sizes.as_deref().unwrap_or(&[]),
            b.sizes.as_deref().unwrap_or(&[]),
        ));
    }
    if a.dim_order.as_deref().unwrap_or(&[]) != b.dim_order.as_deref().unwrap_or(&[]) {
        out.push(FieldDiff::new(
            "dim_order",
            a.dim_order.as_deref().unwrap_or(&[]),
            b.dim_order.as_deref().unwrap_or(&[]),
        ));
    }
    if a.requires_grad != b.requires_grad {
        out.push(FieldDiff::new(
            "requires_grad",
            a.requires_grad,
            b.requires_grad,
        ));
    }
    if a.layout != b.layout {
        out.push(FieldDiff::new("layout", a.layout, b.layout));
    }
    if a.data_buffer_idx != b.data_buffer_idx {
        out.push(FieldDiff::new(
            "data_buffer_idx",
            a.data_buffer_idx,
            b.data_buffer_idx,
        ));
    }
    if a.allocation_info != b.allocation_info {
        out.push(FieldDiff::new(
            "allocation_info",
            a.allocation_info,
            b.allocation_info,
        ));
    }
    if a.shape_dynamism != b.shape_dynamism {
        out.push(FieldDiff::new(
            "shape_dynamism",
            a.shape_dynamism,
            b.shape_dynamism,
        ));
    }
    diff_extra(
        a.extra_tensor_info.as_ref(),
        b.extra_tensor_info.as_ref(),
        &mut out,
    );
    out
}

/// IEEE half to f64.
fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Decodes element `i` of a little-endian buffer, for the types the reference decodes.
fn element(t: ScalarType, bytes: &[u8], i: usize) -> Option<f64> {
    let size = element_size(t)?;
    let b = bytes.get(i.checked_mul(size)?..i.checked_mul(size)?.checked_add(size)?)?;
    let arr = |n: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        if let (Some(dst), Some(src)) = (a.get_mut(..n), b.get(..n)) {
            dst.copy_from_slice(src);
        }
        a
    };
    let v = match t {
        ScalarType::BYTE | ScalarType::QUINT8 => f64::from(*b.first()?),
        ScalarType::CHAR | ScalarType::QINT8 => f64::from(*b.first()? as i8),
        ScalarType::BOOL => f64::from(u8::from(*b.first()? != 0)),
        ScalarType::SHORT => f64::from(i16::from_le_bytes([arr(2)[0], arr(2)[1]])),
        ScalarType::HALF => half_to_f64(u16::from_le_bytes([arr(2)[0], arr(2)[1]])),
        ScalarType::INT | ScalarType::QINT32 => {
            let a = arr(4);
            f64::from(i32::from_le_bytes([a[0], a[1], a[2], a[3]]))
        }
        ScalarType::FLOAT => {
            let a = arr(4);
            f64::from(f32::from_le_bytes([a[0], a[1], a[2], a[3]]))
        }
        ScalarType::LONG => i64::from_le_bytes(arr(8)) as f64,
        ScalarType::DOUBLE => f64::from_le_bytes(arr(8)),
        _ => return None,
    };
    Some(v)
}

/// Element size of the types the reference decodes element-wise.
fn element_size(t: ScalarType) -> Option<usize> {
    Some(match t {
        ScalarType::BYTE
        | ScalarType::CHAR
        | ScalarType::BOOL
        | ScalarType::QUINT8
        | ScalarType::QINT8 => 1,
        ScalarType::SHORT | ScalarType::HALF => 2,
        ScalarType::INT | ScalarType::FLOAT | ScalarType::QINT32 => 4,
        ScalarType::LONG | ScalarType::DOUBLE => 8,
        _ => return None,
    })
}

fn unravel(mut flat: u64, sizes: &[i32]) -> Vec<u64> {
    let mut idx = Vec::with_capacity(sizes.len());
    for &d in sizes.iter().rev() {
        let d = u64::try_from(d).unwrap_or(0).max(1);
        idx.push(flat % d);
        flat /= d;
    }
    idx.reverse();
    idx
}

/// Element statistics of `a` against `b` read as `t` with `sizes` (the reference's
/// `_compute_tensor_stats`); types it does not decode, and data without a type, are
/// compared bytewise.
pub(crate) fn data_stats(
    t: Option<ScalarType>,
    sizes: &[i32],
    a: &[u8],
    b: &[u8],
    max_samples: usize,
) -> DataStats {
    let mut d = DataStats::default();
    let Some((t, size)) = t.and_then(|t| Some((t, element_size(t)?))) else {
        let n = a.len().min(b.len());
        d.elements = n as u64;
        d.differing = a.iter().zip(b).filter(|(x, y)| x != y).count() as u64;
        return d;
    };
    let numel = sizes.iter().fold(1u64, |acc, &s| {
        acc.saturating_mul(u64::try_from(s).unwrap_or(0))
    });
    let count = numel
        .min((a.len() / size) as u64)
        .min((b.len() / size) as u64);
    let mut total = 0.0;
    for i in 0..count as usize {
        let (Some(x), Some(y)) = (element(t, a, i), element(t, b, i)) else {
            break;
        };
        #[allow(clippy::float_cmp)]
        if x != y {
            let diff = (x - y).abs();
            d.differing += 1;
            if diff > d.max_abs_diff {
                d.max_abs_diff = diff;
            }
            total += diff;
            if d.samples.len() < max_samples {
                d.samples.push(ElementDiff {
                    flat_index: i as u64,
                    index: unravel(i as u64, sizes),
                    a: x,
                    b: y,
                });
            }
        }
    }
    d.elements = count;
    if d.differing > 0 {
        d.mean_abs_diff = total / d.differing as f64;
    }
    d
}

type Side<'p, 'm, 'a> = (&'p ExecutionPlan<'a>, &'m PteModel<'a>);

fn value_fields(a: &KernelTypes, b: &KernelTypes) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    match (a, b) {
        (KernelTypes::Int(x), KernelTypes::Int(y)) if x != y => {
            out.push(FieldDiff::new("int_val", x.int_val, y.int_val));
        }
        (KernelTypes::Bool(x), KernelTypes::Bool(y)) if x != y => {
            out.push(FieldDiff::new("bool_val", x.bool_val, y.bool_val));
        }
        (KernelTypes::Double(x), KernelTypes::Double(y)) if x != y => {
            out.push(FieldDiff::new("double_val", x.double_val, y.double_val));
        }
        (KernelTypes::String(x), KernelTypes::String(y)) if x != y => {
            out.push(FieldDiff::new("string_val", &x.string_val, &y.string_val));
        }
        (KernelTypes::IntList(x), KernelTypes::IntList(y)) if x != y => {
            out.push(FieldDiff::new("items", &x.items, &y.items));
        }
        (KernelTypes::TensorList(x), KernelTypes::TensorList(y)) if x != y => {
            out.push(FieldDiff::new("items", &x.items, &y.items));
        }
        (KernelTypes::OptionalTensorList(x), KernelTypes::OptionalTensorList(y)) if x != y => {
            out.push(FieldDiff::new("items", &x.items, &y.items));
        }
        (KernelTypes::DoubleList(x), KernelTypes::DoubleList(y)) if x != y => {
            out.push(FieldDiff::new("items", &x.items, &y.items));
        }
        (KernelTypes::BoolList(x), KernelTypes::BoolList(y)) if x != y => {
            out.push(FieldDiff::new("items", &x.items, &y.items));
        }
        _ => {}
    }
    out
}

fn diff_plan(
    index: usize,
    (a, ma): Side<'_, '_, '_>,
    (b, mb): Side<'_, '_, '_>,
    options: &DiffOptions,
) -> PlanDiff {
    let mut d = PlanDiff {
        index,
        name_a: a.name.clone().unwrap_or_default(),
        name_b: b.name.clone().unwrap_or_default(),
        ..PlanDiff::default()
    };
    let ops = |p: &ExecutionPlan<'_>| counted(p.operators.iter().flatten().map(operator_name));
    let (oa, ob) = (ops(a), ops(b));
    d.operators_only_in_a = multiset_minus(&oa, &ob);
    d.operators_only_in_b = multiset_minus(&ob, &oa);
    let dels = |p: &ExecutionPlan<'_>| {
        counted(
            p.delegates
                .iter()
                .flatten()
                .map(|d| d.id.clone().unwrap_or_default()),
        )
    };
    let (da, db) = (dels(a), dels(b));
    d.delegates_only_in_a = multiset_minus(&da, &db);
    d.delegates_only_in_b = multiset_minus(&db, &da);
    let payload = |p: &crate::program::BackendDelegate<'_>, m: &PteModel<'_>| -> Vec<u8> {
        // Restored programs hold every payload inline.
        let r = p.processed.unwrap_or_default();
        if r.location != DataLocation::INLINE {
            return Vec::new();
        }
        m.program
            .backend_delegate_data
            .as_deref()
            .and_then(|v| v.get(r.index as usize))
            .and_then(|x| x.data.as_deref())
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    for (i, (x, y)) in a
        .delegates
        .iter()
        .flatten()
        .zip(b.delegates.iter().flatten())
        .enumerate()
    {
        let (px, py) = (payload(x, ma), payload(y, mb));
        let specs_differ = x.compile_specs != y.compile_specs;
        if px != py || specs_differ {
            d.delegate_payloads.push(DelegateDiff {
                index: i,
                id_a: x.id.clone().unwrap_or_default(),
                id_b: y.id.clone().unwrap_or_default(),
                payload_a: px.len() as u64,
                payload_b: py.len() as u64,
                payload_differs: px != py,
                compile_specs_differ: specs_differ,
            });
        }
    }
    let sizes = |p: &ExecutionPlan<'_>| p.non_const_buffer_sizes.clone().unwrap_or_default();
    if sizes(a) != sizes(b) {
        d.non_const_buffer_sizes = Some((sizes(a), sizes(b)));
    }
    let values_a = a.values.as_deref().unwrap_or(&[]);
    let values_b = b.values.as_deref().unwrap_or(&[]);
    if values_a.len() != values_b.len() {
        d.value_count = Some((values_a.len(), values_b.len()));
    }
    let (ia, ib) = (instruction_count(a), instruction_count(b));
    if ia != ib {
        d.instruction_count = Some((ia, ib));
    }
    let io = |v: &Option<Vec<i32>>| v.clone().unwrap_or_default();
    if io(&a.inputs) != io(&b.inputs) {
        d.inputs = Some((io(&a.inputs), io(&b.inputs)));
    }
    if io(&a.outputs) != io(&b.outputs) {
        d.outputs = Some((io(&a.outputs), io(&b.outputs)));
    }
    let (ua, ub) = (value_usages(a), value_usages(b));
    for (i, (x, y)) in values_a.iter().zip(values_b).enumerate() {
        match (&x.val, &y.val) {
            (Some(KernelTypes::Tensor(ta)), Some(KernelTypes::Tensor(tb))) => {
                let metadata = diff_tensor_metadata(ta, tb);
                let (ba, bb) = (ma.tensor_data(ta), mb.tensor_data(tb));
                let has_data = ba.is_some() || bb.is_some();
                let matches = matches!((ba, bb), (Some(x), Some(y)) if x == y);
                if metadata.is_empty() && (!has_data || matches) {
                    continue;
                }
                let mut td = TensorDiff {
                    a: tensor_info(i, ta, &ua),
                    b: tensor_info(i, tb, &ub),
                    bytes_a: ba.map_or(0, |x| x.len() as u64),
                    bytes_b: bb.map_or(0, |x| x.len() as u64),
                    bytes_differ: has_data && !matches,
                    metadata,
                    stats: DataStats::default(),
                };
                if let (Some(x), Some(y), false) = (ba, bb, matches) {
                    let sizes = ta.sizes.as_deref().unwrap_or(&[]);
                    td.stats = data_stats(Some(ta.scalar_type), sizes, x, y, options.max_samples);
                }
                d.tensors.push(td);
            }
            (va, vb) => {
                let kind = |v: &Option<KernelTypes>| {
                    v.as_ref()
                        .map_or("NONE", KernelTypes::kind_name)
                        .to_string()
                };
                let (ka, kb) = (kind(va), kind(vb));
                let fields = match (va, vb) {
                    (Some(x), Some(y)) if ka == kb => value_fields(x, y),
                    _ => Vec::new(),
                };
                if ka != kb || !fields.is_empty() {
                    d.values.push(ValueDiff {
                        value_index: i,
                        kind_a: ka,
                        kind_b: kb,
                        fields,
                        usages_a: ua.get(&i).cloned().unwrap_or_default(),
                        usages_b: ub.get(&i).cloned().unwrap_or_default(),
                    });
                }
            }
        }
    }
    let extra =
        |values: &[crate::program::EValue], from: usize, u: &BTreeMap<usize, Vec<Usage>>| {
            values
                .iter()
                .enumerate()
                .skip(from)
                .filter_map(|(i, v)| match &v.val {
                    Some(KernelTypes::Tensor(t)) => Some(tensor_info(i, t, u)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
    d.tensors_only_in_a = extra(values_a, values_b.len(), &ua);
    d.tensors_only_in_b = extra(values_b, values_a.len(), &ub);
    d
}
