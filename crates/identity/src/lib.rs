//! `kinject identity`: the mesh's certificate authority.
//!
//! - [`ca`]: pure issuance (root, issuer, leaves) and validation;
//! - [`certify`]: the proxy's `Identity/Certify`, pure: identities, CSR checks, signing;
//! - [`grpc`]: that service over gRPC, with the TokenReview and metrics;
//! - [`names`]: workload identity names and secret names;
//! - [`controller`]: the Kubernetes controller (`kinject identity`), leader
//!   elected with `kinject_runtime::lease`, so several replicas are safe.
#![forbid(unsafe_code)]

pub mod ca;
pub mod certify;
pub mod controller;
pub mod grpc;
pub mod names;
