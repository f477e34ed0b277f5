//! What kinject's servers (the proxy injector, identity, and destination)
//! share, so that none of them borrows from a sibling:
//! - [`admin`]: `/metrics`, `/live`, `/ready` over plain HTTP;
//! - [`tls`]: serving certificates loaded, validated and hot-reloaded;
//! - [`grpc_tls`]: TLS 1.3 in front of the gRPC servers the proxy dials;
//! - [`shutdown`]: SIGINT and SIGTERM;
//! - [`lease`]: leader election on a Lease, with takeover by newer settings.
#![forbid(unsafe_code)]

pub mod admin;
pub mod grpc_tls;
pub mod lease;
pub mod shutdown;
pub mod tls;
