//! Fuzzes what a proxy sends to `Identity/Certify`: the request's protobuf
//! decoding, then the identity and CSR checks and signing with a real CA.
//! Nothing may panic; whatever is issued must chain to the root and name
//! only the requested identity.
#![no_main]

use std::sync::LazyLock;

use kinject_identity::ca::{self, Ca};
use kinject_identity::certify;
use libfuzzer_sys::fuzz_target;
use linkerd2_proxy_api::identity::CertifyRequest;
use prost::Message;

static CA: LazyLock<(Ca, String)> = LazyLock::new(|| {
    let now = time::OffsetDateTime::now_utc();
    let root = ca::generate_root("root.linkerd.cluster.local", now, std::time::Duration::from_secs(86400 * 365))
        .expect("root");
    let issuer = Ca::new_issuer(&root, now, std::time::Duration::from_secs(86400 * 30)).expect("issuer");
    (Ca::load(&root.cert_pem, &issuer, now).expect("ca"), root.cert_pem)
});

fuzz_target!(|data: &[u8]| {
    let Ok(req) = CertifyRequest::decode(data) else {
        return;
    };
    let _ = certify::identity_for_user(&req.identity, "linkerd", "cluster.local");
    let (ca, _root) = &*CA;
    if let Ok(c) = certify::certify(
        ca,
        &req.certificate_signing_request,
        &req.identity,
        time::OffsetDateTime::now_utc(),
        std::time::Duration::from_secs(3600),
    ) {
        assert_eq!(ca::dns_names(&c.leaf_der), vec![req.identity.clone()]);
        assert!(c.not_after <= ca.issuer_not_after);
    }
});
