//! Packing descriptors: a digest of everything besides a buffer's bytes that
//! changes how XNNPACK packs it — datatype, dimensions, quantization
//! parameters (with the contents of per-channel and blockwise scales),
//! channel dimension, block size, and the node that consumes it. Part of
//! every cache key (see [`crate::format::ContentKey::desc`]).

/// Builds a descriptor digest field by field (each field typed and
/// length-prefixed, so no two different field lists give the same input).
/// The fields are collected in a buffer on the stack and hashed once by
/// [`DescBuilder::finish`] (the same digest as hashing them field by field,
/// without a heap allocation or a hasher's state per descriptor: the
/// interposers build thousands per model load). Longer inputs (large scale
/// tensors) go on into a hasher.
pub struct DescBuilder {
    buf: [u8; INLINE],
    len: usize,
    spill: Option<Box<blake3::Hasher>>,
}

/// Bytes a descriptor collects before it spills into a hasher.
const INLINE: usize = 256;

impl DescBuilder {
    /// A descriptor of kind `kind` (e.g. `"tensor"`, `"node"`).
    pub fn new(kind: &str) -> DescBuilder {
        let mut b = DescBuilder {
            buf: [0; INLINE],
            len: 0,
            spill: None,
        };
        b.push(b"ptekit packing descriptor v1\0");
        b.bytes(kind.as_bytes());
        b
    }

    fn push(&mut self, b: &[u8]) {
        let end = self.len + b.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(b);
            self.len = end;
            return;
        }
        let h = self
            .spill
            .get_or_insert_with(|| Box::new(blake3::Hasher::new()));
        h.update(&self.buf[..self.len]);
        h.update(b);
        self.len = 0;
    }

    /// Adds an unsigned integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.push(&[1]);
        self.push(&v.to_le_bytes());
        self
    }

    /// Adds a signed integer.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.push(&[2]);
        self.push(&v.to_le_bytes());
        self
    }

    /// Adds a float by its bit pattern (so -0.0, NaN payloads and 2x scales
    /// all differ).
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.push(&[3]);
        self.push(&v.to_bits().to_le_bytes());
        self
    }

    /// Adds a byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.push(&[4]);
        self.push(&(b.len() as u64).to_le_bytes());
        self.push(b);
        self
    }

    /// Adds a list of dimensions.
    pub fn dims(&mut self, d: &[usize]) -> &mut Self {
        self.push(&[5]);
        self.push(&(d.len() as u64).to_le_bytes());
        for x in d {
            self.push(&(*x as u64).to_le_bytes());
        }
        self
    }

    /// Adds another digest (e.g. a node's descriptor to a tensor's).
    pub fn digest(&mut self, d: &[u8; 32]) -> &mut Self {
        self.push(&[6]);
        self.push(d);
        self
    }

    /// The digest.
    pub fn finish(&self) -> [u8; 32] {
        let rest = &self.buf[..self.len];
        match &self.spill {
            None => *blake3::hash(rest).as_bytes(),
            Some(h) => {
                let mut h = h.as_ref().clone();
                h.update(rest);
                *h.finalize().as_bytes()
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_spilled_inputs_hash_like_one_stream() {
        // A descriptor's digest is BLAKE3 of its field encoding, however
        // long: short ones stay in the buffer, long ones spill.
        for n in [0usize, 10, 200, 239, 240, 241, 1000, 70_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let mut b = DescBuilder::new("t");
            b.u64(5).bytes(&data).dims(&[2, 3]);
            let mut whole = Vec::new();
            whole.extend_from_slice(b"ptekit packing descriptor v1\0");
            whole.push(4);
            whole.extend_from_slice(&1u64.to_le_bytes());
            whole.extend_from_slice(b"t");
            whole.push(1);
            whole.extend_from_slice(&5u64.to_le_bytes());
            whole.push(4);
            whole.extend_from_slice(&(n as u64).to_le_bytes());
            whole.extend_from_slice(&data);
            whole.push(5);
            whole.extend_from_slice(&2u64.to_le_bytes());
            whole.extend_from_slice(&2u64.to_le_bytes());
            whole.extend_from_slice(&3u64.to_le_bytes());
            assert_eq!(b.finish(), *blake3::hash(&whole).as_bytes(), "{n} bytes");
            // finish does not consume: more fields change the digest.
            let before = b.finish();
            b.u64(1);
            assert_ne!(b.finish(), before);
        }
    }
}
