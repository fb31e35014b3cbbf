//! How two tensor-data files (`.ptd`) differ: the `FH01` header and segment layout,
//! named entries present on one side only, and for each key both have, its tensor layout
//! (dtype, sizes, dim order), where its data lies (segment index, file offset, bytes) and
//! its data, with the element statistics of the program diff ([`super::diff`]).
//!
//! Entries are paired by key. A key's data is its whole segment, as the reference's
//! `FlatTensorSerializer.deserialize` returns it; its elements are read with A's tensor
//! layout (bytewise without one, or for types the reference does not decode).

use std::collections::BTreeMap;

use serde::Serialize;

use super::diff::{
    data_stats, diff_named_maps, ChangedFields, DataStats, DiffOptions, FieldDiff, FileDiff,
    LayoutDiff,
};
use crate::flat_tensor::{FlatTensorFile, NamedData};

/// A named entry of a `.ptd` as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedTensorInfo {
    /// Element type name (`float`, ...), `null` without a tensor layout.
    pub dtype: Option<String>,
    /// Sizes, `null` without a tensor layout.
    pub sizes: Option<Vec<i32>>,
    /// Dimension order, `null` without a tensor layout.
    pub dim_order: Option<Vec<u8>>,
    /// Index of its segment.
    pub segment_index: u32,
    /// Absolute file offset of its data.
    pub offset: u64,
    /// Bytes of its segment.
    pub nbytes: u64,
}

/// A key both files have whose layout, placement or data differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedTensorDiff {
    /// The key.
    pub key: String,
    /// The entry in A.
    pub a: NamedTensorInfo,
    /// The entry in B.
    pub b: NamedTensorInfo,
    /// Differing fields: `dtype`, `sizes`, `dim_order`, `segment_index`, `offset`, `nbytes`.
    pub metadata: Vec<FieldDiff>,
    /// Whether the data bytes differ.
    pub bytes_differ: bool,
    /// Element statistics (zero when the data is equal).
    #[serde(flatten)]
    pub stats: DataStats,
}

/// The comparison of two `.ptd` files; the JSON has the keys of
/// [`ProgramDiff`](super::diff::ProgramDiff) with `tensors` in place of the methods.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TensorDataDiff {
    /// Sizes, `FlatTensor.version`, keys on one side only or with other bytes, layout.
    #[serde(flatten)]
    pub file: FileDiff,
    /// Keys both files have whose entry differs, in A's order.
    pub tensors: Vec<NamedTensorDiff>,
}

impl TensorDataDiff {
    /// Whether the two files are equivalent (nothing differs).
    pub fn is_equivalent(&self) -> bool {
        self.file.is_equivalent(self.tensors.is_empty())
    }
}

/// One named entry resolved against its file.
struct Entry<'f, 'a> {
    named: &'f NamedData,
    info: NamedTensorInfo,
    data: &'a [u8],
}

fn entries<'f, 'a>(file: &'f FlatTensorFile<'a>) -> Vec<(String, Entry<'f, 'a>)> {
    let named = file.flat_tensor().named_data.as_deref().unwrap_or(&[]);
    named
        .iter()
        .map(|n| {
            // `FlatTensorFile::parse` checked every segment index.
            let seg = file.segments().get(n.segment_index as usize);
            let layout = n.tensor_layout.as_ref();
            let info = NamedTensorInfo {
                dtype: layout.map(|l| super::diff::dtype_name(l.scalar_type)),
                sizes: layout.map(|l| l.sizes.clone().unwrap_or_default()),
                dim_order: layout.map(|l| l.dim_order.clone().unwrap_or_default()),
                segment_index: n.segment_index,
                offset: seg.map_or(0, |s| s.file_offset),
                nbytes: seg.map_or(0, |s| s.size),
            };
            let data = seg.map_or(&[][..], |s| s.data);
            (
                n.key.clone().unwrap_or_default(),
                Entry {
                    named: n,
                    info,
                    data,
                },
            )
        })
        .collect()
}

fn data_by_key<'a>(entries: &[(String, Entry<'_, 'a>)]) -> BTreeMap<String, &'a [u8]> {
    entries.iter().map(|(k, x)| (k.clone(), x.data)).collect()
}

fn metadata(a: &NamedTensorInfo, b: &NamedTensorInfo) -> Vec<FieldDiff> {
    let mut f = ChangedFields::default();
    let text = |v: &Option<Vec<i32>>| format!("{v:?}");
    f.cmp("dtype", format!("{:?}", a.dtype), format!("{:?}", b.dtype));
    f.cmp("sizes", text(&a.sizes), text(&b.sizes));
    f.cmp(
        "dim_order",
        format!("{:?}", a.dim_order),
        format!("{:?}", b.dim_order),
    );
    f.cmp("segment_index", a.segment_index, b.segment_index);
    f.cmp("offset", a.offset, b.offset);
    f.cmp("nbytes", a.nbytes, b.nbytes);
    f.0
}

fn diff_layout(a: &FlatTensorFile<'_>, b: &FlatTensorFile<'_>) -> LayoutDiff {
    let mut f = ChangedFields::default();
    let id = |x: &FlatTensorFile<'_>| x.file_identifier().escape_ascii().to_string();
    f.cmp("identifier", id(a), id(b));
    let (ha, hb) = (a.header(), b.header());
    f.cmp("header.length", ha.length, hb.length);
    f.cmp(
        "header.flatbuffer_offset",
        ha.flatbuffer_offset,
        hb.flatbuffer_offset,
    );
    f.cmp(
        "header.flatbuffer_size",
        ha.flatbuffer_size,
        hb.flatbuffer_size,
    );
    f.cmp(
        "header.segment_base_offset",
        ha.segment_base_offset,
        hb.segment_base_offset,
    );
    f.cmp(
        "header.segment_data_size",
        ha.segment_data_size,
        hb.segment_data_size,
    );
    let table = |x: &FlatTensorFile<'_>| -> Vec<(u64, u64)> {
        x.segments().iter().map(|s| (s.offset, s.size)).collect()
    };
    let (sa, sb) = (table(a), table(b));
    f.segments((ha.segment_base_offset, &sa), (hb.segment_base_offset, &sb));
    // Same keys in another order: the flatbuffer lists them differently.
    let keys = |x: &FlatTensorFile<'_>| -> Vec<String> {
        x.flat_tensor()
            .named_data
            .iter()
            .flatten()
            .map(|n| n.key.clone().unwrap_or_default())
            .collect()
    };
    let (ka, kb) = (keys(a), keys(b));
    let mut sorted = (ka.clone(), kb.clone());
    sorted.0.sort();
    sorted.1.sort();
    if sorted.0 == sorted.1 && ka != kb {
        f.cmp("named_data.order", ka.join(","), kb.join(","));
    }
    let trailing = |x: &FlatTensorFile<'_>| {
        let h = x.header();
        (x.bytes().len() as u64)
            .saturating_sub(h.segment_base_offset.saturating_add(h.segment_data_size))
    };
    f.cmp("trailing_bytes", trailing(a), trailing(b));
    LayoutDiff { fields: f.0 }
}

/// Compares two parsed `.ptd` files.
pub fn diff_tensor_data(
    a: &FlatTensorFile<'_>,
    b: &FlatTensorFile<'_>,
    options: &DiffOptions,
) -> TensorDataDiff {
    let mut out = TensorDataDiff {
        file: FileDiff::new(a.bytes(), b.bytes()),
        ..TensorDataDiff::default()
    };
    if out.file.bitwise_equal {
        return out;
    }
    out.file
        .version(a.flat_tensor().version, b.flat_tensor().version);
    let (ea, eb) = (entries(a), entries(b));
    let map = |e: &[(String, Entry<'_, '_>)]| -> BTreeMap<String, usize> {
        e.iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect()
    };
    let index_b = map(&eb);
    for (key, x) in &ea {
        let Some(y) = index_b.get(key).and_then(|&i| eb.get(i)).map(|(_, y)| y) else {
            continue;
        };
        let metadata = metadata(&x.info, &y.info);
        let bytes_differ = x.data != y.data;
        if metadata.is_empty() && !bytes_differ {
            continue;
        }
        let stats = if bytes_differ {
            let layout = x.named.tensor_layout.as_ref();
            let t = layout.map(|l| l.scalar_type);
            let sizes = layout.and_then(|l| l.sizes.as_deref()).unwrap_or(&[]);
            data_stats(t, sizes, x.data, y.data, options.max_samples)
        } else {
            DataStats::default()
        };
        out.tensors.push(NamedTensorDiff {
            key: key.clone(),
            a: x.info.clone(),
            b: y.info.clone(),
            metadata,
            bytes_differ,
            stats,
        });
    }
    out.file.named_data = diff_named_maps(&data_by_key(&ea), &data_by_key(&eb));
    out.file.layout = diff_layout(a, b);
    out.file.finish(out.tensors.is_empty());
    out
}
