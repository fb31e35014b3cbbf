//! Owned model of the XNNPACK delegate schema (`schema.fbs`, namespace `fb_xnnpack`,
//! root `XNNGraph`), plus the runtime schema's extra fields (`XNNTensorValue.dq_datatype`,
//! the legacy `XNNGraph.constant_buffer` / `mem_buffer_sizes`) and the deprecated
//! `PerChannelGroupQuant.scale_bf16`.
//!
//! Names follow the schema (and the reference's Python dataclasses) so that errors, JSON
//! and the Python bindings can use them verbatim. Absent vectors, strings and sub-tables
//! are `None`, empty ones `Some(empty)`: flatc writes an empty vector but skips a `null`
//! one, so the difference is kept. Float fields hold the `f32` stored in the buffer; use
//! [`flatc_f32`](super::flatc_f32) to turn a Python `float` into it the way flatc does.
//!
//! The node tables all consist of `uint`, `float` and `[uint]` fields; they are declared
//! once with [`node_tables!`] and visited generically through [`FieldSource`] (decoding,
//! Python conversion) and [`FieldSink`] (packing, validation, JSON, Python conversion).
#![allow(non_camel_case_types)]

/// `enum XNNDatatype : short`. Unknown values are kept as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct XNNDatatype(pub i16);

impl XNNDatatype {
    /// The schema's names of the values 0..=14, in order (without the
    /// `xnn_datatype_` prefix).
    pub const NAMES: [&'static str; 15] = [
        "invalid", "fp32", "fp16", "qint8", "quint8", "qint32", "qcint8", "qcint32", "qcint4",
        "qdint8", "qbint4", "qpint8", "int32", "pfp32", "bf16",
    ];

    /// `xnn_datatype_invalid` (also: "not dynamically quantized" in `dq_datatype`).
    pub const INVALID: Self = Self(0);
    /// `xnn_datatype_fp32`.
    pub const FP32: Self = Self(1);
    /// `xnn_datatype_fp16`.
    pub const FP16: Self = Self(2);
    /// `xnn_datatype_qint8`.
    pub const QINT8: Self = Self(3);
    /// `xnn_datatype_int32`.
    pub const INT32: Self = Self(12);
    /// `xnn_datatype_pfp32`.
    pub const PFP32: Self = Self(13);
    /// `xnn_datatype_bf16`.
    pub const BF16: Self = Self(14);

    /// The short name (`fp32`, `qcint4`, ...) or `None` for a value the schema does not
    /// declare.
    pub fn name(self) -> Option<&'static str> {
        usize::try_from(self.0)
            .ok()
            .and_then(|i| Self::NAMES.get(i).copied())
    }
}

/// The kind of a node-table field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `uint`.
    U32,
    /// `float`.
    F32,
    /// `[uint]`.
    U32s,
}

/// Supplies node-table fields by name (and vtable slot) while a table is built: the
/// verified decoder, the Python conversion.
pub trait FieldSource {
    /// The error of a failed read.
    type Error;
    /// A `uint` field.
    fn u32(&mut self, name: &'static str, slot: usize) -> Result<u32, Self::Error>;
    /// A `float` field.
    fn f32(&mut self, name: &'static str, slot: usize) -> Result<f32, Self::Error>;
    /// A `[uint]` field (`None` when absent).
    fn u32s(&mut self, name: &'static str, slot: usize) -> Result<Option<Vec<u32>>, Self::Error>;
}

/// Receives node-table fields in field (slot) order: packing, cross-reference checks,
/// JSON, the Python conversion.
pub trait FieldSink {
    /// A `uint` field.
    fn u32(&mut self, name: &'static str, slot: usize, value: u32);
    /// A `float` field.
    fn f32(&mut self, name: &'static str, slot: usize, value: f32);
    /// A `[uint]` field.
    fn u32s(&mut self, name: &'static str, slot: usize, value: Option<&[u32]>);
}

/// A field type of the node tables.
pub trait NodeField: Sized {
    /// The field kind.
    const KIND: FieldKind;
    /// Reads the field from `src`.
    fn take<S: FieldSource>(src: &mut S, name: &'static str, slot: usize)
        -> Result<Self, S::Error>;
    /// Hands the field to `sink`.
    fn put<S: FieldSink>(&self, sink: &mut S, name: &'static str, slot: usize);
}

impl NodeField for u32 {
    const KIND: FieldKind = FieldKind::U32;
    fn take<S: FieldSource>(
        src: &mut S,
        name: &'static str,
        slot: usize,
    ) -> Result<Self, S::Error> {
        src.u32(name, slot)
    }
    fn put<S: FieldSink>(&self, sink: &mut S, name: &'static str, slot: usize) {
        sink.u32(name, slot, *self);
    }
}

impl NodeField for f32 {
    const KIND: FieldKind = FieldKind::F32;
    fn take<S: FieldSource>(
        src: &mut S,
        name: &'static str,
        slot: usize,
    ) -> Result<Self, S::Error> {
        src.f32(name, slot)
    }
    fn put<S: FieldSink>(&self, sink: &mut S, name: &'static str, slot: usize) {
        sink.f32(name, slot, *self);
    }
}

impl NodeField for Option<Vec<u32>> {
    const KIND: FieldKind = FieldKind::U32s;
    fn take<S: FieldSource>(
        src: &mut S,
        name: &'static str,
        slot: usize,
    ) -> Result<Self, S::Error> {
        src.u32s(name, slot)
    }
    fn put<S: FieldSink>(&self, sink: &mut S, name: &'static str, slot: usize) {
        sink.u32s(name, slot, self.as_deref());
    }
}

/// The common interface of the node tables (the member tables of `XNodeUnion`).
pub trait NodeTable: Sized {
    /// The schema's table name (e.g. `_XNNNode2x1`).
    const TABLE: &'static str;
    /// Field names and kinds in slot order.
    const FIELDS: &'static [(&'static str, FieldKind)];
    /// Builds the table from `src`, field by field in slot order.
    fn take<S: FieldSource>(src: &mut S) -> Result<Self, S::Error>;
    /// Hands every field to `sink` in slot order.
    fn put<S: FieldSink>(&self, sink: &mut S);
}

/// More fields than any table of the schema has (node tables have at most 20).
pub(crate) const MAX_NODE_FIELDS: usize = 24;

macro_rules! node_tables {
    ($( $(#[$m:meta])* $name:ident = $table:literal { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $( #[doc = concat!("The schema field `", stringify!($field), "`.")] $(#[$fm])* pub $field: $ty, )*
        }

        impl NodeTable for $name {
            const TABLE: &'static str = $table;
            const FIELDS: &'static [(&'static str, FieldKind)] =
                &[$( (stringify!($field), <$ty as NodeField>::KIND) ),*];

            #[allow(unused_assignments)]
            fn take<S: FieldSource>(src: &mut S) -> Result<Self, S::Error> {
                let mut slot = 0usize;
                Ok($name { $( $field: {
                    let v = <$ty as NodeField>::take(src, stringify!($field), slot)?;
                    slot += 1;
                    v
                }, )* })
            }

            #[allow(unused_assignments)]
            fn put<S: FieldSink>(&self, sink: &mut S) {
                let mut slot = 0usize;
                $(
                    NodeField::put(&self.$field, sink, stringify!($field), slot);
                    slot += 1;
                )*
            }
        }
    )*};
}

node_tables! {
    /// `table _XNNNode1x1`: one input, one output.
    XNNNode1x1 = "_XNNNode1x1" { input_id: u32, output_id: u32, flags: u32 }
    /// `table _XNNNode2x1`: two inputs, one output.
    XNNNode2x1 = "_XNNNode2x1" { input1_id: u32, input2_id: u32, output_id: u32, flags: u32 }
    /// `table _XNNCat`: concatenation of 2 to 5 inputs (unused inputs are
    /// `XNN_INVALID_VALUE_ID`).
    XNNCat = "_XNNCat" {
        axis: u32, input1_id: u32, input2_id: u32, input3_id: u32, input4_id: u32,
        output_id: u32, flags: u32, input5_id: u32,
    }
    /// `table _XNNNodeConv`: 2-D convolutions.
    XNNNodeConv = "_XNNNodeConv" {
        padding_top: u32, padding_right: u32, padding_bottom: u32, padding_left: u32,
        kernel_height: u32, kernel_width: u32, subsampling_height: u32,
        subsampling_width: u32, dilation_height: u32, dilation_width: u32,
        group_input_channels: u32, group_output_channels: u32, groups: u32,
        adjustment_height: u32, adjustment_width: u32, input1_id: u32, filter_id: u32,
        bias_id: u32, output_id: u32, flags: u32,
    }
    /// `table _XNNPooling2D`: average and max pooling.
    XNNPooling2D = "_XNNPooling2D" {
        padding_top: u32, padding_right: u32, padding_bottom: u32, padding_left: u32,
        pooling_height: u32, pooling_width: u32, stride_height: u32, stride_width: u32,
        dilation_height: u32, dilation_width: u32, input_id: u32, output_id: u32, flags: u32,
    }
    /// `table XNNFullyConnected`.
    XNNFullyConnected = "XNNFullyConnected" {
        input1_id: u32, filter_id: u32, bias_id: u32, output_id: u32, flags: u32,
    }
    /// `table XNNStaticTranspose`.
    XNNStaticTranspose = "XNNStaticTranspose" {
        num_dims: u32, perm: Option<Vec<u32>>, input_id: u32, output_id: u32, flags: u32,
    }
    /// `table XNNStaticReshape`.
    XNNStaticReshape = "XNNStaticReshape" {
        num_dims: u32, new_shape: Option<Vec<u32>>, input_id: u32, output_id: u32, flags: u32,
    }
    /// `table XNNStaticSlice`.
    XNNStaticSlice = "XNNStaticSlice" {
        num_dims: u32, offsets: Option<Vec<u32>>, sizes: Option<Vec<u32>>, input_id: u32,
        output_id: u32, flags: u32,
    }
    /// `table XNNStaticResizeBilinear2D`.
    XNNStaticResizeBilinear2D = "XNNStaticResizeBilinear2D" {
        new_height: u32, new_width: u32, input_id: u32, output_id: u32, flags: u32,
    }
    /// `table XNNStaticConstantPad`.
    XNNStaticConstantPad = "XNNStaticConstantPad" {
        pre_paddings: Option<Vec<u32>>, post_paddings: Option<Vec<u32>>, padding_value: f32,
        input_id: u32, output_id: u32, flags: u32,
    }
    /// `table XNNScaledDotProductAttention`.
    XNNScaledDotProductAttention = "XNNScaledDotProductAttention" {
        query_id: u32, key_id: u32, value_id: u32, scale_id: u32, mask_id: u32,
        output_id: u32, flags: u32,
    }
    /// `table XNNArgMaxPooling2d`.
    XNNArgMaxPooling2d = "XNNArgMaxPooling2d" {
        padding_top: u32, padding_right: u32, padding_bottom: u32, padding_left: u32,
        pooling_height: u32, pooling_width: u32, input_id: u32, output_value_id: u32,
        output_index_id: u32, flags: u32,
    }
    /// `table XNNELU`.
    XNNELU = "XNNELU" { alpha: f32, input_id: u32, output_id: u32, flags: u32 }
    /// `table XNNLeakyReLU`.
    XNNLeakyReLU = "XNNLeakyReLU" { negative_slope: f32, input_id: u32, output_id: u32, flags: u32 }
}

macro_rules! xnode_union {
    ($( $code:literal $variant:ident ($table:ident), )*) => {
        /// `union XNodeUnion`: the 47 node kinds, each holding its member table. The
        /// variant names are the schema's member names (which are also the reference's
        /// Python class names); [`XNodeUnion::type_code`] is the schema's union index.
        #[derive(Debug, Clone, PartialEq)]
        pub enum XNodeUnion {
            $(
                #[doc = concat!("Union member ", stringify!($code), ".")]
                $variant($table),
            )*
        }

        impl XNodeUnion {
            /// The member names, in union order (index = type code - 1).
            pub const NAMES: &'static [&'static str] = &[$(stringify!($variant)),*];

            /// The union type code (1..=47).
            pub fn type_code(&self) -> u8 {
                match self { $( Self::$variant(_) => $code, )* }
            }

            /// The member name (e.g. `XNNFullyConnected`).
            pub fn name(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )* }
            }

            /// The member's table name (e.g. `_XNNNode2x1`).
            pub fn table_name(&self) -> &'static str {
                match self { $( Self::$variant(_) => <$table as NodeTable>::TABLE, )* }
            }

            /// The member's fields (names and kinds, slot order).
            pub fn fields(&self) -> &'static [(&'static str, FieldKind)] {
                match self { $( Self::$variant(_) => <$table as NodeTable>::FIELDS, )* }
            }

            /// Hands the member table's fields to `sink` in slot order.
            pub fn put<S: FieldSink>(&self, sink: &mut S) {
                match self { $( Self::$variant(t) => t.put(sink), )* }
            }

            /// The fields of the member named `name` (`None` for an unknown name).
            pub fn fields_of(name: &str) -> Option<&'static [(&'static str, FieldKind)]> {
                match name {
                    $( stringify!($variant) => Some(<$table as NodeTable>::FIELDS), )*
                    _ => None,
                }
            }

            /// Builds the member named `name` from `src`; `None` for an unknown name.
            pub fn take_named<S: FieldSource>(name: &str, src: &mut S) -> Option<Result<Self, S::Error>> {
                match name {
                    $( stringify!($variant) => Some(<$table as NodeTable>::take(src).map(Self::$variant)), )*
                    _ => None,
                }
            }

            /// The member name of type code `code`; `None` for 0 or an unknown code.
            pub fn name_of(code: u8) -> Option<&'static str> {
                usize::from(code).checked_sub(1).and_then(|i| Self::NAMES.get(i).copied())
            }
        }
    };
}

xnode_union! {
    1 XNNAdd(XNNNode2x1),
    2 XNNFullyConnected(XNNFullyConnected),
    3 XNNSoftmax(XNNNode1x1),
    4 XNNSigmoid(XNNNode1x1),
    5 XNNStaticTranspose(XNNStaticTranspose),
    6 XNNClamp(XNNNode1x1),
    7 XNNConv2d(XNNNodeConv),
    8 XNNDiv(XNNNode2x1),
    9 XNNStaticResizeBilinear2D(XNNStaticResizeBilinear2D),
    10 XNNStaticConstantPad(XNNStaticConstantPad),
    11 XNNAvgPooling2d(XNNPooling2D),
    12 XNNMinimum(XNNNode2x1),
    13 XNNDepthwiseConv2d(XNNNodeConv),
    14 XNNMaxPooling2d(XNNPooling2D),
    15 XNNMultiply(XNNNode2x1),
    16 XNNSubtract(XNNNode2x1),
    17 XNNFloor(XNNNode1x1),
    18 XNNConvert(XNNNode1x1),
    19 XNNGlobalAvgPooling2d(XNNNode1x1),
    20 XNNStaticReshape(XNNStaticReshape),
    21 XNNArgMaxPooling2d(XNNArgMaxPooling2d),
    22 XNNSquareRoot(XNNNode1x1),
    23 XNNCeiling(XNNNode1x1),
    24 XNNHardswish(XNNNode1x1),
    25 XNNLeakyReLU(XNNLeakyReLU),
    26 XNNMaximum(XNNNode2x1),
    27 XNNNegate(XNNNode1x1),
    28 XNNSquare(XNNNode1x1),
    29 XNNELU(XNNELU),
    30 XNNAbs(XNNNode1x1),
    31 XNNPReLU(XNNNode2x1),
    32 XNNConcatenate2(XNNCat),
    33 XNNConcatenate3(XNNCat),
    34 XNNConcatenate4(XNNCat),
    35 XNNStaticSlice(XNNStaticSlice),
    36 XNNScaledDotProductAttention(XNNScaledDotProductAttention),
    37 XNNBatchMatrixMultiply(XNNNode2x1),
    38 XNNConcatenate5(XNNCat),
    39 XNNConvTranspose2d(XNNNodeConv),
    40 XNNReciprocalSquareRoot(XNNNode1x1),
    41 XNNLog(XNNNode1x1),
    42 XNNGelu(XNNNode1x1),
    43 XNNTanh(XNNNode1x1),
    44 XNNExp(XNNNode1x1),
    45 XNNSin(XNNNode1x1),
    46 XNNCopy(XNNNode1x1),
    47 XNNCos(XNNNode1x1),
}

/// `table OutputMinMax`: the clamp fused into a node.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutputMinMax {
    /// Lower bound.
    pub output_min: f32,
    /// Upper bound.
    pub output_max: f32,
}

/// `table XNode`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XNode {
    /// The operation (`None`: union type NONE).
    pub xnode_union: Option<XNodeUnion>,
    /// Debug handle of the originating graph node.
    pub debug_handle: u32,
    /// Fused output clamp.
    pub output_min_max: Option<OutputMinMax>,
}

/// `table XNNTensorValue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XNNTensorValue {
    /// Element type.
    pub datatype: XNNDatatype,
    /// Number of dimensions.
    pub num_dims: u32,
    /// Dimensions.
    pub dims: Option<Vec<u32>>,
    /// Index into `constant_data` (or the legacy `constant_buffer`); 0 = not constant.
    pub constant_buffer_idx: u32,
    /// Index among the delegate's external inputs/outputs (`XNN_INVALID_VALUE_ID` for
    /// internal values).
    pub external_id: u32,
    /// `XNN_VALUE_FLAG_*` bits (1 = external input, 2 = external output).
    pub flags: u32,
    /// The value id nodes refer to.
    pub id_out: u32,
    /// Runtime schema only (slot 7): the datatype of a dynamically quantized tensor.
    pub dq_datatype: XNNDatatype,
}

/// `table PerChannelQuant`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerChannelQuant {
    /// Scales inline (empty when they are in `constant_data`).
    pub scale: Option<Vec<f32>>,
    /// Channel dimension.
    pub channel_dim: i32,
    /// Index into `constant_data` of the scales.
    pub scale_buffer_idx: u32,
    /// Number of scales.
    pub num_scales: u32,
}

/// `table PerChannelGroupQuant`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerChannelGroupQuant {
    /// Scales inline.
    pub scale: Option<Vec<f32>>,
    /// Channel dimension.
    pub channel_dim: i32,
    /// Group size.
    pub group_size: i32,
    /// Deprecated bf16 scales (slot 3); 1.5.1 never writes it.
    pub scale_bf16: Option<Vec<u16>>,
    /// Index into `constant_data` of the scales.
    pub scale_buffer_idx: u32,
    /// Number of scales.
    pub num_scales: u32,
}

/// `table PerTokenDynamicQuant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerTokenDynamicQuant {
    /// Number of non-batch dimensions.
    pub num_nonbatch_dims: i32,
}

/// `table PerTensorQuant`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PerTensorQuant {
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

/// `union XNNQuantParams`.
#[derive(Debug, Clone, PartialEq)]
pub enum XNNQuantParams {
    /// Member 1.
    PerChannelQuant(PerChannelQuant),
    /// Member 2.
    PerTensorQuant(PerTensorQuant),
    /// Member 3.
    PerTokenDynamicQuant(PerTokenDynamicQuant),
    /// Member 4.
    PerChannelGroupQuant(PerChannelGroupQuant),
}

impl XNNQuantParams {
    /// The member names, in union order.
    pub const NAMES: [&'static str; 4] = [
        "PerChannelQuant",
        "PerTensorQuant",
        "PerTokenDynamicQuant",
        "PerChannelGroupQuant",
    ];

    /// The union type code (1..=4).
    pub fn type_code(&self) -> u8 {
        match self {
            Self::PerChannelQuant(_) => 1,
            Self::PerTensorQuant(_) => 2,
            Self::PerTokenDynamicQuant(_) => 3,
            Self::PerChannelGroupQuant(_) => 4,
        }
    }

    /// The member name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PerChannelQuant(_) => "PerChannelQuant",
            Self::PerTensorQuant(_) => "PerTensorQuant",
            Self::PerTokenDynamicQuant(_) => "PerTokenDynamicQuant",
            Self::PerChannelGroupQuant(_) => "PerChannelGroupQuant",
        }
    }
}

/// `table XNNQuantizedTensorValue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XNNQuantizedTensorValue {
    /// The tensor.
    pub tensor_value: Option<XNNTensorValue>,
    /// Its quantization.
    pub quant_params: Option<XNNQuantParams>,
}

/// `union XValueUnion`.
#[derive(Debug, Clone, PartialEq)]
pub enum XValueUnion {
    /// Member 1.
    XNNTensorValue(XNNTensorValue),
    /// Member 2.
    XNNQuantizedTensorValue(XNNQuantizedTensorValue),
}

impl XValueUnion {
    /// The union type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Self::XNNTensorValue(_) => 1,
            Self::XNNQuantizedTensorValue(_) => 2,
        }
    }

    /// The member name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::XNNTensorValue(_) => "XNNTensorValue",
            Self::XNNQuantizedTensorValue(_) => "XNNQuantizedTensorValue",
        }
    }

    /// The tensor (of a quantized value: its `tensor_value`, if present).
    pub fn tensor(&self) -> Option<&XNNTensorValue> {
        match self {
            Self::XNNTensorValue(t) => Some(t),
            Self::XNNQuantizedTensorValue(q) => q.tensor_value.as_ref(),
        }
    }
}

/// `table XValue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XValue {
    /// The value (`None`: union type NONE).
    pub xvalue_union: Option<XValueUnion>,
}

/// `table ConstantDataOffset`: one constant, inline in the payload's constant data (at
/// `offset`) or in named data (`named_key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConstantDataOffset {
    /// Offset in the payload's constant data (`u64::MAX` for named constants in 1.5.1).
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Key in the program's named data (or a `.ptd`); the reference always writes the
    /// string, `""` for inline entries.
    pub named_key: Option<String>,
}

impl ConstantDataOffset {
    /// The named-data key, if the entry has a non-empty one (what a summary shows; the
    /// reference writes `""` in the placeholder entry 0).
    pub fn key(&self) -> Option<&str> {
        self.named_key.as_deref().filter(|k| !k.is_empty())
    }

    /// The key the runtime looks the entry up by when a value reads it: the `named_key`
    /// field whenever it is present, even empty (XNNCompiler's getConstantDataPtr tests
    /// the field's presence); only an entry without the field is read from the payload's
    /// constant data.
    pub fn lookup_key(&self) -> Option<&str> {
        self.named_key.as_deref()
    }
}

/// `table Buffer` (legacy constants inside the flatbuffer, runtime schema only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Buffer {
    /// The bytes (`force_align: 16`).
    pub storage: Option<Vec<u8>>,
}

/// `table XNNGraph`: the root of a payload flatbuffer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XNNGraph {
    /// Schema version (the reference writes `"0"`).
    pub version: Option<String>,
    /// The nodes, in execution order.
    pub xnodes: Option<Vec<XNode>>,
    /// The values (tensors).
    pub xvalues: Option<Vec<XValue>>,
    /// Number of external values (delegate inputs and outputs).
    pub num_externs: u32,
    /// Value ids of the delegate inputs.
    pub input_ids: Option<Vec<u32>>,
    /// Value ids of the delegate outputs.
    pub output_ids: Option<Vec<u32>>,
    /// Legacy constant buffers (slot 6, runtime schema only).
    pub constant_buffer: Option<Vec<Buffer>>,
    /// Legacy memory buffer sizes (slot 7, runtime schema only).
    pub mem_buffer_sizes: Option<Vec<u32>>,
    /// Where each constant lives.
    pub constant_data: Option<Vec<ConstantDataOffset>>,
}

#[cfg(test)]
mod datatype_tests {
    use super::XNNDatatype;

    #[test]
    fn named_constants_match_the_schema_names() {
        for (d, name) in [
            (XNNDatatype::INVALID, "invalid"),
            (XNNDatatype::FP32, "fp32"),
            (XNNDatatype::FP16, "fp16"),
            (XNNDatatype::QINT8, "qint8"),
            (XNNDatatype::INT32, "int32"),
            (XNNDatatype::PFP32, "pfp32"),
            (XNNDatatype::BF16, "bf16"),
        ] {
            assert_eq!(d.name(), Some(name));
        }
    }
}
