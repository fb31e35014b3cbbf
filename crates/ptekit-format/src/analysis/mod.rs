//! Questions asked of a decoded program: which operators it needs and with which kernel
//! keys ([`ops`]), how two programs differ ([`diff`]) and how two tensor-data files
//! differ ([`ptd_diff`]).

pub mod diff;
pub mod ops;
pub mod ptd_diff;
