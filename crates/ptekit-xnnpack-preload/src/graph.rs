//! What the interposers learn about each XNNPACK subgraph while ExecuTorch
//! defines it: every value's packing descriptor (datatype, dimensions, all
//! quantization parameters with scale contents) and static data, and every
//! node that packs weights (kind, parameters, the descriptors of its input
//! and output). At runtime creation this becomes one packing descriptor per
//! static buffer; see [`Graph::weights`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ptekit_cache::desc::DescBuilder;

/// Datatype codes of `enum xnn_datatype` (include/xnnpack.h).
pub mod dtype {
    /// IEEE fp32.
    pub const FP32: u32 = 1;
    /// IEEE fp16.
    pub const FP16: u32 = 2;
    /// Per-tensor quantized int8.
    pub const QINT8: u32 = 3;
    /// Per-tensor quantized uint8.
    pub const QUINT8: u32 = 4;
    /// Per-tensor quantized int32.
    pub const QINT32: u32 = 5;
    /// Per-channel quantized int8.
    pub const QCINT8: u32 = 6;
    /// Per-channel quantized int32.
    pub const QCINT32: u32 = 7;
    /// Per-channel quantized int4.
    pub const QCINT4: u32 = 8;
    /// int32.
    pub const INT32: u32 = 11;
    /// Blockwise quantized int4.
    pub const QBINT4: u32 = 12;
    /// bfloat16.
    pub const BF16: u32 = 14;
    /// Per-channel quantized int2.
    pub const QCINT2: u32 = 18;
}

/// Bytes of static data XNNPACK reads for a tensor of `datatype` and `dims`
/// (sub-byte types pack each innermost row into whole bytes); `None` for
/// datatypes this cache does not key (their packs go to the heap).
pub fn data_bytes(datatype: u32, dims: &[usize]) -> Option<usize> {
    let (outer, last) = match dims.split_last() {
        Some((l, rest)) => (rest.iter().try_fold(1usize, |a, d| a.checked_mul(*d))?, *l),
        None => (1, 1),
    };
    let elems = outer.checked_mul(last)?;
    match datatype {
        dtype::FP32 | dtype::QINT32 | dtype::QCINT32 | dtype::INT32 => elems.checked_mul(4),
        dtype::FP16 | dtype::BF16 => elems.checked_mul(2),
        dtype::QINT8 | dtype::QUINT8 | dtype::QCINT8 => Some(elems),
        dtype::QCINT4 | dtype::QBINT4 => outer.checked_mul(last.div_ceil(2)),
        dtype::QCINT2 => outer.checked_mul(last.div_ceil(4)),
        _ => None,
    }
}

/// Hashes the integer keys of the interposers' maps (XNNPACK value ids,
/// subgraph and runtime addresses) with one multiplication instead of
/// SipHash: the keys come from XNNPACK, not from an adversary, and every
/// interposed call looks one up.
#[derive(Clone, Copy, Default)]
pub struct IdHasher(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(GOLDEN);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A map keyed by ids or addresses ([`IdHasher`]).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// One defined value.
#[derive(Clone, Debug)]
pub struct Value {
    /// Descriptor of the value itself.
    pub desc: [u8; 32],
    /// Static data pointer (0: none).
    pub data: usize,
    /// Bytes of static data, when the datatype is keyed.
    pub bytes: Option<usize>,
}

/// A static buffer to register, with its final packing descriptor.
#[derive(Clone, Debug)]
pub struct Weight {
    /// Data pointer.
    pub ptr: usize,
    /// Bytes.
    pub bytes: usize,
    /// Final descriptor: the value's own, its uses, the subgraph.
    pub desc: [u8; 32],
}

/// Everything recorded about one subgraph.
#[derive(Default)]
pub struct Graph {
    values: IdMap<u32, Value>,
    uses: IdMap<u32, Vec<[u8; 32]>>,
    log: Vec<Defined>,
}

/// One definition, in order: hashed into the subgraph's descriptor when a
/// runtime is created (not one digest per definition).
enum Defined {
    /// A value: its id and descriptor.
    Value(u32, [u8; 32]),
    /// A packing node: its descriptor.
    Node([u8; 32]),
}

impl Graph {
    /// Records a value definition (after XNNPACK accepted it).
    pub fn value(&mut self, id: u32, desc: [u8; 32], data: usize, bytes: Option<usize>) {
        self.log.push(Defined::Value(id, desc));
        self.values.insert(id, Value { desc, data, bytes });
    }

    fn value_desc(&self, id: u32) -> [u8; 32] {
        self.values.get(&id).map(|v| v.desc).unwrap_or_else(|| {
            DescBuilder::new("unknown value")
                .u64(u64::from(id))
                .finish()
        })
    }

    /// Records a node that packs `filter` (and `bias`): `params` already holds
    /// its kind and scalar parameters; the descriptors of its input and
    /// output values are added here.
    pub fn node(
        &mut self,
        mut params: DescBuilder,
        input: u32,
        filter: u32,
        bias: u32,
        output: u32,
    ) {
        params
            .digest(&self.value_desc(input))
            .digest(&self.value_desc(output))
            .u64(u64::from(input))
            .u64(u64::from(filter))
            .u64(u64::from(bias))
            .u64(u64::from(output));
        let node = params.finish();
        self.log.push(Defined::Node(node));
        for (role, id) in [("filter", filter), ("bias", bias)] {
            if id == u32::MAX {
                continue;
            }
            let u = DescBuilder::new("use")
                .bytes(role.as_bytes())
                .digest(&node)
                .finish();
            self.uses.entry(id).or_default().push(u);
        }
    }

    /// The static buffers used as filter or bias by a recorded node, each
    /// with its final descriptor (own descriptor, all its uses, the whole
    /// subgraph and the runtime flags). A buffer that appears under several
    /// values with different descriptors is left out (`ambiguous` counts
    /// them): its packs stay on the heap.
    pub fn weights(&self, runtime_flags: u32) -> (Vec<Weight>, u64) {
        let mut sub = DescBuilder::new("subgraph");
        sub.u64(u64::from(runtime_flags));
        for d in &self.log {
            match d {
                Defined::Value(id, desc) => sub.u64(u64::from(*id)).digest(desc),
                Defined::Node(node) => sub.bytes(b"node").digest(node),
            };
        }
        let sub = sub.finish();
        let mut by_ptr: IdMap<usize, (usize, Option<[u8; 32]>)> = IdMap::default();
        let mut ids: Vec<&u32> = self.uses.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(v) = self.values.get(id) else {
                continue;
            };
            if v.data == 0 {
                continue;
            }
            let Some(bytes) = v.bytes else { continue };
            let mut uses = self.uses.get(id).cloned().unwrap_or_default();
            uses.sort_unstable();
            let mut d = DescBuilder::new("weight");
            d.digest(&v.desc).digest(&sub);
            for u in &uses {
                d.digest(u);
            }
            let desc = d.finish();
            by_ptr
                .entry(v.data)
                .and_modify(|(b, e)| {
                    if *e != Some(desc) || *b != bytes {
                        *e = None;
                    }
                })
                .or_insert((bytes, Some(desc)));
        }
        let mut ambiguous = 0;
        let mut out = Vec::new();
        for (ptr, (bytes, desc)) in by_ptr {
            match desc {
                Some(desc) => out.push(Weight { ptr, bytes, desc }),
                None => ambiguous += 1,
            }
        }
        out.sort_by_key(|w| w.ptr);
        (out, ambiguous)
    }
}

/// Descriptor of a value: its datatype, dimensions and quantization.
pub struct ValueDesc<'a> {
    /// XNNPACK datatype.
    pub datatype: u32,
    /// Dimensions.
    pub dims: &'a [usize],
    /// Value flags (external input/output).
    pub flags: u32,
}

impl ValueDesc<'_> {
    /// Starts the descriptor with the fields every value has.
    pub fn builder(&self, kind: &str) -> DescBuilder {
        let mut b = DescBuilder::new("value desc");
        b.bytes(kind.as_bytes())
            .u64(u64::from(self.datatype))
            .dims(self.dims)
            .u64(u64::from(self.flags));
        b
    }
}
