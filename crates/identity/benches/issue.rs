//! Issuing one workload certificate (key generation + signing + PEM).
//!
//!     cargo bench -p kinject-identity --bench issue

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kinject_identity::ca::{Ca, generate_root};
use time::OffsetDateTime;

fn bench(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let root = generate_root("root.linkerd.cluster.local", now, 3650 * day).expect("root");
    let issuer = Ca::new_issuer(&root, now, 365 * day).expect("issuer");
    let ca = Ca::load(&root.cert_pem, &issuer, now).expect("ca");
    let names = vec!["web.deployment.apps.linkerd-managed.linkerd.svc.cluster.local".to_string()];
    c.bench_function("issue_workload_certificate", |b| {
        b.iter(|| black_box(ca.issue(black_box(&names), &[], now, day).expect("leaf")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
