//! kinject's Kubernetes glue, kept out of the pure engine:
//! - [`client`]: the cluster the user chose (`--kubeconfig`, `--context`, as kubectl);
//! - [`cache`]: metadata-only reflectors for namespaces and pod owners, with a
//!   bounded fallback GET, feeding the webhook's decisions;
//! - [`webhook_config`]: the MutatingWebhookConfiguration kinject registers and
//!   keeps true (drift is healed within seconds);
//! - [`version`]: what the API server supports (native sidecars);
//! - [`linkerd_config`]: a running Linkerd's `linkerd-config` values and trust
//!   roots, read once or watched;
//! - [`values_source`]: where the values come from (that ConfigMap, then the
//!   user's `--values` files and `--set`s), for every front end and the
//!   injector;
//! - [`secret_files`]: a Secret's keys mirrored into files (serving
//!   certificates, without waiting for the kubelet's volume refresh);
//! - [`policy`]: Linkerd's policy resources (Server, AuthorizationPolicy,
//!   HTTPRoute, …) as typed Rust, and their CRDs;
//! - [`events`]: `Injected` / `InjectionSkipped` Events, asynchronous and rate-limited.
#![forbid(unsafe_code)]

pub mod cache;
pub mod events;
pub mod linkerd_config;
pub mod policy;
pub mod secret_files;
pub mod values_source;
pub mod version;
pub mod webhook_config;

pub use cache::{ClusterView, NamespaceInfo};
pub use values_source::ValuesSources;
pub use version::ServerVersion;
