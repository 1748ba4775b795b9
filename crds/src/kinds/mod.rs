//! One module per kind.

pub mod flavor;
