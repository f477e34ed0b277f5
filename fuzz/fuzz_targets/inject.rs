//! Fuzzes the engine's entry points with arbitrary JSON documents: decide +
//! patch for a pod (with the input also used as its namespace), whole-document
//! inject/uninject, and the Service patch. Nothing may panic, and every patch
//! the engine returns must apply to the object it was computed for.
#![no_main]

use kinject_inject::{Injector, InjectorConfig, NamespaceMeta, PodRequest};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(inj) = Injector::new(InjectorConfig::default()) else {
        return;
    };
    let req = PodRequest {
        namespace: Some(NamespaceMeta::from_object(&doc)),
        ..PodRequest::pod(&doc)
    };
    let out = inj.inject_pod(&req);
    let mut target = doc.clone();
    assert!(out.patch.apply(&mut target).is_ok(), "patch does not apply");
    let _ = out.patch.to_json_bytes();
    if let Some(changed) = inj.inject_document(&doc).changed {
        let _ = inj.uninject_document(&changed);
    }
    let _ = inj.service_patch(&doc, None);
});
