//! `kinject identity`: the mesh's certificate authority.
//!
//! - [`ca`]: pure issuance (root, issuer, leaves) and validation;
//! - [`certify`]: the proxy's `Identity/Certify`, pure: identities, CSR checks, signing;
//! - [`grpc`]: that service over gRPC, with the TokenReview and metrics;
//! - [`issuer`]: where the issuer and trust anchors come from (kinject's own,
//!   the operator's, cert-manager's), reloaded on change without a restart;
//! - [`names`]: workload identity names and secret names;
//! - [`pki`]: operators' keys (SEC1, PKCS#8) and certificates, checked (P-256 only);
//! - [`config`]: the controller's configuration, metrics and object names;
//! - [`workloads`]: each meshed workload's Secret, the trust bundles, the
//!   control plane's serving certificates;
//! - [`controller`]: the Kubernetes controller (`kinject identity`), leader
//!   elected with `kinject_runtime::lease`, so several replicas are safe.
#![forbid(unsafe_code)]

pub mod ca;
pub mod certify;
pub mod config;
pub mod controller;
pub mod grpc;
pub mod issuer;
pub mod names;
pub mod pki;
pub mod workloads;
