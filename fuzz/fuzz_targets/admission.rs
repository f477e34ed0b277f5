//! Fuzzes the admission handler with arbitrary request bodies: whatever the
//! bytes, it answers (200 with an AdmissionReview, or 400) and never panics;
//! any patch it returns is valid JSON.
#![no_main]

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use kinject_inject::{Injector, InjectorConfig, Owner};
use kinject_k8s::cache::{ClusterLookup, NamespaceInfo};
use kinject_k8s::events::EventSink;
use kinject_webhook::admission::Admission;
use kinject_webhook::metrics::Metrics;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Fake;

impl ClusterLookup for Fake {
    async fn namespace(&self, name: &str) -> NamespaceInfo {
        let mut ns = NamespaceInfo::unknown(name);
        ns.known = name.len() % 2 == 0;
        ns
    }
    async fn owner(&self, _ns: &str, controller: Option<(&str, &str)>) -> Option<Owner> {
        controller.map(|(kind, name)| Owner {
            kind: kind.to_ascii_lowercase(),
            name: name.into(),
        })
    }
}

fn handler() -> &'static Admission<Fake> {
    static H: OnceLock<Admission<Fake>> = OnceLock::new();
    H.get_or_init(|| {
        let engine = Injector::new(InjectorConfig::default()).expect("engine");
        let mut reg = prometheus_client::registry::Registry::default();
        Admission::new(
            Arc::new(ArcSwap::from_pointee(engine)),
            Fake,
            Metrics::register(&mut reg),
            EventSink::disabled(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (status, body) = futures::executor::block_on(handler().handle(data));
    match status.as_u16() {
        200 => {
            let v: Value = serde_json::from_slice(&body.to_vec()).expect("response is JSON");
            assert_eq!(v["response"]["allowed"], true);
        }
        400 => {}
        other => panic!("unexpected status {other}"),
    }
});
