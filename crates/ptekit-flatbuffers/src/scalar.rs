//! The [`Scalar`] trait: the fixed-size little-endian values FlatBuffers stores inline.

mod sealed {
    pub trait Sealed {}
}

/// A FlatBuffers scalar: `bool`, `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64`,
/// `f32` or `f64`.
///
/// The trait is sealed: it cannot be implemented outside this crate. Values are always
/// stored little-endian; `bool` is stored as one byte (`0` or `1`) and any non-zero byte
/// reads back as `true`.
pub trait Scalar: Copy + PartialEq + core::fmt::Debug + sealed::Sealed {
    /// Size of the encoded value in bytes (also its required alignment).
    const SIZE: usize;

    /// Writes the little-endian encoding into `out`, which must be `SIZE` bytes long
    /// (extra bytes are left untouched, missing bytes are not written).
    fn write_le(self, out: &mut [u8]);

    /// Decodes a value from the first `SIZE` bytes of `bytes` (missing bytes read as 0).
    fn read_le(bytes: &[u8]) -> Self;

    /// Python's `x != default` as used by `flatbuffers.Builder.PrependSlot`: IEEE
    /// comparison for floats (`-0.0 == 0.0`, `NaN != NaN`), plain equality otherwise.
    fn differs_from(self, default: Self) -> bool {
        self != default
    }
}

fn copy_into(src: &[u8], out: &mut [u8]) {
    for (d, s) in out.iter_mut().zip(src) {
        *d = *s;
    }
}

macro_rules! impl_scalar {
    ($($t:ty => $n:literal),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Scalar for $t {
            const SIZE: usize = $n;
            #[inline]
            fn write_le(self, out: &mut [u8]) {
                copy_into(&self.to_le_bytes(), out);
            }
            #[inline]
            fn read_le(bytes: &[u8]) -> Self {
                let mut a = [0u8; $n];
                copy_into(bytes, &mut a);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}

impl_scalar!(
    u8 => 1, i8 => 1, u16 => 2, i16 => 2, u32 => 4, i32 => 4,
    u64 => 8, i64 => 8, f32 => 4, f64 => 8,
);

impl sealed::Sealed for bool {}
impl Scalar for bool {
    const SIZE: usize = 1;
    #[inline]
    fn write_le(self, out: &mut [u8]) {
        copy_into(&[u8::from(self)], out);
    }
    #[inline]
    fn read_le(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|b| *b != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_python_inequality() {
        let mut b = [0u8; 8];
        (-2i64).write_le(&mut b);
        assert_eq!(i64::read_le(&b), -2);
        1.5f32.write_le(&mut b);
        assert_eq!(f32::read_le(&b), 1.5);
        true.write_le(&mut b);
        assert!(bool::read_le(&b));
        assert!(bool::read_le(&[7]));
        assert!(!bool::read_le(&[]));
        assert!(!(-0.0f64).differs_from(0.0));
        assert!(f64::NAN.differs_from(f64::NAN));
        assert!(f32::NAN.differs_from(0.0));
        assert!(!5u8.differs_from(5));
    }
}
