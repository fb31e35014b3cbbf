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
    pub desc: Desc,
    /// Static data pointer (0: none).
    pub data: usize,
    /// Bytes of static data, when the datatype is keyed.
    pub bytes: Option<usize>,
    /// `desc`'s digest, once computed (a value's digest goes into the
    /// descriptors of the nodes using it and of its subgraph).
    digest: std::cell::OnceCell<[u8; 32]>,
}

impl Value {
    /// The digest of [`Value::desc`], computed once.
    pub fn digest(&self) -> [u8; 32] {
        *self.digest.get_or_init(|| self.desc.digest())
    }
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
    /// Every value definition, in order.
    defined: Vec<Value>,
    /// Each value id's latest definition in `defined`.
    values: IdMap<u32, usize>,
    uses: IdMap<u32, Vec<[u8; 32]>>,
    /// The bias ids of the nodes that use a value as their filter.
    biases: IdMap<u32, Vec<u32>>,
    log: Vec<Defined>,
}

/// One definition, in order: hashed into the subgraph's descriptor when a
/// runtime is created (not one digest per definition).
enum Defined {
    /// A value: its id and its definition in [`Graph::defined`].
    Value(u32, usize),
    /// A packing node: its descriptor.
    Node([u8; 32]),
}

impl Graph {
    /// Forgets everything recorded, keeping the memory for the next
    /// subgraph.
    pub fn clear(&mut self) {
        self.defined.clear();
        self.values.clear();
        self.uses.clear();
        self.biases.clear();
        self.log.clear();
    }

    /// Records a value definition (after XNNPACK accepted it).
    pub fn value(&mut self, id: u32, desc: Desc, data: usize, bytes: Option<usize>) {
        let at = self.defined.len();
        self.defined.push(Value {
            desc,
            data,
            bytes,
            digest: std::cell::OnceCell::new(),
        });
        self.log.push(Defined::Value(id, at));
        self.values.insert(id, at);
    }

    /// The latest definition of value `id`.
    fn get(&self, id: &u32) -> Option<&Value> {
        self.values.get(id).and_then(|&i| self.defined.get(i))
    }

    fn value_desc(&self, id: u32) -> [u8; 32] {
        self.get(&id).map(Value::digest).unwrap_or_else(|| {
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
        if filter != u32::MAX && bias != u32::MAX {
            self.biases.entry(filter).or_default().push(bias);
        }
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
    /// subgraph and the runtime flags; for a filter also the content of the
    /// static bias of each node using it, from `content(ptr, bytes)`). A
    /// buffer that appears under several values with different descriptors
    /// is left out (`ambiguous` counts them): its packs stay on the heap.
    ///
    /// The bias content is needed because XNNPACK does not always name the
    /// bias in its cache look-up: a dynamically quantized fully connected
    /// node passes it to the packer as a scale parameter (look-up bias
    /// NULL), and the packed bytes hold it. Biases are small (one value per
    /// output channel). A filter whose static bias has a datatype this cache
    /// does not key is left out too.
    pub fn weights(
        &self,
        runtime_flags: u32,
        content: &mut dyn FnMut(usize, usize) -> [u8; 32],
    ) -> (Vec<Weight>, u64) {
        // Nothing to describe without a static filter or bias: most
        // subgraphs of a partitioned model (no value descriptor is computed).
        let keyed = |id: &u32| {
            self.get(id)
                .is_some_and(|v| v.data != 0 && v.bytes.is_some())
        };
        if !self.uses.keys().any(keyed) {
            return (Vec::new(), 0);
        }
        let mut sub = DescBuilder::new("subgraph");
        sub.u64(u64::from(runtime_flags));
        for d in &self.log {
            match d {
                Defined::Value(id, at) => {
                    let d = self.defined.get(*at).map_or([0xff; 32], Value::digest);
                    sub.u64(u64::from(*id)).digest(&d)
                }
                Defined::Node(node) => sub.bytes(b"node").digest(node),
            };
        }
        let sub = sub.finish();
        let mut by_ptr: IdMap<usize, (usize, Option<[u8; 32]>)> = IdMap::default();
        let mut ids: Vec<&u32> = self.uses.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(v) = self.get(id) else {
                continue;
            };
            if v.data == 0 {
                continue;
            }
            let Some(bytes) = v.bytes else { continue };
            let mut uses = self.uses.get(id).cloned().unwrap_or_default();
            uses.sort_unstable();
            let mut d = DescBuilder::new("weight");
            d.digest(&v.digest()).digest(&sub);
            for u in &uses {
                d.digest(u);
            }
            let mut keyed_biases = true;
            for b in self.biases.get(id).map_or(&[][..], Vec::as_slice) {
                match self.get(b).map(|bv| (bv.data, bv.bytes)) {
                    Some((0, _)) | None => {}
                    Some((ptr, Some(n))) => {
                        d.bytes(b"bias content").digest(&content(ptr, n));
                    }
                    Some((_, None)) => keyed_biases = false,
                }
            }
            let desc = d.finish();
            if !keyed_biases {
                by_ptr.insert(v.data, (bytes, None));
                continue;
            }
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

/// A value's descriptor: computed at definition when it reads memory
/// XNNPACK was given (scales), else kept as its scalar fields and computed
/// only for a runtime that packs weights (the same digest either way).
#[derive(Clone, Debug)]
pub enum Desc {
    /// The digest.
    Ready([u8; 32]),
    /// The fields of a value without per-channel or blockwise parameters.
    Scalars(Scalars),
}

impl Desc {
    /// The digest.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Desc::Ready(d) => *d,
            Desc::Scalars(s) => s.digest(),
        }
    }
}

/// The fields of a plain, per-tensor quantized or dynamically quantized
/// value (XNNPACK's rank limit: 6 dimensions).
#[derive(Clone, Copy, Debug)]
pub struct Scalars {
    datatype: u32,
    dims: [usize; 6],
    rank: usize,
    flags: u32,
    kind: ScalarKind,
}

/// What kind of value [`Scalars`] describes, with its own parameters.
#[derive(Clone, Copy, Debug)]
pub enum ScalarKind {
    /// `xnn_define_tensor_value`.
    Plain,
    /// `xnn_define_quantized_tensor_value`.
    PerTensor {
        /// Zero point.
        zero_point: i32,
        /// Scale.
        scale: f32,
    },
    /// `xnn_define_dynamically_quantized_tensor_value`.
    Dynamic {
        /// Non-batch dimensions.
        num_nonbatch_dims: usize,
    },
}

impl Scalars {
    /// The fields, or `None` above 6 dimensions.
    pub fn new(datatype: u32, dims: &[usize], flags: u32, kind: ScalarKind) -> Option<Scalars> {
        let mut d = [0usize; 6];
        d.get_mut(..dims.len())?.copy_from_slice(dims);
        Some(Scalars {
            datatype,
            dims: d,
            rank: dims.len(),
            flags,
            kind,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let v = ValueDesc {
            datatype: self.datatype,
            dims: self.dims.get(..self.rank).unwrap_or(&[]),
            flags: self.flags,
        };
        match self.kind {
            ScalarKind::Plain => v.builder("plain").finish(),
            ScalarKind::PerTensor { zero_point, scale } => v
                .builder("per-tensor")
                .i64(i64::from(zero_point))
                .f32(scale)
                .finish(),
            ScalarKind::Dynamic { num_nonbatch_dims } => {
                v.builder("dynamic").u64(num_nonbatch_dims as u64).finish()
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A descriptor kept as fields digests like the one built at definition
    /// (what cache files written before hold).
    #[test]
    fn deferred_descriptors_digest_like_eager_ones() {
        let dims = [3usize, 5, 7];
        let v = ValueDesc {
            datatype: dtype::QINT8,
            dims: &dims,
            flags: 2,
        };
        let cases = [
            (ScalarKind::Plain, v.builder("plain").finish()),
            (
                ScalarKind::PerTensor {
                    zero_point: -3,
                    scale: 0.25,
                },
                v.builder("per-tensor").i64(-3).f32(0.25).finish(),
            ),
            (
                ScalarKind::Dynamic {
                    num_nonbatch_dims: 1,
                },
                v.builder("dynamic").u64(1).finish(),
            ),
        ];
        for (kind, eager) in cases {
            let s = Scalars::new(dtype::QINT8, &dims, 2, kind).expect("rank 3");
            assert_eq!(Desc::Scalars(s).digest(), eager, "{kind:?}");
        }
        assert!(Scalars::new(dtype::FP32, &[1; 7], 0, ScalarKind::Plain).is_none());
        assert_eq!(
            Scalars::new(dtype::FP32, &[], 0, ScalarKind::Plain).map(|s| Desc::Scalars(s).digest()),
            Some(
                ValueDesc {
                    datatype: dtype::FP32,
                    dims: &[],
                    flags: 0
                }
                .builder("plain")
                .finish()
            )
        );
    }

    /// A subgraph without a static filter or bias gives no weights; one
    /// with gives its buffer, described from the deferred descriptors.
    #[test]
    fn weights_only_for_static_filters() {
        let plain = |d: &[usize]| {
            Desc::Scalars(Scalars::new(dtype::FP32, d, 0, ScalarKind::Plain).expect("rank"))
        };
        let mut g = Graph::default();
        g.value(0, plain(&[1, 4]), 0, Some(16));
        g.value(1, plain(&[4, 4]), 0, Some(64));
        g.value(2, plain(&[1, 4]), 0, Some(16));
        g.node(DescBuilder::new("fully_connected"), 0, 1, u32::MAX, 2);
        let no_content = &mut |_: usize, _: usize| -> [u8; 32] { unreachable!("no bias") };
        assert_eq!(g.weights(0, no_content).0.len(), 0, "dynamic filter");
        let mut h = Graph::default();
        h.value(0, plain(&[1, 4]), 0, Some(16));
        h.value(1, plain(&[4, 4]), 0x1000, Some(64));
        h.value(2, plain(&[1, 4]), 0, Some(16));
        h.node(DescBuilder::new("fully_connected"), 0, 1, u32::MAX, 2);
        let (w, ambiguous) = h.weights(0, no_content);
        assert_eq!((w.len(), ambiguous), (1, 0));
        assert_eq!((w[0].ptr, w[0].bytes), (0x1000, 64));
        assert_ne!(
            w[0].desc,
            h.weights(1, no_content).0[0].desc,
            "runtime flags are part of it"
        );
        // A cleared record (reused for the next subgraph) describes like a
        // new one: nothing of the dynamic-filter graph remains.
        g.clear();
        g.value(0, plain(&[1, 4]), 0, Some(16));
        g.value(1, plain(&[4, 4]), 0x1000, Some(64));
        g.value(2, plain(&[1, 4]), 0, Some(16));
        g.node(DescBuilder::new("fully_connected"), 0, 1, u32::MAX, 2);
        let (again, _) = g.weights(0, no_content);
        assert_eq!(
            again
                .iter()
                .map(|w| (w.ptr, w.bytes, w.desc))
                .collect::<Vec<_>>(),
            w.iter()
                .map(|w| (w.ptr, w.bytes, w.desc))
                .collect::<Vec<_>>()
        );
    }

    /// A filter's descriptor holds the content of its node's static bias
    /// (XNNPACK's look-up may not name the bias); a bias of a datatype that
    /// is not keyed leaves the filter out.
    #[test]
    fn filter_descriptor_holds_the_bias_content() {
        let plain = |d: &[usize]| {
            Desc::Scalars(Scalars::new(dtype::FP32, d, 0, ScalarKind::Plain).expect("rank"))
        };
        let graph = |bias_bytes: Option<usize>| {
            let mut g = Graph::default();
            g.value(0, plain(&[1, 4]), 0, Some(16));
            g.value(1, plain(&[4, 4]), 0x1000, Some(64));
            g.value(2, plain(&[4]), 0x2000, bias_bytes);
            g.value(3, plain(&[1, 4]), 0, Some(16));
            g.node(DescBuilder::new("fully_connected"), 0, 1, 2, 3);
            g
        };
        let filter_desc = |g: &Graph, bias: [u8; 32]| {
            let mut asked = Vec::new();
            let (w, _) = g.weights(0, &mut |p, n| {
                asked.push((p, n));
                bias
            });
            assert_eq!(asked, [(0x2000, 16)], "only the bias is read");
            w.iter().find(|w| w.ptr == 0x1000).expect("filter").desc
        };
        let g = graph(Some(16));
        let a = filter_desc(&g, [1; 32]);
        assert_eq!(a, filter_desc(&g, [1; 32]));
        assert_ne!(a, filter_desc(&g, [2; 32]), "another bias content");
        let (w, ambiguous) = graph(None).weights(0, &mut |_, _| [0; 32]);
        assert_eq!(ambiguous, 1);
        assert!(
            w.iter().all(|w| w.ptr != 0x1000),
            "unkeyed bias: filter left out"
        );
    }
}
