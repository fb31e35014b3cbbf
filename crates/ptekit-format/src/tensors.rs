//! The tensors a file stores, by name, with where their bytes are: what
//! `ptekit.safe_open` reads (without copying) from a `.ptd`, a `.pte` or a `.bpte`.
//!
//! - `.ptd`: every named entry, with its tensor layout (the whole segment when it has
//!   none).
//! - `.pte` (and the program of a `.bpte`): every constant tensor (a tensor with stored
//!   data and no memory plan) under its fully qualified name when the program records
//!   one, else `"<method>/<value index>"`; the bytes are those the reference's
//!   `deserialize_pte_binary` restores into `constant_buffer`, cut to the tensor's size.
//!   Then the program's named data under their keys, as raw bytes. A name seen before is
//!   skipped (the first tensor of that name wins).

use std::collections::HashSet;

use crate::bundled::BundledFile;
use crate::flat_tensor::{self, FlatTensorFile};
use crate::inspect::{detect, InspectError, Kind};
use crate::program::{KernelTypes, ScalarType};
use crate::pte::{restore, PteFile, ReadOptions};
use crate::write::{len64, offset_within};

/// One stored tensor (or raw blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTensor {
    /// The name (see the module docs).
    pub name: String,
    /// Element type; `None` for raw bytes (named data of a `.pte`, a `.ptd` entry without
    /// layout).
    pub scalar_type: Option<ScalarType>,
    /// Sizes (logical order); empty for raw bytes.
    pub sizes: Vec<i64>,
    /// Dimension order as stored (empty for raw bytes).
    pub dim_order: Vec<u8>,
    /// Offset of the first byte in the input.
    pub offset: u64,
    /// Number of bytes.
    pub nbytes: u64,
}

/// Bytes of a tensor of `scalar_type` and `sizes` (`None` for an unknown type or a
/// negative or overflowing size).
fn tensor_nbytes(scalar_type: ScalarType, sizes: &[i64]) -> Option<u64> {
    let elem = u64::try_from(scalar_type.element_size()?).ok()?;
    sizes
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
}

/// A tensor whose bytes are `data[..nbytes]`, located in `whole`.
fn located(
    name: String,
    scalar_type: Option<ScalarType>,
    sizes: Vec<i64>,
    dim_order: Vec<u8>,
    data: &[u8],
    whole: &[u8],
) -> Option<StoredTensor> {
    let nbytes = match scalar_type {
        Some(t) => tensor_nbytes(t, &sizes)?,
        None => len64(data.len()),
    };
    if nbytes > len64(data.len()) {
        return None;
    }
    Some(StoredTensor {
        name,
        scalar_type,
        sizes,
        dim_order,
        offset: len64(offset_within(whole, data)?),
        nbytes,
    })
}

fn program_tensors(file: &PteFile<'_>, whole: &[u8]) -> Result<Vec<StoredTensor>, InspectError> {
    let model = restore(file)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for plan in model.program.execution_plan.iter().flatten() {
        let method = plan.name.as_deref().unwrap_or("");
        for (i, v) in plan.values.iter().flatten().enumerate() {
            let Some(KernelTypes::Tensor(t)) = &v.val else {
                continue;
            };
            if t.allocation_info.is_some() {
                continue;
            }
            let Some(data) = model.tensor_data(t) else {
                continue;
            };
            let name = t
                .extra_tensor_info
                .as_ref()
                .and_then(|e| e.fully_qualified_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("{method}/{i}"));
            if seen.contains(&name) {
                continue;
            }
            let sizes = t.sizes.iter().flatten().map(|&d| i64::from(d)).collect();
            let dim_order = t.dim_order.clone().unwrap_or_default();
            if let Some(s) = located(name, Some(t.scalar_type), sizes, dim_order, data, whole) {
                seen.insert(s.name.clone());
                out.push(s);
            }
        }
    }
    for n in file.program().named_data.iter().flatten() {
        let Some(key) = n.key.as_deref().filter(|k| !seen.contains(*k)) else {
            continue;
        };
        let data = usize::try_from(n.segment_index)
            .ok()
            .and_then(|i| file.segment_data(i));
        if let Some(s) = data.and_then(|d| located(key.into(), None, vec![], vec![], d, whole)) {
            seen.insert(s.name.clone());
            out.push(s);
        }
    }
    Ok(out)
}

fn ptd_tensors(file: &FlatTensorFile<'_>, whole: &[u8]) -> Vec<StoredTensor> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in file.flat_tensor().named_data.iter().flatten() {
        let Some(key) = n.key.as_deref().filter(|k| !seen.contains(*k)) else {
            continue;
        };
        let Some(data) = usize::try_from(n.segment_index)
            .ok()
            .and_then(|i| file.segments().get(i))
            .map(|s| s.data)
        else {
            continue;
        };
        let s = match &n.tensor_layout {
            Some(l) => located(
                key.into(),
                Some(l.scalar_type),
                l.sizes.iter().flatten().map(|&d| i64::from(d)).collect(),
                l.dim_order.clone().unwrap_or_default(),
                data,
                whole,
            ),
            None => located(key.into(), None, vec![], vec![], data, whole),
        };
        if let Some(s) = s {
            seen.insert(s.name.clone());
            out.push(s);
        }
    }
    out
}

/// The tensors stored in `bytes` (a `.ptd`, `.pte` or `.bpte`; see the module docs), read
/// through the verified readers. Offsets are relative to `bytes`.
pub fn stored_tensors(bytes: &[u8]) -> Result<Vec<StoredTensor>, InspectError> {
    let options = ReadOptions::default();
    match detect(bytes).map_err(InspectError::UnknownKind)? {
        Kind::Program => program_tensors(&PteFile::parse(bytes, &options)?, bytes),
        Kind::Bundled => {
            let file = BundledFile::parse(bytes, &options.limits)?;
            program_tensors(&file.program_file(&options)?, bytes)
        }
        Kind::TensorData => {
            let file = FlatTensorFile::parse(bytes, &flat_tensor::ReadOptions::default())?;
            Ok(ptd_tensors(&file, bytes))
        }
    }
}
