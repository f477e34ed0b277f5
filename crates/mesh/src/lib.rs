//! kinject's ground floor: the mesh contract that the engine, the servers,
//! install, check and the tests must agree on, each fact written once. Pure:
//! no I/O (reading files or ConfigMaps is the front ends' and `k8s`'s job).
//!
//! - [`values`]: Linkerd's chart values (the configuration schema), loaded in
//!   layers with Helm's semantics by [`ValuesLoader`](values::ValuesLoader);
//!   [`helm`] (merge, `--set` parsing) and [`schema`] (unknown keys) under it;
//! - [`labels`]: the labels and annotations the injector writes and the
//!   operator sets, and the `config.linkerd.io/*` prefixes;
//! - [`names`]: the mesh identity format, the control plane's components,
//!   Services and ports, and the trust-domain rule;
//! - [`parse`]: the value syntaxes of annotations and values (Go durations,
//!   quantities, ports and port ranges, CIDRs, booleans);
//! - [`settings`]: settings several components read, typed.
#![forbid(unsafe_code)]

pub mod helm;
pub mod labels;
pub mod names;
pub mod parse;
pub mod schema;
pub mod settings;
pub mod values;
