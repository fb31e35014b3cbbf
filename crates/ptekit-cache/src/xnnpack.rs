//! A minimal loader for the XNNPACK C API exported by ExecuTorch's
//! `libexecutorch_backend_xnnpack.so`, enough to build subgraphs of fully
//! connected and 2-D convolution nodes with static weights, create runtimes
//! with or without a weights cache, and run them. Used by the example and the
//! tests; the cache itself does not depend on it.

#![allow(
    unsafe_code,
    reason = "loading and calling the real XNNPACK through its C API"
)]

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use libloading::os::unix::{Library, Symbol, RTLD_GLOBAL, RTLD_NOW};

use crate::error::XnnError;
use crate::provider::WeightsCache;

/// `XNN_INVALID_VALUE_ID`.
pub const INVALID_ID: u32 = u32::MAX;
/// `XNN_VALUE_FLAG_EXTERNAL_INPUT`.
pub const FLAG_EXTERNAL_INPUT: u32 = 1;
/// `XNN_VALUE_FLAG_EXTERNAL_OUTPUT`.
pub const FLAG_EXTERNAL_OUTPUT: u32 = 2;
const DATATYPE_FP32: u32 = 1;
/// Bytes XNNPACK may read past the end of an input (`XNN_EXTRA_BYTES`).
pub const EXTRA_BYTES: usize = 16;

type Status = u32;

#[repr(C)]
struct ExternalValue {
    id: u32,
    data: *mut c_void,
}

struct Fns {
    initialize: unsafe extern "C" fn(*const c_void) -> Status,
    create_subgraph: unsafe extern "C" fn(u32, u32, *mut *mut c_void) -> Status,
    delete_subgraph: unsafe extern "C" fn(*mut c_void) -> Status,
    define_tensor_value: unsafe extern "C" fn(
        *mut c_void,
        u32,
        usize,
        *const usize,
        *const c_void,
        u32,
        u32,
        *mut u32,
    ) -> Status,
    define_fully_connected:
        unsafe extern "C" fn(*mut c_void, f32, f32, u32, u32, u32, u32, u32) -> Status,
    #[allow(clippy::type_complexity)]
    define_convolution_2d: unsafe extern "C" fn(
        *mut c_void,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        usize,
        usize,
        f32,
        f32,
        u32,
        u32,
        u32,
        u32,
        u32,
    ) -> Status,
    define_static_reshape:
        unsafe extern "C" fn(*mut c_void, usize, *const usize, u32, u32, u32) -> Status,
    create_runtime_v4: unsafe extern "C" fn(
        *mut c_void,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        u32,
        *mut *mut c_void,
    ) -> Status,
    reshape_runtime: unsafe extern "C" fn(*mut c_void) -> Status,
    setup_runtime_v2: unsafe extern "C" fn(*mut c_void, usize, *const ExternalValue) -> Status,
    invoke_runtime: unsafe extern "C" fn(*mut c_void) -> Status,
    delete_runtime: unsafe extern "C" fn(*mut c_void) -> Status,
}

/// The loaded XNNPACK library.
pub struct Xnnpack {
    fns: Fns,
    _libs: Vec<Library>,
    /// Folder the libraries came from.
    pub dir: PathBuf,
}

/// Library files, in load order (dependencies first).
pub const LIBS: [&str; 3] = [
    "libexecutorch.so",
    "libexecutorch_threadpool.so",
    "libexecutorch_backend_xnnpack.so",
];

/// The folder holding the libraries: `$PTEKIT_XNNPACK_LIB`, else
/// `$HOME/.cache/ptekit/xnnpack-lib`.
pub fn default_lib_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PTEKIT_XNNPACK_LIB") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/ptekit/xnnpack-lib")
}

/// Whether `dir` holds all the libraries.
pub fn lib_dir_complete(dir: &Path) -> bool {
    LIBS.iter().all(|l| dir.join(l).is_file())
}

fn check(call: &'static str, status: Status) -> Result<(), XnnError> {
    if status == 0 {
        Ok(())
    } else {
        Err(XnnError::Status { call, status })
    }
}

macro_rules! sym {
    ($lib:expr, $dir:expr, $name:literal) => {{
        let s: Symbol<_> =
            // SAFETY: the symbol is an XNNPACK C function whose signature is
            // declared by the field this value is assigned to, matching
            // include/xnnpack.h of the XNNPACK version in the ExecuTorch 1.5.1 wheel.
            unsafe { $lib.get(concat!($name, "\0").as_bytes()) }.map_err(|source| {
                XnnError::Symbol {
                    symbol: $name,
                    path: $dir.to_path_buf(),
                    source,
                }
            })?;
        *s
    }};
}

impl Xnnpack {
    /// Loads the libraries from `dir` (RTLD_GLOBAL, dependencies first) and
    /// initializes XNNPACK.
    pub fn load(dir: &Path) -> Result<Arc<Xnnpack>, XnnError> {
        let mut libs = Vec::new();
        for name in LIBS {
            let p = dir.join(name);
            // SAFETY: loading a shared library runs its initializers; these are
            // ExecuTorch's own libraries, which register backends and nothing else.
            let lib = unsafe { Library::open(Some(&p), RTLD_NOW | RTLD_GLOBAL) }
                .map_err(|source| XnnError::Load { path: p, source })?;
            libs.push(lib);
        }
        let Some(x) = libs.last() else {
            return Err(XnnError::Invalid("no library".into()));
        };
        let fns = Fns {
            initialize: sym!(x, dir, "xnn_initialize"),
            create_subgraph: sym!(x, dir, "xnn_create_subgraph"),
            delete_subgraph: sym!(x, dir, "xnn_delete_subgraph"),
            define_tensor_value: sym!(x, dir, "xnn_define_tensor_value"),
            define_fully_connected: sym!(x, dir, "xnn_define_fully_connected"),
            define_convolution_2d: sym!(x, dir, "xnn_define_convolution_2d"),
            define_static_reshape: sym!(x, dir, "xnn_define_static_reshape"),
            create_runtime_v4: sym!(x, dir, "xnn_create_runtime_v4"),
            reshape_runtime: sym!(x, dir, "xnn_reshape_runtime"),
            setup_runtime_v2: sym!(x, dir, "xnn_setup_runtime_v2"),
            invoke_runtime: sym!(x, dir, "xnn_invoke_runtime"),
            delete_runtime: sym!(x, dir, "xnn_delete_runtime"),
        };
        // SAFETY: a null allocator selects XNNPACK's default allocator.
        check("xnn_initialize", unsafe {
            (fns.initialize)(std::ptr::null())
        })?;
        Ok(Arc::new(Xnnpack {
            fns,
            _libs: libs,
            dir: dir.to_path_buf(),
        }))
    }
}

/// A subgraph under construction. Static tensors are kept alive by the
/// subgraph and then by the runtime created from it.
pub struct Subgraph {
    x: Arc<Xnnpack>,
    raw: *mut c_void,
    statics: Vec<Arc<[f32]>>,
}

impl Subgraph {
    /// A subgraph with `external_ids` reserved external value ids.
    pub fn new(x: &Arc<Xnnpack>, external_ids: u32) -> Result<Subgraph, XnnError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: out-pointer to a local; XNNPACK writes the handle.
        check("xnn_create_subgraph", unsafe {
            (x.fns.create_subgraph)(external_ids, 0, &mut raw)
        })?;
        Ok(Subgraph {
            x: x.clone(),
            raw,
            statics: Vec::new(),
        })
    }

    /// Defines an fp32 tensor; `data` makes it static (kept alive here).
    pub fn tensor(
        &mut self,
        dims: &[usize],
        data: Option<Arc<[f32]>>,
        external_id: u32,
        flags: u32,
    ) -> Result<u32, XnnError> {
        if let Some(d) = &data {
            let n: usize = dims.iter().product();
            if d.len() != n {
                return Err(XnnError::Invalid(format!(
                    "static tensor of {} values for shape {dims:?}",
                    d.len()
                )));
            }
        }
        let ptr = data
            .as_ref()
            .map(|d| d.as_ptr() as *const c_void)
            .unwrap_or(std::ptr::null());
        let mut id = 0u32;
        // SAFETY: dims outlives the call (XNNPACK copies it); the static data
        // is kept alive by `self.statics` and then by the runtime.
        check("xnn_define_tensor_value", unsafe {
            (self.x.fns.define_tensor_value)(
                self.raw,
                DATATYPE_FP32,
                dims.len(),
                dims.as_ptr(),
                ptr,
                external_id,
                flags,
                &mut id,
            )
        })?;
        if let Some(d) = data {
            self.statics.push(d);
        }
        Ok(id)
    }

    /// Adds a fully connected node (`filter` is `[out, in]`).
    pub fn fully_connected(
        &mut self,
        min: f32,
        max: f32,
        input: u32,
        filter: u32,
        bias: u32,
        output: u32,
    ) -> Result<(), XnnError> {
        // SAFETY: plain values and a live subgraph handle.
        check("xnn_define_fully_connected", unsafe {
            (self.x.fns.define_fully_connected)(self.raw, min, max, input, filter, bias, output, 0)
        })
    }

    /// Adds a 2-D convolution (NHWC, filter `[cout, kh, kw, cin]`), stride 1,
    /// "same" zero padding of `kh/2, kw/2`, one group.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_same(
        &mut self,
        kh: u32,
        kw: u32,
        cin: usize,
        cout: usize,
        input: u32,
        filter: u32,
        bias: u32,
        output: u32,
    ) -> Result<(), XnnError> {
        let (ph, pw) = (kh / 2, kw / 2);
        // SAFETY: plain values and a live subgraph handle.
        check("xnn_define_convolution_2d", unsafe {
            (self.x.fns.define_convolution_2d)(
                self.raw,
                ph,
                pw,
                ph,
                pw,
                kh,
                kw,
                1,
                1,
                1,
                1,
                1,
                cin,
                cout,
                f32::NEG_INFINITY,
                f32::INFINITY,
                input,
                filter,
                bias,
                output,
                0,
            )
        })
    }

    /// Adds a static reshape.
    pub fn reshape(&mut self, shape: &[usize], input: u32, output: u32) -> Result<(), XnnError> {
        // SAFETY: shape outlives the call; XNNPACK copies it.
        check("xnn_define_static_reshape", unsafe {
            (self.x.fns.define_static_reshape)(
                self.raw,
                shape.len(),
                shape.as_ptr(),
                input,
                output,
                0,
            )
        })
    }
}

impl Drop for Subgraph {
    fn drop(&mut self) {
        // SAFETY: the handle came from xnn_create_subgraph and is deleted once.
        unsafe {
            (self.x.fns.delete_subgraph)(self.raw);
        }
    }
}

/// A runtime created from a subgraph.
pub struct Runtime {
    x: Arc<Xnnpack>,
    raw: *mut c_void,
    _statics: Vec<Arc<[f32]>>,
}

impl Runtime {
    /// Creates a runtime on the calling thread (no thread pool). With a cache,
    /// the cache must outlive the runtime; it is finalized after creation.
    pub fn create(sg: &Subgraph, cache: Option<&WeightsCache>) -> Result<Runtime, XnnError> {
        let wc = cache
            .map(super::provider::WeightsCache::as_xnn_weights_cache)
            .unwrap_or(std::ptr::null_mut());
        let mut raw = std::ptr::null_mut();
        // SAFETY: live subgraph; `wc` is null or a provider that lives as long
        // as the cache, which the caller keeps alive past the runtime.
        let st = unsafe {
            (sg.x.fns.create_runtime_v4)(
                sg.raw,
                wc,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                &mut raw,
            )
        };
        if let Some(c) = cache {
            c.finalize();
        }
        check("xnn_create_runtime_v4", st)?;
        Ok(Runtime {
            x: sg.x.clone(),
            raw,
            _statics: sg.statics.clone(),
        })
    }

    /// Runs once with the given external inputs and outputs. Inputs must have
    /// [`EXTRA_BYTES`] of readable slack past the tensor (use [`padded`]).
    pub fn run(
        &mut self,
        inputs: &[(u32, &[f32])],
        outputs: &mut [(u32, &mut [f32])],
    ) -> Result<(), XnnError> {
        let mut ext: Vec<ExternalValue> = Vec::new();
        for (id, d) in inputs {
            ext.push(ExternalValue {
                id: *id,
                data: d.as_ptr() as *mut c_void,
            });
        }
        for (id, d) in outputs.iter_mut() {
            ext.push(ExternalValue {
                id: *id,
                data: d.as_mut_ptr() as *mut c_void,
            });
        }
        // SAFETY: live runtime handle; the external buffers outlive invoke
        // (they are borrowed for this whole call).
        unsafe {
            check(
                "xnn_reshape_runtime",
                (self.x.fns.reshape_runtime)(self.raw),
            )?;
            check(
                "xnn_setup_runtime_v2",
                (self.x.fns.setup_runtime_v2)(self.raw, ext.len(), ext.as_ptr()),
            )?;
            check("xnn_invoke_runtime", (self.x.fns.invoke_runtime)(self.raw))
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: the handle came from xnn_create_runtime_v4, deleted once.
        unsafe {
            (self.x.fns.delete_runtime)(self.raw);
        }
    }
}

/// A buffer of `n` values with [`EXTRA_BYTES`] of zeroed slack.
pub fn padded(values: &[f32]) -> Vec<f32> {
    let mut v = values.to_vec();
    v.resize(v.len() + EXTRA_BYTES / 4, 0.0);
    v
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` deterministic values uniform in `[-scale, scale)` from `seed`.
pub fn seeded_values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let u = (splitmix(&mut s) >> 40) as f32 / (1u64 << 24) as f32;
            (u * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The demo network of the example and the tests: a 3x3 convolution over an
/// `8x8x16` input, a reshape to `[1, 1024]`, then `layers` fully connected
/// layers (`1024 -> width`, then `width -> width`), ReLU between them.
pub struct DemoModel {
    /// FC layers.
    pub layers: usize,
    /// FC width.
    pub width: usize,
    /// Weight seed.
    pub seed: u64,
    /// Model name: registered tensor names are `tag/tensor`, so a new version
    /// of the same model supersedes the old entries while another model's
    /// entries are kept alongside.
    pub tag: String,
    /// Static buffers with names, in definition order: conv filter, conv
    /// bias, then filter and bias of every FC layer.
    pub weights: Vec<(String, Arc<[f32]>)>,
    /// Dimensions of each buffer in `weights`.
    pub dims: Vec<Vec<usize>>,
}

/// Conv input shape (NHWC).
pub const DEMO_INPUT: [usize; 4] = [1, 8, 8, 16];
const CONV_OUT: usize = 16;

impl DemoModel {
    /// Builds the weights from `seed`.
    pub fn new(layers: usize, width: usize, seed: u64) -> DemoModel {
        let mut weights = Vec::new();
        let cin = DEMO_INPUT[3];
        let mix = |l: u64, k: u64| seed.wrapping_mul(0x1000_0000_01B3) ^ (l << 8) ^ k;
        let fan = (9 * cin) as f32;
        weights.push((
            "conv.weight".to_string(),
            Arc::from(seeded_values(
                mix(0, 1),
                CONV_OUT * 9 * cin,
                1.0 / fan.sqrt(),
            )),
        ));
        weights.push((
            "conv.bias".to_string(),
            Arc::from(seeded_values(mix(0, 2), CONV_OUT, 0.1)),
        ));
        let mut fan_in = 8 * 8 * CONV_OUT;
        for l in 0..layers {
            let w = seeded_values(
                mix(l as u64 + 1, 1),
                width * fan_in,
                1.7 / (fan_in as f32).sqrt(),
            );
            weights.push((format!("fc{l}.weight"), Arc::from(w)));
            weights.push((
                format!("fc{l}.bias"),
                Arc::from(seeded_values(mix(l as u64 + 1, 2), width, 0.1)),
            ));
            fan_in = width;
        }
        let mut dims = vec![vec![CONV_OUT, 3, 3, cin], vec![CONV_OUT]];
        let mut fan_in = 8 * 8 * CONV_OUT;
        for _ in 0..layers {
            dims.push(vec![width, fan_in]);
            dims.push(vec![width]);
            fan_in = width;
        }
        DemoModel {
            layers,
            width,
            seed,
            tag: "demo".to_string(),
            weights,
            dims,
        }
    }

    /// Registers every static buffer with `cache`.
    pub fn register(&self, cache: &WeightsCache) {
        for ((name, w), dims) in self.weights.iter().zip(&self.dims) {
            let full = format!("{}/{name}", self.tag);
            let desc = crate::desc::plain_tensor(DATATYPE_FP32, dims);
            cache.register(f32_bytes(w), desc, Some(&full), None);
        }
    }

    /// Builds the subgraph. External ids: 0 input, 1 output.
    pub fn subgraph(&self, x: &Arc<Xnnpack>) -> Result<Subgraph, XnnError> {
        let mut sg = Subgraph::new(x, 2)?;
        let cin = DEMO_INPUT[3];
        let input = sg.tensor(&DEMO_INPUT, None, 0, FLAG_EXTERNAL_INPUT)?;
        let w = |i: usize| -> Result<Arc<[f32]>, XnnError> {
            self.weights
                .get(i)
                .map(|(_, w)| w.clone())
                .ok_or_else(|| XnnError::Invalid(format!("missing weight {i}")))
        };
        let cf = sg.tensor(&[CONV_OUT, 3, 3, cin], Some(w(0)?), INVALID_ID, 0)?;
        let cb = sg.tensor(&[CONV_OUT], Some(w(1)?), INVALID_ID, 0)?;
        let conv_out = sg.tensor(&[1, 8, 8, CONV_OUT], None, INVALID_ID, 0)?;
        sg.conv2d_same(3, 3, cin, CONV_OUT, input, cf, cb, conv_out)?;
        let flat = 8 * 8 * CONV_OUT;
        let mut cur = sg.tensor(&[1, flat], None, INVALID_ID, 0)?;
        sg.reshape(&[1, flat], conv_out, cur)?;
        let mut fan_in = flat;
        for l in 0..self.layers {
            let last = l + 1 == self.layers;
            let f = sg.tensor(&[self.width, fan_in], Some(w(2 + 2 * l)?), INVALID_ID, 0)?;
            let b = sg.tensor(&[self.width], Some(w(3 + 2 * l)?), INVALID_ID, 0)?;
            let (ext, flags) = if last {
                (1, FLAG_EXTERNAL_OUTPUT)
            } else {
                (INVALID_ID, 0)
            };
            let out = sg.tensor(&[1, self.width], None, ext, flags)?;
            let min = if last { f32::NEG_INFINITY } else { 0.0 };
            sg.fully_connected(min, f32::INFINITY, cur, f, b, out)?;
            cur = out;
            fan_in = self.width;
        }
        Ok(sg)
    }

    /// The fixed input.
    pub fn input(&self) -> Vec<f32> {
        padded(&seeded_values(0xC0FFEE, DEMO_INPUT.iter().product(), 1.0))
    }
}

/// Views f32 values as bytes.
pub fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns as u8; the length is
    // exact and the lifetime is tied to `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Result of [`run_demo`].
pub struct DemoRun {
    /// Milliseconds spent registering the weights with the cache (content
    /// hashing) and in `xnn_create_runtime_v4`.
    pub create_ms: f64,
    /// Output values.
    pub output: Vec<f32>,
    /// The runtime (kept so callers can measure memory while it lives).
    pub runtime: Runtime,
}

/// Builds the demo subgraph, creates a runtime (with `cache` if given; the
/// model's buffers are registered first) and runs it once.
pub fn run_demo(
    x: &Arc<Xnnpack>,
    model: &DemoModel,
    cache: Option<&WeightsCache>,
) -> Result<DemoRun, XnnError> {
    let sg = model.subgraph(x)?;
    let t = Instant::now();
    if let Some(c) = cache {
        model.register(c);
    }
    let mut rt = Runtime::create(&sg, cache)?;
    let create_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(sg);
    let input = model.input();
    let mut output = vec![0f32; model.width + EXTRA_BYTES / 4];
    rt.run(&[(0, &input)], &mut [(1, &mut output)])?;
    output.truncate(model.width);
    Ok(DemoRun {
        create_ms,
        output,
        runtime: rt,
    })
}

/// SHA-256 of the output values' bytes, lowercase hex.
pub fn output_sha256(v: &[f32]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(f32_bytes(v));
    d.iter().map(|b| format!("{b:02x}")).collect()
}
