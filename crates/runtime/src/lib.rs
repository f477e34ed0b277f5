//! The runtime every kinject server runs on, so that none of them sets its
//! process up by hand or borrows from a sibling:
//! - [`process`]: the [`Builder`] (logging, the crypto provider, tokio,
//!   SIGINT/SIGTERM with a drain) and the [`Runtime`] a server receives
//!   (its client, admin endpoints and Lease);
//! - [`client`]: the cluster the user chose, as kubectl chooses it;
//! - [`log`]: plain or JSON lines on stderr;
//! - [`admin`]: `/metrics`, `/live`, `/ready` over plain HTTP;
//! - [`tls`]: serving certificates loaded, validated and hot-reloaded;
//! - [`grpc_tls`]: TLS 1.3 in front of the gRPC servers the proxy dials;
//! - [`shutdown`]: SIGINT and SIGTERM, draining then stopped;
//! - [`lease`]: leader election on a Lease, with takeover by newer settings.
#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod grpc_tls;
pub mod lease;
pub mod log;
pub mod process;
pub mod shutdown;
pub mod tls;

pub use process::{Builder, Runtime};
