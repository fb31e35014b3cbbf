//! The interposed XNNPACK entry points. Each calls the real function first
//! (found by [`crate::real`]); on success it records what the cache needs.
//! `xnn_create_runtime_v4` gives the runtime a cache when ExecuTorch passes
//! none and the cache is turned on; `xnn_delete_runtime` and
//! `xnn_delete_subgraph` drop what belonged to them.
//!
//! Signatures follow include/xnnpack.h of the XNNPACK in ExecuTorch 1.5.1.

#![allow(
    unsafe_code,
    reason = "interposes XNNPACK C entry points and forwards raw pointers to the real functions"
)]

use std::ffi::{c_void, CStr};

use ptekit_cache::desc::DescBuilder;

use crate::graph::{data_bytes, Desc, ScalarKind, Scalars, ValueDesc};
use crate::session;

/// `xnn_status_invalid_state`, returned when the real function is missing.
const INVALID_STATE: u32 = 3;

type Subgraph = *mut c_void;

/// The NUL-terminated name of the interposed function `$name` (a constant:
/// nothing is checked at run time).
macro_rules! sym_name {
    ($name:ident) => {{
        const NAME: Option<&CStr> =
            match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                Ok(s) => Some(s),
                Err(_) => None,
            };
        NAME
    }};
}

/// One [`Slot`] per interposed XNNPACK function (module `slot`), and
/// [`prefetch_real`], which resolves them all at once.
macro_rules! slots {
    ($($name:ident),* $(,)?) => {
        /// Where each interposed function's real definition is kept.
        #[allow(non_upper_case_globals)]
        mod slot {
            use crate::real::Slot;
            $(pub static $name: Slot = Slot::new();)*
        }

        /// Resolves the real definition of every interposed function through
        /// the object calling us now (see [`crate::real::Slot::prefetch`]), so that the
        /// first model load does not pay for it: called from the backend's
        /// `xnn_initialize`, when it is loaded.
        fn prefetch_real() {
            let _t = session::Span::resolve();
            $(
                if let Some(sym) = sym_name!($name) {
                    slot::$name.prefetch(sym, $name as *const () as usize);
                }
            )*
        }
    };
}

slots!(
    xnn_define_tensor_value,
    xnn_define_quantized_tensor_value,
    xnn_define_channelwise_quantized_tensor_value,
    xnn_define_channelwise_quantized_tensor_value_v2,
    xnn_define_channelwise_quantized_tensor_value_v3,
    xnn_define_blockwise_quantized_tensor_value,
    xnn_define_blockwise_quantized_tensor_value_v2,
    xnn_define_dynamically_quantized_tensor_value,
    xnn_define_fully_connected,
    xnn_define_convolution_2d,
    xnn_define_depthwise_convolution_2d,
    xnn_define_deconvolution_2d,
    xnn_define_batch_matrix_multiply,
    xnn_initialize,
    xnn_create_subgraph,
    xnn_delete_subgraph,
    xnn_create_runtime_v4,
    xnn_delete_runtime,
);

/// Calls the real function `$name` of type `$ty` with `$args`.
macro_rules! call_real {
    ($name:ident, $ty:ty, ($($arg:expr),* $(,)?)) => {{
        let Some(sym) = sym_name!($name) else {
            return INVALID_STATE;
        };
        let addr = {
            let _t = session::Span::resolve();
            slot::$name.get(sym, $name as *const () as usize)
        };
        if addr == 0 {
            return INVALID_STATE;
        }
        // SAFETY: addr is the address of the real XNNPACK function named
        // like this interposer, whose C signature is `$ty` (include/xnnpack.h);
        // the arguments are passed through unchanged.
        let f: $ty = unsafe { std::mem::transmute::<usize, $ty>(addr) };
        let _t = session::Span::real();
        // SAFETY: same contract as our caller's call of this function.
        unsafe { f($($arg),*) }
    }};
}

/// `dims[..num_dims]`, or `None` when the pointer is null with dims > 0 or
/// the rank exceeds XNNPACK's maximum.
///
/// # Safety
/// `dims` points to `num_dims` readable values (XNNPACK accepted them).
unsafe fn dims_of<'a>(num_dims: usize, dims: *const usize) -> Option<&'a [usize]> {
    if num_dims == 0 {
        return Some(&[]);
    }
    if dims.is_null() || num_dims > 6 {
        return None;
    }
    // SAFETY: caller contract.
    Some(unsafe { std::slice::from_raw_parts(dims, num_dims) })
}

/// Reads `n` items at `p` as bytes (for descriptors), `None` if `p` is null.
///
/// # Safety
/// `p` points to `n` readable items of `T` (XNNPACK accepted them).
unsafe fn items<'a, T>(p: *const T, n: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    let len = n.checked_mul(std::mem::size_of::<T>())?;
    // SAFETY: caller contract.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

fn record(
    sg: Subgraph,
    id_out: *const u32,
    desc: Option<Desc>,
    data: *const c_void,
    datatype: u32,
    dims: Option<&[usize]>,
) {
    if id_out.is_null() {
        return;
    }
    // SAFETY: XNNPACK wrote the id on success.
    let id = unsafe { *id_out };
    let Some(desc) = desc else {
        // A value we cannot describe poisons nothing but itself: record it
        // without data so it is never keyed.
        session::with_graph(sg, |g| g.value(id, Desc::Ready([0xff; 32]), 0, None));
        return;
    };
    let bytes = dims.and_then(|d| data_bytes(datatype, d));
    session::with_graph(sg, |g| g.value(id, desc, data as usize, bytes));
}

/// Interposed `xnn_define_tensor_value`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_tensor_value(
    subgraph: Subgraph,
    datatype: u32,
    num_dims: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_tensor_value,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            *mut u32,
        ) -> u32,
        (
            subgraph,
            datatype,
            num_dims,
            dims,
            data,
            external_id,
            flags,
            id_out
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted dims.
        let d = unsafe { dims_of(num_dims, dims) };
        let desc = d
            .and_then(|d| Scalars::new(datatype, d, flags, ScalarKind::Plain))
            .map(Desc::Scalars);
        record(subgraph, id_out, desc, data, datatype, d);
    }
    st
}

/// Interposed `xnn_define_quantized_tensor_value`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_quantized_tensor_value(
    subgraph: Subgraph,
    datatype: u32,
    zero_point: i32,
    scale: f32,
    num_dims: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_quantized_tensor_value,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            i32,
            f32,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            *mut u32,
        ) -> u32,
        (
            subgraph,
            datatype,
            zero_point,
            scale,
            num_dims,
            dims,
            data,
            external_id,
            flags,
            id_out
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted dims.
        let d = unsafe { dims_of(num_dims, dims) };
        let kind = ScalarKind::PerTensor { zero_point, scale };
        let desc = d
            .and_then(|d| Scalars::new(datatype, d, flags, kind))
            .map(Desc::Scalars);
        record(subgraph, id_out, desc, data, datatype, d);
    }
    st
}

/// Shared body of the channelwise definers.
#[allow(clippy::too_many_arguments)]
unsafe fn channelwise_desc(
    datatype: u32,
    zero_point: i32,
    scale: *const f32,
    num_dims: usize,
    channel_dim: usize,
    dims: *const usize,
    flags: u32,
    channel_zero_points: *const f32,
) -> (Option<[u8; 32]>, Option<&'static [usize]>) {
    // SAFETY: XNNPACK accepted dims.
    let Some(d) = (unsafe { dims_of(num_dims, dims) }) else {
        return (None, None);
    };
    let Some(&channels) = d.get(channel_dim) else {
        return (None, Some(d));
    };
    let mut b = ValueDesc {
        datatype,
        dims: d,
        flags,
    }
    .builder("per-channel");
    b.i64(i64::from(zero_point)).u64(channel_dim as u64);
    // SAFETY: XNNPACK reads `channels` scales (and zero points) from these.
    match unsafe { items(scale, channels) } {
        Some(s) => b.bytes(s),
        None => return (None, Some(d)),
    };
    // SAFETY: as above.
    if let Some(z) = unsafe { items(channel_zero_points, channels) } {
        b.bytes(b"zero points").bytes(z);
    }
    (Some(b.finish()), Some(d))
}

/// Interposed `xnn_define_channelwise_quantized_tensor_value`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_channelwise_quantized_tensor_value(
    subgraph: Subgraph,
    datatype: u32,
    scale: *const f32,
    num_dims: usize,
    channel_dim: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_channelwise_quantized_tensor_value,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            *const f32,
            usize,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            *mut u32,
        ) -> u32,
        (
            subgraph,
            datatype,
            scale,
            num_dims,
            channel_dim,
            dims,
            data,
            external_id,
            flags,
            id_out
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted these arguments.
        let (desc, d) = unsafe {
            channelwise_desc(
                datatype,
                0,
                scale,
                num_dims,
                channel_dim,
                dims,
                flags,
                std::ptr::null(),
            )
        };
        record(subgraph, id_out, desc.map(Desc::Ready), data, datatype, d);
    }
    st
}

/// Interposed `xnn_define_channelwise_quantized_tensor_value_v2`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_channelwise_quantized_tensor_value_v2(
    subgraph: Subgraph,
    datatype: u32,
    zero_point: i32,
    scale: *const f32,
    num_dims: usize,
    channel_dim: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_channelwise_quantized_tensor_value_v2,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            i32,
            *const f32,
            usize,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            *mut u32,
        ) -> u32,
        (
            subgraph,
            datatype,
            zero_point,
            scale,
            num_dims,
            channel_dim,
            dims,
            data,
            external_id,
            flags,
            id_out
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted these arguments.
        let (desc, d) = unsafe {
            channelwise_desc(
                datatype,
                zero_point,
                scale,
                num_dims,
                channel_dim,
                dims,
                flags,
                std::ptr::null(),
            )
        };
        record(subgraph, id_out, desc.map(Desc::Ready), data, datatype, d);
    }
    st
}

/// Interposed `xnn_define_channelwise_quantized_tensor_value_v3`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_channelwise_quantized_tensor_value_v3(
    subgraph: Subgraph,
    datatype: u32,
    zero_point: i32,
    scale: *const f32,
    num_dims: usize,
    channel_dim: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
    channelwise_zero_point: *const f32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_channelwise_quantized_tensor_value_v3,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            i32,
            *const f32,
            usize,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            *mut u32,
            *const f32,
        ) -> u32,
        (
            subgraph,
            datatype,
            zero_point,
            scale,
            num_dims,
            channel_dim,
            dims,
            data,
            external_id,
            flags,
            id_out,
            channelwise_zero_point
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted these arguments.
        let (desc, d) = unsafe {
            channelwise_desc(
                datatype,
                zero_point,
                scale,
                num_dims,
                channel_dim,
                dims,
                flags,
                channelwise_zero_point,
            )
        };
        record(subgraph, id_out, desc.map(Desc::Ready), data, datatype, d);
    }
    st
}

/// Shared body of the blockwise definers: `scale_bytes` bytes per scale.
#[allow(clippy::too_many_arguments)]
unsafe fn blockwise_desc(
    datatype: u32,
    zero_point: i32,
    scale: *const c_void,
    scale_bytes: usize,
    scale_type: u32,
    num_dims: usize,
    channel_dim: usize,
    block_size: usize,
    dims: *const usize,
    flags: u32,
) -> (Option<[u8; 32]>, Option<&'static [usize]>) {
    // SAFETY: XNNPACK accepted dims.
    let Some(d) = (unsafe { dims_of(num_dims, dims) }) else {
        return (None, None);
    };
    let elems = d.iter().try_fold(1usize, |a, x| a.checked_mul(*x));
    let Some(count) = elems.and_then(|e| e.checked_div(block_size)) else {
        return (None, Some(d));
    };
    let mut b = ValueDesc {
        datatype,
        dims: d,
        flags,
    }
    .builder("blockwise");
    b.i64(i64::from(zero_point))
        .u64(channel_dim as u64)
        .u64(block_size as u64)
        .u64(u64::from(scale_type));
    // SAFETY: XNNPACK reads one scale per block: elements / block_size.
    match unsafe { items(scale.cast::<u8>(), count.saturating_mul(scale_bytes)) } {
        Some(s) => b.bytes(s),
        None => return (None, Some(d)),
    };
    (Some(b.finish()), Some(d))
}

/// Interposed `xnn_define_blockwise_quantized_tensor_value` (bf16 scales).
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_blockwise_quantized_tensor_value(
    subgraph: Subgraph,
    datatype: u32,
    zero_point: i32,
    scale: *const u16,
    num_dims: usize,
    channel_dim: usize,
    block_size: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_blockwise_quantized_tensor_value,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            i32,
            *const u16,
            usize,
            usize,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            *mut u32,
        ) -> u32,
        (
            subgraph,
            datatype,
            zero_point,
            scale,
            num_dims,
            channel_dim,
            block_size,
            dims,
            data,
            external_id,
            flags,
            id_out
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted these arguments.
        let (desc, d) = unsafe {
            blockwise_desc(
                datatype,
                zero_point,
                scale.cast(),
                2,
                14,
                num_dims,
                channel_dim,
                block_size,
                dims,
                flags,
            )
        };
        record(subgraph, id_out, desc.map(Desc::Ready), data, datatype, d);
    }
    st
}

/// Interposed `xnn_define_blockwise_quantized_tensor_value_v2`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_blockwise_quantized_tensor_value_v2(
    subgraph: Subgraph,
    datatype: u32,
    zero_point: i32,
    scale: *const c_void,
    num_dims: usize,
    channel_dim: usize,
    block_size: usize,
    dims: *const usize,
    data: *const c_void,
    external_id: u32,
    flags: u32,
    scale_type: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_blockwise_quantized_tensor_value_v2,
        unsafe extern "C" fn(
            Subgraph,
            u32,
            i32,
            *const c_void,
            usize,
            usize,
            usize,
            *const usize,
            *const c_void,
            u32,
            u32,
            u32,
            *mut u32,
        ) -> u32,
        (
            subgraph,
            datatype,
            zero_point,
            scale,
            num_dims,
            channel_dim,
            block_size,
            dims,
            data,
            external_id,
            flags,
            scale_type,
            id_out
        )
    );
    if st == 0 {
        // bf16 and fp16 scales are 2 bytes; anything else is not keyed.
        let sb = if scale_type == 14 || scale_type == 2 {
            2
        } else {
            0
        };
        let (desc, d) = if sb == 0 {
            (None, None)
        } else {
            // SAFETY: XNNPACK accepted these arguments.
            unsafe {
                blockwise_desc(
                    datatype,
                    zero_point,
                    scale,
                    sb,
                    scale_type,
                    num_dims,
                    channel_dim,
                    block_size,
                    dims,
                    flags,
                )
            }
        };
        record(subgraph, id_out, desc.map(Desc::Ready), data, datatype, d);
    }
    st
}

/// Interposed `xnn_define_dynamically_quantized_tensor_value`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_dynamically_quantized_tensor_value(
    subgraph: Subgraph,
    datatype: u32,
    num_dims: usize,
    num_nonbatch_dims: usize,
    dims: *const usize,
    external_id: u32,
    flags: u32,
    id_out: *mut u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_dynamically_quantized_tensor_value,
        unsafe extern "C" fn(Subgraph, u32, usize, usize, *const usize, u32, u32, *mut u32) -> u32,
        (
            subgraph,
            datatype,
            num_dims,
            num_nonbatch_dims,
            dims,
            external_id,
            flags,
            id_out
        )
    );
    if st == 0 {
        // SAFETY: XNNPACK accepted dims.
        let d = unsafe { dims_of(num_dims, dims) };
        let kind = ScalarKind::Dynamic { num_nonbatch_dims };
        let desc = d
            .and_then(|d| Scalars::new(datatype, d, flags, kind))
            .map(Desc::Scalars);
        record(subgraph, id_out, desc, std::ptr::null(), datatype, d);
    }
    st
}

/// Interposed `xnn_define_fully_connected`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_fully_connected(
    subgraph: Subgraph,
    output_min: f32,
    output_max: f32,
    input_id: u32,
    filter_id: u32,
    bias_id: u32,
    output_id: u32,
    flags: u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_fully_connected,
        unsafe extern "C" fn(Subgraph, f32, f32, u32, u32, u32, u32, u32) -> u32,
        (subgraph, output_min, output_max, input_id, filter_id, bias_id, output_id, flags)
    );
    if st == 0 {
        let mut p = DescBuilder::new("fully_connected");
        p.f32(output_min).f32(output_max).u64(u64::from(flags));
        session::with_graph(subgraph, |g| {
            g.node(p, input_id, filter_id, bias_id, output_id);
        });
    }
    st
}

/// Interposed `xnn_define_convolution_2d`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_convolution_2d(
    subgraph: Subgraph,
    pad_top: u32,
    pad_right: u32,
    pad_bottom: u32,
    pad_left: u32,
    kernel_height: u32,
    kernel_width: u32,
    subsampling_height: u32,
    subsampling_width: u32,
    dilation_height: u32,
    dilation_width: u32,
    groups: u32,
    group_input_channels: usize,
    group_output_channels: usize,
    output_min: f32,
    output_max: f32,
    input_id: u32,
    filter_id: u32,
    bias_id: u32,
    output_id: u32,
    flags: u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_convolution_2d,
        unsafe extern "C" fn(
            Subgraph,
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
        ) -> u32,
        (
            subgraph,
            pad_top,
            pad_right,
            pad_bottom,
            pad_left,
            kernel_height,
            kernel_width,
            subsampling_height,
            subsampling_width,
            dilation_height,
            dilation_width,
            groups,
            group_input_channels,
            group_output_channels,
            output_min,
            output_max,
            input_id,
            filter_id,
            bias_id,
            output_id,
            flags
        )
    );
    if st == 0 {
        let mut p = DescBuilder::new("convolution_2d");
        for v in [
            pad_top,
            pad_right,
            pad_bottom,
            pad_left,
            kernel_height,
            kernel_width,
            subsampling_height,
            subsampling_width,
            dilation_height,
            dilation_width,
            groups,
            flags,
        ] {
            p.u64(u64::from(v));
        }
        p.u64(group_input_channels as u64)
            .u64(group_output_channels as u64)
            .f32(output_min)
            .f32(output_max);
        session::with_graph(subgraph, |g| {
            g.node(p, input_id, filter_id, bias_id, output_id);
        });
    }
    st
}

/// Interposed `xnn_define_depthwise_convolution_2d`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_depthwise_convolution_2d(
    subgraph: Subgraph,
    pad_top: u32,
    pad_right: u32,
    pad_bottom: u32,
    pad_left: u32,
    kernel_height: u32,
    kernel_width: u32,
    subsampling_height: u32,
    subsampling_width: u32,
    dilation_height: u32,
    dilation_width: u32,
    depth_multiplier: u32,
    input_channels: usize,
    output_min: f32,
    output_max: f32,
    input_id: u32,
    filter_id: u32,
    bias_id: u32,
    output_id: u32,
    flags: u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_depthwise_convolution_2d,
        unsafe extern "C" fn(
            Subgraph,
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
            f32,
            f32,
            u32,
            u32,
            u32,
            u32,
            u32,
        ) -> u32,
        (
            subgraph,
            pad_top,
            pad_right,
            pad_bottom,
            pad_left,
            kernel_height,
            kernel_width,
            subsampling_height,
            subsampling_width,
            dilation_height,
            dilation_width,
            depth_multiplier,
            input_channels,
            output_min,
            output_max,
            input_id,
            filter_id,
            bias_id,
            output_id,
            flags
        )
    );
    if st == 0 {
        let mut p = DescBuilder::new("depthwise_convolution_2d");
        for v in [
            pad_top,
            pad_right,
            pad_bottom,
            pad_left,
            kernel_height,
            kernel_width,
            subsampling_height,
            subsampling_width,
            dilation_height,
            dilation_width,
            depth_multiplier,
            flags,
        ] {
            p.u64(u64::from(v));
        }
        p.u64(input_channels as u64).f32(output_min).f32(output_max);
        session::with_graph(subgraph, |g| {
            g.node(p, input_id, filter_id, bias_id, output_id);
        });
    }
    st
}

/// Interposed `xnn_define_deconvolution_2d`.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_deconvolution_2d(
    subgraph: Subgraph,
    padding_top: u32,
    padding_right: u32,
    padding_bottom: u32,
    padding_left: u32,
    adjustment_height: u32,
    adjustment_width: u32,
    kernel_height: u32,
    kernel_width: u32,
    upsampling_height: u32,
    upsampling_width: u32,
    dilation_height: u32,
    dilation_width: u32,
    groups: u32,
    group_input_channels: usize,
    group_output_channels: usize,
    output_min: f32,
    output_max: f32,
    input_id: u32,
    filter_id: u32,
    bias_id: u32,
    output_id: u32,
    flags: u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_deconvolution_2d,
        unsafe extern "C" fn(
            Subgraph,
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
        ) -> u32,
        (
            subgraph,
            padding_top,
            padding_right,
            padding_bottom,
            padding_left,
            adjustment_height,
            adjustment_width,
            kernel_height,
            kernel_width,
            upsampling_height,
            upsampling_width,
            dilation_height,
            dilation_width,
            groups,
            group_input_channels,
            group_output_channels,
            output_min,
            output_max,
            input_id,
            filter_id,
            bias_id,
            output_id,
            flags
        )
    );
    if st == 0 {
        let mut p = DescBuilder::new("deconvolution_2d");
        for v in [
            padding_top,
            padding_right,
            padding_bottom,
            padding_left,
            adjustment_height,
            adjustment_width,
            kernel_height,
            kernel_width,
            upsampling_height,
            upsampling_width,
            dilation_height,
            dilation_width,
            groups,
            flags,
        ] {
            p.u64(u64::from(v));
        }
        p.u64(group_input_channels as u64)
            .u64(group_output_channels as u64)
            .f32(output_min)
            .f32(output_max);
        session::with_graph(subgraph, |g| {
            g.node(p, input_id, filter_id, bias_id, output_id);
        });
    }
    st
}

/// Interposed `xnn_define_batch_matrix_multiply` (a static second input is
/// packed like a filter).
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_define_batch_matrix_multiply(
    subgraph: Subgraph,
    input1_id: u32,
    input2_id: u32,
    output_id: u32,
    flags: u32,
) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_define_batch_matrix_multiply,
        unsafe extern "C" fn(Subgraph, u32, u32, u32, u32) -> u32,
        (subgraph, input1_id, input2_id, output_id, flags)
    );
    if st == 0 {
        let mut p = DescBuilder::new("batch_matrix_multiply");
        p.u64(u64::from(flags));
        session::with_graph(subgraph, |g| {
            g.node(p, input1_id, input2_id, u32::MAX, output_id);
        });
    }
    st
}

/// Interposed `xnn_initialize` (ExecuTorch's XNNPACK backend calls it when
/// it is loaded): on the Python path, starts redirecting the `mlock` imports
/// loaded so far to the deferring hook, on a thread of its own
/// ([`crate::got::route_mlock_early`]). The
/// first call also resolves the other real XNNPACK functions and, with the
/// cache on, starts opening the cache file ([`session::warm_up`]): work
/// every process with the cache does once, done before its first model load
/// instead of inside it.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_initialize(allocator: *const c_void) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_initialize,
        unsafe extern "C" fn(*const c_void) -> u32,
        (allocator)
    );
    crate::got::route_mlock_early(session::cache_on());
    // Once per process: the rest of the real functions, and (cache on) the
    // cache file's opening, before any model is loaded.
    static EARLY: std::sync::Once = std::sync::Once::new();
    EARLY.call_once(|| {
        prefetch_real();
        session::warm_up();
    });
    st
}

/// Interposed `xnn_create_subgraph`: opens the subgraph's deferred-`mlock`
/// window on this thread ([`crate::mlock::begin`]); ExecuTorch's XNNPACK
/// backend creates the subgraph before it fetches the constant data. On the
/// Python path, objects loaded since the last XNNPACK call get their `mlock`
/// imports redirected first ([`crate::got::route_mlock_to_hook`]).
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_create_subgraph(
    external_value_ids: u32,
    flags: u32,
    subgraph_out: *mut Subgraph,
) -> u32 {
    let _hook = session::Span::hook();
    let cache_on = session::cache_on();
    crate::got::route_mlock_to_hook(cache_on);
    let st = call_real!(
        xnn_create_subgraph,
        unsafe extern "C" fn(u32, u32, *mut Subgraph) -> u32,
        (external_value_ids, flags, subgraph_out)
    );
    if st == 0 && !subgraph_out.is_null() {
        // SAFETY: XNNPACK wrote the subgraph handle on success.
        let sg = unsafe { *subgraph_out };
        crate::mlock::begin(sg, cache_on);
    }
    st
}

/// Interposed `xnn_delete_subgraph`: forgets what was recorded for it, and
/// locks the `mlock` calls deferred for it when it got no runtime.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_delete_subgraph(subgraph: Subgraph) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_delete_subgraph,
        unsafe extern "C" fn(Subgraph) -> u32,
        (subgraph)
    );
    crate::mlock::settle(subgraph, None);
    session::forget_graph(subgraph);
    st
}

/// Interposed `xnn_create_runtime_v4`: without a cache from the caller and
/// with the cache turned on, the runtime gets its own [`ptekit_cache::WeightsCache`]
/// over the shared cache file, finalized right after creation.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_create_runtime_v4(
    subgraph: Subgraph,
    weights_cache: *mut c_void,
    workspace: *mut c_void,
    threadpool: *mut c_void,
    flags: u32,
    runtime_out: *mut *mut c_void,
) -> u32 {
    let _hook = session::Span::hook();
    type F = unsafe extern "C" fn(
        Subgraph,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        u32,
        *mut *mut c_void,
    ) -> u32;
    let session = if weights_cache.is_null() {
        session::prepare(subgraph, flags, xnn_create_runtime_v4 as *const () as usize)
    } else {
        session::note_own_cache();
        None
    };
    let cache = session
        .as_ref()
        .map(ptekit_cache::WeightsCache::as_xnn_weights_cache)
        .unwrap_or(weights_cache);
    let st = call_real!(
        xnn_create_runtime_v4,
        F,
        (subgraph, cache, workspace, threadpool, flags, runtime_out)
    );
    let served = session
        .as_ref()
        .map(ptekit_cache::WeightsCache::take_served)
        .unwrap_or_default();
    crate::mlock::settle(subgraph, Some(served));
    if let Some(s) = session {
        let rt = if st == 0 && !runtime_out.is_null() {
            // SAFETY: XNNPACK wrote the runtime handle on success.
            unsafe { *runtime_out }
        } else {
            std::ptr::null_mut()
        };
        session::attach(rt, s);
    }
    st
}

/// Interposed `xnn_delete_runtime`: the runtime's cache goes with it.
///
/// # Safety
/// The XNNPACK contract of the real function.
#[no_mangle]
pub unsafe extern "C" fn xnn_delete_runtime(runtime: *mut c_void) -> u32 {
    let _hook = session::Span::hook();
    let st = call_real!(
        xnn_delete_runtime,
        unsafe extern "C" fn(*mut c_void) -> u32,
        (runtime)
    );
    session::detach(runtime);
    st
}
