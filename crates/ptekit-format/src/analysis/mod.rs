//! Questions asked of a decoded program: which operators it needs and with which kernel
//! keys ([`ops`]), and how two programs differ ([`diff`]).

pub mod diff;
pub mod ops;
