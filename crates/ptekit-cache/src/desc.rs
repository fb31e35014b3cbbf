//! Packing descriptors: a digest of everything besides a buffer's bytes that
//! changes how XNNPACK packs it — datatype, dimensions, quantization
//! parameters (with the contents of per-channel and blockwise scales),
//! channel dimension, block size, and the node that consumes it. Part of
//! every cache key (see [`crate::format::ContentKey::desc`]).

/// Builds a descriptor digest field by field (each field typed and
/// length-prefixed, so no two different field lists give the same input).
/// The fields are collected and hashed once by [`DescBuilder::finish`]
/// (the same digest as hashing them field by field, without a hasher's
/// state per descriptor: the interposers build thousands per model load).
pub struct DescBuilder {
    input: Vec<u8>,
}

impl DescBuilder {
    /// A descriptor of kind `kind` (e.g. `"tensor"`, `"node"`).
    pub fn new(kind: &str) -> DescBuilder {
        let mut input = Vec::with_capacity(128);
        input.extend_from_slice(b"ptekit packing descriptor v1\0");
        let mut b = DescBuilder { input };
        b.bytes(kind.as_bytes());
        b
    }

    /// Adds an unsigned integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.input.extend_from_slice(&[1]);
        self.input.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Adds a signed integer.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.input.extend_from_slice(&[2]);
        self.input.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Adds a float by its bit pattern (so -0.0, NaN payloads and 2x scales
    /// all differ).
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.input.extend_from_slice(&[3]);
        self.input.extend_from_slice(&v.to_bits().to_le_bytes());
        self
    }

    /// Adds a byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.input.extend_from_slice(&[4]);
        self.input
            .extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.input.extend_from_slice(b);
        self
    }

    /// Adds a list of dimensions.
    pub fn dims(&mut self, d: &[usize]) -> &mut Self {
        self.input.extend_from_slice(&[5]);
        self.input
            .extend_from_slice(&(d.len() as u64).to_le_bytes());
        for x in d {
            self.input.extend_from_slice(&(*x as u64).to_le_bytes());
        }
        self
    }

    /// Adds another digest (e.g. a node's descriptor to a tensor's).
    pub fn digest(&mut self, d: &[u8; 32]) -> &mut Self {
        self.input.extend_from_slice(&[6]);
        self.input.extend_from_slice(d);
        self
    }

    /// The digest.
    pub fn finish(&self) -> [u8; 32] {
        *blake3::hash(&self.input).as_bytes()
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
