//! Checked alignment arithmetic shared by every container (the reference's `padding.py`
//! and `math.lcm`, without overflow).

use crate::error::ContainerError;

/// Bytes needed after `offset` to reach a multiple of `alignment` (the reference's
/// `padding_required`). An `alignment` of zero is an error.
pub fn padding_required(offset: u64, alignment: u64) -> Result<u64, ContainerError> {
    if alignment == 0 {
        return Err(ContainerError::ZeroAlignment);
    }
    let rem = offset % alignment;
    Ok(if rem == 0 { 0 } else { alignment - rem })
}

/// `offset` rounded up to a multiple of `alignment` (the reference's `aligned_size`).
pub fn align_up(offset: u64, alignment: u64) -> Result<u64, ContainerError> {
    let pad = padding_required(offset, alignment)?;
    offset
        .checked_add(pad)
        .ok_or_else(|| ContainerError::overflow(format!("aligning {offset} to {alignment}")))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Least common multiple (Python's `math.lcm`: 0 if either is 0).
pub fn lcm(a: u64, b: u64) -> Result<u64, ContainerError> {
    if a == 0 || b == 0 {
        return Ok(0);
    }
    (a / gcd(a, b))
        .checked_mul(b)
        .ok_or_else(|| ContainerError::overflow(format!("lcm({a}, {b})")))
}

/// Checked `a + b`, naming the computation in the error.
pub(crate) fn add(a: u64, b: u64, what: impl FnOnce() -> String) -> Result<u64, ContainerError> {
    a.checked_add(b)
        .ok_or_else(|| ContainerError::overflow(what()))
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
}
