//! kinject's injection engine: pure, synchronous, no I/O.
//!
//! Every front end (the admission webhook, `kinject inject`/`uninject`,
//! `explain`) calls this crate with the same inputs and gets the same answer.
//!
//! - [`Values`]: Linkerd's chart values (the configuration schema), loaded in
//!   layers with Helm's semantics by [`ValuesLoader`].
//! - [`decide()`](decide::decide): the injection truth table → [`InjectDecision`].
//! - [`Injector::inject_pod`]: decision + RFC 6902 [`PodPatch`] + [`Warning`]s.
//! - [`Injector::inject_document`] / [`Injector::uninject_document`]: whole
//!   objects (workloads, Pods, `List`s) for the CLI.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod decide;
pub mod helm;
pub mod injector;
pub mod overrides;
pub mod parse;
pub mod patch;
pub mod ports;
pub mod proxy;
pub mod schema;
pub mod values;
pub mod warning;
pub mod workload;

pub use decide::{DefaultPolicy, InjectDecision, InjectSource, NamespaceMeta, Policy, SkipReason};
pub use injector::{InjectOutcome, Injector, InjectorConfig, Origin, Owner, PodRequest};
pub use patch::PodPatch;
pub use values::{LoadedValues, UnknownValuesKey, Values, ValuesError, ValuesLoader};
pub use warning::{Warning, WarningCode};
pub use workload::{DocumentOutcome, ObjectReport, ObjectStatus, WorkloadKind};
