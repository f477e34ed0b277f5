//! kinject's injection engine: pure, synchronous, no I/O.
//!
//! Every front end (the admission webhook, `kinject inject`/`uninject`,
//! `explain`) calls this crate with the same inputs and gets the same answer.
//!
//! The values it reads ([`Values`](kinject_mesh::values::Values)) are the
//! mesh contract's, in `kinject-mesh`.
//!
//! - [`decide()`](decide::decide): the injection truth table → [`InjectDecision`].
//! - [`Injector::inject_pod`]: decision + RFC 6902 [`PodPatch`] + [`Warning`]s.
//! - [`Injector::inject_document`] / [`Injector::uninject_document`]: whole
//!   objects (workloads, Pods, `List`s) for the CLI.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod decide;
pub mod injector;
pub mod overrides;
pub mod patch;
pub mod ports;
pub mod proxy;
pub mod warning;
pub mod workload;

pub use decide::{InjectDecision, InjectSource, NamespaceMeta, Policy, SkipReason};
pub use injector::{InjectOutcome, Injector, InjectorConfig, Origin, Owner, PodRequest};
pub use patch::PodPatch;
pub use warning::{Warning, WarningCode};
pub use workload::{DocumentOutcome, ObjectReport, ObjectStatus, WorkloadKind};
