//! Named field reads on verified flatbuffer tables, shared by the program, bundled-program
//! and tensor-data decoders: each helper converts a verified view into the owned model's
//! type and adds the field's name to the error path (`execution_plan[0].values[3]...`).
//! Byte vectors stay borrowed from the input buffer (`'buf`), not from the verifier.

use std::borrow::Cow;

use ptekit_flatbuffers::{Error, Scalar, Table};

/// A decoding step's result; the error gets its path while it unwinds.
pub(crate) type R<T> = Result<T, Error>;

/// Adds `name` to the path of an error.
pub(crate) fn named(name: &'static str) -> impl FnOnce(Error) -> Error {
    move |e| e.in_field(name)
}

/// A scalar field, or `default` when absent.
pub(crate) fn get<T: Scalar>(
    t: &Table<'_, '_>,
    field: usize,
    default: T,
    name: &'static str,
) -> R<T> {
    t.get(field, default).map_err(named(name))
}

/// A string field, copied.
pub(crate) fn string(t: &Table<'_, '_>, field: usize, name: &'static str) -> R<Option<String>> {
    t.string(field)
        .map(|s| s.map(str::to_owned))
        .map_err(named(name))
}

/// A `[ubyte]` field, borrowed from the buffer (zero-copy).
pub(crate) fn bytes<'buf>(
    t: &Table<'_, 'buf>,
    field: usize,
    name: &'static str,
) -> R<Option<Cow<'buf, [u8]>>> {
    Ok(t.bytes(field).map_err(named(name))?.map(Cow::Borrowed))
}

/// A `[ubyte]` field, copied (for small fields such as `dim_order`).
pub(crate) fn byte_vec(t: &Table<'_, '_>, field: usize, name: &'static str) -> R<Option<Vec<u8>>> {
    Ok(t.bytes(field).map_err(named(name))?.map(<[u8]>::to_vec))
}

/// A vector of scalars, copied (`to_vec` allocates exactly the verified length, which is
/// bounded by the buffer).
pub(crate) fn scalars<T: Scalar>(
    t: &Table<'_, '_>,
    field: usize,
    name: &'static str,
) -> R<Option<Vec<T>>> {
    Ok(t.scalar_vector::<T>(field)
        .map_err(named(name))?
        .map(|v| v.to_vec()))
}

/// A vector of tables, each decoded with `decode` (errors get `name[i]`).
pub(crate) fn tables<'v, 'buf, T>(
    t: &Table<'v, 'buf>,
    field: usize,
    name: &'static str,
    decode: impl FnMut(Table<'v, 'buf>) -> R<T>,
) -> R<Option<Vec<T>>> {
    t.decode_table_vector(field, name, decode)
}

/// A sub-table decoded with `decode` (errors get `name`).
pub(crate) fn table<'v, 'buf, T>(
    t: &Table<'v, 'buf>,
    field: usize,
    name: &'static str,
    decode: impl FnOnce(Table<'v, 'buf>) -> R<T>,
) -> R<Option<T>> {
    match t.table(field).map_err(named(name))? {
        None => Ok(None),
        Some(sub) => decode(sub).map(Some).map_err(named(name)),
    }
}
