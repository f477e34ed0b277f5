//! What kinject's servers (the proxy injector, identity, and the control
//! plane to come) share, so that none of them borrows from a sibling:
//! - [`admin`]: `/metrics`, `/live`, `/ready` over plain HTTP;
//! - [`tls`]: serving certificates loaded, validated and hot-reloaded;
//! - [`shutdown`]: SIGINT and SIGTERM;
//! - [`lease`]: leader election on a Lease, with takeover by newer settings.
#![forbid(unsafe_code)]

pub mod admin;
pub mod lease;
pub mod shutdown;
pub mod tls;
