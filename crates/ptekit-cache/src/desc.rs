//! Packing descriptors: a digest of everything besides a buffer's bytes that
//! changes how XNNPACK packs it — datatype, dimensions, quantization
//! parameters (with the contents of per-channel and blockwise scales),
//! channel dimension, block size, and the node that consumes it. Part of
//! every cache key (see [`crate::format::ContentKey::desc`]).

/// Builds a descriptor digest field by field (each field typed and
/// length-prefixed, so no two different field lists give the same input).
pub struct DescBuilder {
    h: blake3::Hasher,
}

impl DescBuilder {
    /// A descriptor of kind `kind` (e.g. `"tensor"`, `"node"`).
    pub fn new(kind: &str) -> DescBuilder {
        let mut h = blake3::Hasher::new();
        h.update(b"ptekit packing descriptor v1\0");
        let mut b = DescBuilder { h };
        b.bytes(kind.as_bytes());
        b
    }

    /// Adds an unsigned integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.h.update(&[1]);
        self.h.update(&v.to_le_bytes());
        self
    }

    /// Adds a signed integer.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.h.update(&[2]);
        self.h.update(&v.to_le_bytes());
        self
    }

    /// Adds a float by its bit pattern (so -0.0, NaN payloads and 2x scales
    /// all differ).
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.h.update(&[3]);
        self.h.update(&v.to_bits().to_le_bytes());
        self
    }

    /// Adds a byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.h.update(&[4]);
        self.h.update(&(b.len() as u64).to_le_bytes());
        self.h.update(b);
        self
    }

    /// Adds a list of dimensions.
    pub fn dims(&mut self, d: &[usize]) -> &mut Self {
        self.h.update(&[5]);
        self.h.update(&(d.len() as u64).to_le_bytes());
        for x in d {
            self.h.update(&(*x as u64).to_le_bytes());
        }
        self
    }

    /// Adds another digest (e.g. a node's descriptor to a tensor's).
    pub fn digest(&mut self, d: &[u8; 32]) -> &mut Self {
        self.h.update(&[6]);
        self.h.update(d);
        self
    }

    /// The digest.
    pub fn finish(&self) -> [u8; 32] {
        *self.h.finalize().as_bytes()
    }
}

/// Descriptor of a plain (unquantized) tensor: XNNPACK datatype code and
/// dimensions.
pub fn plain_tensor(datatype: u32, dims: &[usize]) -> [u8; 32] {
    DescBuilder::new("tensor")
        .u64(u64::from(datatype))
        .dims(dims)
        .finish()
}
