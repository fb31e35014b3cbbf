//! What `ptekit verify` checks of a `.ptd` beyond [`FlatTensorFile::parse`]: what the
//! reference runtime (executorch 1.5.1, `FlatTensorDataMap`) relies on when a program
//! looks up its external tensors. It compares every entry's key (a missing key crashes
//! any lookup) and makes a tensor layout of the entry it finds (an unknown dtype aborts
//! the process; sizes and dim order are read without checks), then reads the data.

use super::{FlatTensorError, FlatTensorFile, ReadOptions};
use crate::program::check_tensor_layout;

fn invalid(field: String, message: impl Into<String>) -> FlatTensorError {
    FlatTensorError::Invalid {
        field,
        message: message.into(),
    }
}

/// Parses `bytes` as a `.ptd` and [`verify`]s it: the data file a program is checked
/// against (`ptekit verify --data`, `ptekit.verify(ptd=...)`) is itself checked first.
pub fn parse_verified<'a>(
    bytes: &'a [u8],
    options: &ReadOptions,
) -> Result<FlatTensorFile<'a>, FlatTensorError> {
    let file = FlatTensorFile::parse(bytes, options)?;
    verify(&file)?;
    Ok(file)
}

/// Verifies a parsed `.ptd`: every named entry has a key, and every tensor layout is
/// well formed (known dtype with an element size; sizes and dim order as the runtime
/// checks them) and fits in its segment. Returns the first problem.
pub fn verify(file: &FlatTensorFile<'_>) -> Result<(), FlatTensorError> {
    let named = file.flat_tensor().named_data.as_deref().unwrap_or_default();
    for (i, n) in named.iter().enumerate() {
        if n.key.is_none() {
            return Err(invalid(format!("named_data[{i}].key"), "missing"));
        }
        let Some(layout) = &n.tensor_layout else {
            continue;
        };
        let field = format!("named_data[{i}].tensor_layout");
        let nbytes = check_tensor_layout(
            layout.scalar_type,
            layout.sizes.as_deref(),
            layout.dim_order.as_deref(),
        )
        .map_err(|e| invalid(format!("{field}.{}", e.field), e.message))?
        .ok_or_else(|| {
            invalid(
                format!("{field}.scalar_type"),
                format!("{} has no element size", layout.scalar_type),
            )
        })?;
        // parse checked that every segment index is in range.
        let Some(segment) = usize::try_from(n.segment_index)
            .ok()
            .and_then(|s| file.segments().get(s))
        else {
            continue;
        };
        if segment.size < nbytes {
            return Err(invalid(
                field,
                format!(
                    "the tensor needs {nbytes} bytes, segments[{}] (file offset 0x{:x}) \
                     holds {}",
                    n.segment_index, segment.file_offset, segment.size
                ),
            ));
        }
    }
    Ok(())
}
