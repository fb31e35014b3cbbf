//! Packing ([`pack_flat_tensor`], flatc's JSON order) and verified decoding
//! ([`decode_flat_tensor`]) of the `FlatTensor` flatbuffer.

use ptekit_flatbuffers::flatc_order::FlatcTable;
use ptekit_flatbuffers::{BuildError, Builder, Limits, Table, UOffset, Verifier};

use super::model::*;
use super::FLAT_TENSOR_FILE_IDENTIFIER;
use crate::fields::{byte_vec, get, scalars, string, table, tables, R};
use crate::program::{DecodeError, ScalarType};

/// Packs `ft` into the bytes `flatc --binary` (24.3.25) writes for the JSON the
/// reference's `_serialize_to_flatbuffer` produces (`json.dumps` of the dataclass: keys
/// in field order, `None` as `null`), without the `FH01` header.
///
/// The order (see [`ptekit_flatbuffers::flatc_order`]): children in JSON order, depth
/// first — the `segments` tables first to last and their vector, then for each
/// `NamedData` its `key` string, its `tensor_layout` (`sizes`, `dim_order`, table) and
/// the table, then the `named_data` vector; each table's fields by size class then
/// descending field id.
pub fn pack_flat_tensor(ft: &FlatTensor) -> Result<Vec<u8>, BuildError> {
    let mut b = Builder::new();
    let segments = ft.segments.as_deref().map(|segs| {
        let offs: Vec<UOffset> = segs
            .iter()
            .map(|s| {
                let mut t = FlatcTable::new(2);
                t.add_u64(0, s.offset, 0);
                t.add_u64(1, s.size, 0);
                t.end(&mut b)
            })
            .collect();
        b.create_offset_vector(&offs)
    });
    let named = ft.named_data.as_deref().map(|entries| {
        let offs: Vec<UOffset> = entries.iter().map(|n| named_data(&mut b, n)).collect();
        b.create_offset_vector(&offs)
    });
    let mut root = FlatcTable::new(3);
    root.add_u32(0, ft.version, 0);
    root.add_offset(1, segments.unwrap_or(0));
    root.add_offset(2, named.unwrap_or(0));
    let root = root.end(&mut b);
    b.try_finish(root, Some(&FLAT_TENSOR_FILE_IDENTIFIER))?;
    b.try_into_finished_data()
}

fn named_data(b: &mut Builder, n: &NamedData) -> UOffset {
    let key = n.key.as_deref().map(|k| b.create_string(k));
    let layout = n.tensor_layout.as_ref().map(|l| {
        let sizes = l.sizes.as_deref().map(|s| b.create_scalar_vector(s));
        let dim_order = l.dim_order.as_deref().map(|d| b.create_scalar_vector(d));
        let mut t = FlatcTable::new(3);
        t.add_i8(0, l.scalar_type.0, 0);
        t.add_offset(1, sizes.unwrap_or(0));
        t.add_offset(2, dim_order.unwrap_or(0));
        t.end(b)
    });
    let mut t = FlatcTable::new(3);
    t.add_offset(0, key.unwrap_or(0));
    t.add_u32(1, n.segment_index, 0);
    t.add_offset(2, layout.unwrap_or(0));
    t.end(b)
}

/// Accepts `FT` followed by two ASCII letters or digits (the reference's
/// `FT[0-9a-zA-Z][0-9a-zA-Z]`).
pub fn is_ft_identifier(id: [u8; 4]) -> bool {
    let [a, b, c, d] = id;
    a == b'F' && b == b'T' && c.is_ascii_alphanumeric() && d.is_ascii_alphanumeric()
}

/// Decodes and verifies a `FlatTensor` flatbuffer. `buf` starts at the file start and
/// may include the inserted `FH01` header (the root offset skips it).
pub fn decode_flat_tensor(buf: &[u8], limits: &Limits) -> Result<FlatTensor, DecodeError> {
    let verifier = Verifier::new(buf, *limits)?;
    let (root, _) = verifier.root_with_identifier(|id| is_ft_identifier(*id))?;
    Ok(flat_tensor(root)?)
}

fn flat_tensor(t: Table<'_, '_>) -> R<FlatTensor> {
    Ok(FlatTensor {
        version: get(&t, 0, 0u32, "version")?,
        segments: tables(&t, 1, "segments", |s| {
            Ok(DataSegment {
                offset: get(&s, 0, 0u64, "offset")?,
                size: get(&s, 1, 0u64, "size")?,
            })
        })?,
        named_data: tables(&t, 2, "named_data", |n| {
            Ok(NamedData {
                key: string(&n, 0, "key")?,
                segment_index: get(&n, 1, 0u32, "segment_index")?,
                tensor_layout: table(&n, 2, "tensor_layout", tensor_layout)?,
            })
        })?,
    })
}

fn tensor_layout(t: Table<'_, '_>) -> R<TensorLayout> {
    Ok(TensorLayout {
        scalar_type: ScalarType(get(&t, 0, 0i8, "scalar_type")?),
        sizes: scalars(&t, 1, "sizes")?,
        dim_order: byte_vec(&t, 2, "dim_order")?,
    })
}
