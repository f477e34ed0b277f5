//! `kinject identity`: the mesh's certificate authority.
//!
//! - [`ca`]: pure issuance (root, issuer, leaves) and validation;
//! - [`names`]: workload identity names and secret names.
#![forbid(unsafe_code)]

pub mod ca;
pub mod controller;
pub mod names;
