//! kinject's ground floor: the facts of the mesh contract that the engine,
//! the servers, install, check and the tests must agree on, each written
//! once. Pure: no I/O, no dependencies.
//!
//! - [`names`]: the mesh identity format, the control plane's components,
//!   Services and ports, and the trust-domain rule;
//! - [`settings`]: settings several components read, typed.

pub mod names;
pub mod settings;
