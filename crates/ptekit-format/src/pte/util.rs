//! Checked alignment arithmetic (the reference's `padding.py`, without overflow).

use super::PteError;
pub(crate) use crate::write::{len64, offset_within};

/// Bytes needed after `offset` to reach a multiple of `alignment` (the reference's
/// `padding_required`). `alignment` must not be zero.
pub fn padding_required(offset: u64, alignment: u64) -> Result<u64, PteError> {
    if alignment == 0 {
        return Err(PteError::BadOption {
            option: "alignment",
            message: "alignment must not be zero".into(),
        });
    }
    let rem = offset % alignment;
    Ok(if rem == 0 { 0 } else { alignment - rem })
}

/// `offset` rounded up to a multiple of `alignment` (the reference's `aligned_size`).
pub fn align_up(offset: u64, alignment: u64) -> Result<u64, PteError> {
    let pad = padding_required(offset, alignment)?;
    offset
        .checked_add(pad)
        .ok_or_else(|| PteError::overflow(format!("aligning {offset} to {alignment}")))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Least common multiple (Python's `math.lcm` for positive values).
pub(crate) fn lcm(a: u64, b: u64) -> Result<u64, PteError> {
    if a == 0 || b == 0 {
        return Ok(0);
    }
    let g = gcd(a, b);
    (a / g)
        .checked_mul(b)
        .ok_or_else(|| PteError::overflow(format!("lcm({a}, {b})")))
}

/// Checked `a + b` with a description for the error.
pub(crate) fn add(a: u64, b: u64, what: impl FnOnce() -> String) -> Result<u64, PteError> {
    a.checked_add(b).ok_or_else(|| PteError::overflow(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(padding_required(0, 16).ok(), Some(0));
        assert_eq!(padding_required(17, 16).ok(), Some(15));
        assert_eq!(align_up(1448, 128).ok(), Some(1536));
        assert!(align_up(u64::MAX, 16).is_err());
        assert!(padding_required(5, 0).is_err());
        assert_eq!(lcm(128, 1).ok(), Some(128));
        assert_eq!(lcm(128, 48).ok(), Some(384));
        assert!(lcm(u64::MAX, u64::MAX - 1).is_err());
    }

    #[test]
    fn offsets() {
        let v = [0u8; 16];
        assert_eq!(offset_within(&v, &v[3..9]), Some(3));
        assert_eq!(offset_within(&v[4..], &v[..2]), None);
        let w = [1u8; 4];
        assert_eq!(offset_within(&v, &w), None);
    }
}
