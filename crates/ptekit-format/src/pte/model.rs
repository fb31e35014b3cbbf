//! The `.pte` model: what the reference serializer takes as input (its `PTEFile`) and what
//! [`restore`](super::restore) gives back. The planner reads it; nothing here reads or
//! writes files.

use std::borrow::Cow;

use crate::program::{Buffer, Program, Tensor};

use super::{ModelReason, PteError};

/// What the reference serializer takes as input (its `PTEFile`): the program with
/// constants and delegate blobs inline, plus the data that goes into segments of its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PteModel<'a> {
    /// The program. Constants are in `constant_buffer` (entry 0 is the placeholder for
    /// non-constant tensors), delegate blobs in `backend_delegate_data`; `segments` and
    /// `named_data` are empty.
    pub program: Program<'a>,
    /// Initial state of the mutable tensors (one buffer per entry of the mutable data
    /// segment), or `None`.
    pub mutable_data: Option<Vec<Buffer<'a>>>,
    /// Named blobs stored in the file, or `None`.
    pub named_data: Option<NamedDataStore<'a>>,
}

/// An entry of a [`NamedDataStore`]: which buffer a key names and with which alignment it
/// is to be written (the reference's `DataEntry`, without the tensor layout, which `.pte`
/// files do not store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataEntry {
    /// Index into [`NamedDataStore::buffers`].
    pub buffer_index: usize,
    /// Alignment of the segment holding the buffer (combined with the segment alignment
    /// through their least common multiple). Restored files get 1: the reference does not
    /// preserve it.
    pub alignment: u64,
}

/// Named data (the reference's `NamedDataStoreOutput`): unique buffers, and keys naming
/// them, in insertion order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedDataStore<'a> {
    /// Unique blobs (no two have the same content when built through
    /// [`NamedDataStore::add_named_data`]).
    pub buffers: Vec<Cow<'a, [u8]>>,
    /// Keys stored in the `.pte` file, in insertion order.
    pub pte_data: Vec<(String, DataEntry)>,
    /// Keys stored in external files, per file tag (ignored when writing a `.pte`; empty
    /// after [`restore`]).
    pub external_data: Vec<(String, Vec<(String, DataEntry)>)>,
}

impl PteModel<'_> {
    /// The stored data of tensor `t` of this (restored) model, like the reference's
    /// `_get_tensor_bytes` (`devtools/pte_tool`): its constant buffer entry when
    /// `data_buffer_idx` is in range (padding to the next entry included), else the
    /// initial state of a mutable tensor; `None` for a tensor without stored data.
    pub fn tensor_data(&self, t: &Tensor) -> Option<&[u8]> {
        let constants = self.program.constant_buffer.as_deref().unwrap_or(&[]);
        let idx = usize::try_from(t.data_buffer_idx).ok()?;
        if idx > 0 && idx < constants.len() {
            return Some(constants.get(idx)?.storage.as_deref().unwrap_or(&[]));
        }
        let m = t.extra_tensor_info.as_ref()?.mutable_data_segments_idx;
        let mutable = self.mutable_data.as_deref()?;
        let m = usize::try_from(m).ok()?;
        if m > 0 && m < mutable.len() {
            return Some(mutable.get(m)?.storage.as_deref().unwrap_or(&[]));
        }
        None
    }
}

pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    // Identical slices are equal without reading them (a restored file's identical blobs
    // usually are the same segment); otherwise memcmp stops at the first difference, so
    // distinct weights cost a page, not a full read.
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

impl<'a> NamedDataStore<'a> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `data` under `key` for storage in the `.pte` file, like the reference's
    /// `NamedDataStore.add_named_data(key, data, alignment)`:
    /// - a key already present (here or in external data) must name identical bytes
    ///   (else an error); re-adding it changes nothing;
    /// - bytes identical to an existing buffer reuse that buffer (the new key gets its
    ///   own entry and alignment);
    /// - `alignment` must be positive.
    ///
    /// Lookups are linear; [`restore`] builds large stores with hashing instead.
    pub fn add_named_data(
        &mut self,
        key: impl Into<String>,
        data: Cow<'a, [u8]>,
        alignment: u64,
    ) -> Result<(), PteError> {
        let key = key.into();
        if alignment == 0 {
            return Err(PteError::model(
                format!("named data {}", crate::units::quoted(&key)),
                ModelReason::ZeroAlignment,
            ));
        }
        if let Some(entry) = self.entry(&key) {
            let existing = self.buffers.get(entry.buffer_index).map(|b| &b[..]);
            if existing.is_some_and(|e| same_bytes(e, &data)) {
                return Ok(());
            }
            return Err(PteError::model(
                format!("named data {}", crate::units::quoted(&key)),
                ModelReason::DuplicateKey {
                    existing: existing.map_or(0, <[u8]>::len),
                    new: data.len(),
                },
            ));
        }
        let buffer_index = match self.buffers.iter().position(|b| same_bytes(b, &data)) {
            Some(i) => i,
            None => {
                self.buffers.push(data);
                self.buffers.len().saturating_sub(1)
            }
        };
        self.pte_data.push((
            key,
            DataEntry {
                buffer_index,
                alignment,
            },
        ));
        Ok(())
    }

    /// The entry of `key` (in `pte_data` or any external file).
    pub fn entry(&self, key: &str) -> Option<DataEntry> {
        self.pte_data
            .iter()
            .chain(self.external_data.iter().flat_map(|(_, v)| v.iter()))
            .find(|(k, _)| k == key)
            .map(|(_, e)| *e)
    }

    /// The bytes named by `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        let e = self.entry(key)?;
        self.buffers.get(e.buffer_index).map(|b| &b[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_a_key_as_the_cli_prints_names() {
        let mut m = NamedDataStore::new();
        let key = "w\"\u{1}";
        let e = m
            .add_named_data(key, Cow::Borrowed(&[1u8][..]), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"named data "w\"\x01""#), "{e}");
        m.add_named_data(key, Cow::Borrowed(&[1u8][..]), 8).unwrap();
        let e = m
            .add_named_data(key, Cow::Borrowed(&[2u8, 3][..]), 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"named data "w\"\x01""#), "{e}");
        assert!(e.contains("existing 1 bytes, new 2 bytes"), "{e}");
    }
}
