//! Schema enums as transparent newtypes.
//!
//! FlatBuffers enums are stored as plain integers; a file may hold any value of the
//! underlying type. Modelling them as newtypes (instead of Rust enums) keeps every stored
//! value representable, so decoding never fails on an unknown value and re-packing
//! reproduces it; [`validate`](fn@super::validate) reports unknown values instead.

use std::fmt;

macro_rules! schema_enum {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) { $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $repr);

        impl $name {
            $(
                #[doc = concat!("`", stringify!($variant), "` (", stringify!($value), ")")]
                $(#[$vmeta])*
                pub const $variant: $name = $name($value);
            )+

            /// All values named by the schema, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The schema name of this value, or `None` when the value is not declared by
            /// the schema.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($variant)), )+
                    _ => None,
                }
            }

            /// Whether the schema declares this value.
            pub fn is_known(self) -> bool {
                self.name().is_some()
            }

            /// Looks a value up by its schema name (exact, upper case).
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $( stringify!($variant) => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                $name(v)
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

schema_enum! {
    /// `ScalarType` (`scalar_type.fbs`): the element type of a tensor.
    ///
    /// Note: the reference's Python `executorch.exir.scalar_type.ScalarType` also has
    /// `COMPLEX32/64/128` (8, 9, 10), which the schema comments out; the exporter can
    /// therefore write them. They are "unknown" here (kept, reported by validation).
    ScalarType(i8) {
        BYTE = 0,
        CHAR = 1,
        SHORT = 2,
        INT = 3,
        LONG = 4,
        HALF = 5,
        FLOAT = 6,
        DOUBLE = 7,
        BOOL = 11,
        QINT8 = 12,
        QUINT8 = 13,
        QINT32 = 14,
        BFLOAT16 = 15,
        QUINT4X2 = 16,
        QUINT2X4 = 17,
        BITS16 = 22,
        FLOAT8E5M2 = 23,
        FLOAT8E4M3FN = 24,
        FLOAT8E5M2FNUZ = 25,
        FLOAT8E4M3FNUZ = 26,
        UINT16 = 27,
        UINT32 = 28,
        UINT64 = 29,
    }
}

impl ScalarType {
    /// Size in bytes of one element, for the types the runtime implements
    /// (`None` for unknown values).
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            Self::BYTE | Self::CHAR | Self::BOOL | Self::QINT8 | Self::QUINT8 => 1,
            Self::QUINT4X2 | Self::QUINT2X4 => 1,
            Self::FLOAT8E5M2 | Self::FLOAT8E4M3FN | Self::FLOAT8E5M2FNUZ | Self::FLOAT8E4M3FNUZ => {
                1
            }
            Self::SHORT | Self::HALF | Self::BFLOAT16 | Self::BITS16 | Self::UINT16 => 2,
            Self::INT | Self::FLOAT | Self::QINT32 | Self::UINT32 => 4,
            Self::LONG | Self::DOUBLE | Self::UINT64 => 8,
            _ => return None,
        })
    }
}

schema_enum! {
    /// `TensorShapeDynamism`: how a tensor's `sizes` are to be interpreted.
    TensorShapeDynamism(i8) {
        /// Static shape; memory planned by the compiler.
        STATIC = 0,
        /// Dynamic shape with an upper bound given by `sizes`.
        DYNAMIC_BOUND = 1,
        /// Dynamic shape without upper bound.
        DYNAMIC_UNBOUND = 2,
    }
}

schema_enum! {
    /// `TensorDataLocation`: where a tensor's data is stored.
    TensorDataLocation(i8) {
        /// In a segment of the .pte file.
        SEGMENT = 0,
        /// Outside the .pte file (e.g. a .ptd), keyed by the fully qualified name.
        EXTERNAL = 1,
    }
}

schema_enum! {
    /// `DeviceType`: where a tensor or buffer resides.
    DeviceType(i8) {
        /// Host memory.
        CPU = 0,
        /// A CUDA device.
        CUDA = 1,
    }
}

schema_enum! {
    /// `DataLocation`: where delegate data is stored.
    DataLocation(i8) {
        /// In `Program.backend_delegate_data`.
        INLINE = 0,
        /// In `Program.segments`.
        SEGMENT = 1,
    }
}
