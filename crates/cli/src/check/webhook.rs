//! The webhook checks: the configuration's rules, its writer, the caBundle
//! against the served certificate, an end-to-end dry-run pod, and the pods
//! that slipped through.

use super::*;

/// A warning when another writer keeps reverting the webhook configuration:
/// the injector's recent `WebhookConfigurationContested` Event (it backs off
/// and reports), or a foreign field manager owning part of it right now.
pub(super) async fn contest_status(
    client: &kube::Client,
    mwc: &MutatingWebhookConfiguration,
    ns: &str,
) -> Status {
    use k8s_openapi::api::core::v1::Event;
    let events = Api::<Event>::namespaced(client.clone(), ns);
    let params = ListParams::default().fields("reason=WebhookConfigurationContested");
    let recent = timed("list Events", events.list(&params))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let latest = recent
        .iter()
        .filter_map(|e| {
            let at = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))?;
            let fresh = now.duration_since(at).as_secs() < 600;
            fresh.then(|| (at, e.message.clone().unwrap_or_default()))
        })
        .max_by_key(|(at, _)| *at);
    if let Some((_, message)) = latest {
        return Status::Warning(format!(
            "{message} (kubectl -n {ns} get events --field-selector reason=WebhookConfigurationContested)"
        ));
    }
    match kinject_k8s::webhook_config::foreign_manager(mwc) {
        None => Status::Ok,
        Some(m) => Status::Warning(format!(
            "{m} also writes it; the injector repairs drift and backs off from a writer that keeps reverting it"
        )),
    }
}

/// Pods the injector's leader reported as running without the proxy they
/// should have (its `MissingProxy` Events, kept alive while the pod stays
/// so), that still exist and still lack it. A warning: the control plane is
/// healthy, but those pods are outside the mesh.
pub(super) async fn missing_proxies(client: &kube::Client) -> Status {
    use k8s_openapi::api::core::v1::Event;
    let events = match timed(
        "list MissingProxy Events",
        Api::<Event>::all(client.clone())
            .list(&ListParams::default().fields("reason=MissingProxy")),
    )
    .await
    {
        Ok(l) => l.items,
        Err(e) => return Status::Warning(format!("{e}; cannot tell")),
    };
    let mut pods: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod"))
        .filter_map(|e| {
            Some((
                e.involved_object.namespace.clone()?,
                e.involved_object.name.clone()?,
            ))
        })
        .collect();
    pods.sort();
    pods.dedup();
    let mut still = Vec::new();
    for (ns, name) in pods {
        let pod = Api::<Pod>::namespaced(client.clone(), &ns);
        let Ok(Some(p)) = timed("GET pod", pod.get_opt(&name)).await.map_err(|_| ()) else {
            continue;
        };
        let spec = p.spec.unwrap_or_default();
        let has_proxy = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| c.name == "linkerd-proxy");
        if !has_proxy && p.metadata.deletion_timestamp.is_none() {
            still.push(format!("{ns}/{name}"));
        }
    }
    if still.is_empty() {
        Status::Ok
    } else {
        Status::Warning(format!(
            "{} running without the proxy although {} should be meshed: {}; `kubectl rollout restart` their workloads (or install with --repair-missed), and see `kubectl describe pod` for why",
            still.len(),
            if still.len() == 1 { "it" } else { "they" },
            still.join(", ")
        ))
    }
}

pub(super) fn expected_rules(
    mwc: &MutatingWebhookConfiguration,
    ns: &str,
    match_conditions: bool,
) -> Status {
    use kinject_k8s::webhook_config::{ClientTarget, WebhookConfigSpec};
    let Some(w) = mwc.webhooks.iter().flatten().next() else {
        return fail("it has no webhook; restart the injector so it re-registers");
    };
    // The desired object for what was observed: only rules and selectors are judged here.
    let spec = WebhookConfigSpec {
        control_plane_namespace: ns.to_string(),
        target: match (&w.client_config.url, &w.client_config.service) {
            (Some(u), _) => ClientTarget::Url(u.clone()),
            (_, Some(s)) => ClientTarget::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.unwrap_or(443),
            },
            _ => return fail("its clientConfig has neither url nor service"),
        },
        ca_bundle: w
            .client_config
            .ca_bundle
            .clone()
            .map(|b| b.0)
            .unwrap_or_default(),
        failure_policy: match w.failure_policy.as_deref().unwrap_or("Fail").parse() {
            Ok(p) => p,
            Err(e) => return fail(format!("its failurePolicy: {e}")),
        },
        timeout_seconds: w.timeout_seconds.unwrap_or(10),
        excluded_namespaces: excluded_from(w),
        include_services: w
            .rules
            .iter()
            .flatten()
            .any(|r| r.resources.iter().flatten().any(|x| x == "services")),
        // On 1.30+ the injector registers them: missing ones did not reach
        // (or were removed from) the API server.
        match_conditions,
    };
    use kinject_k8s::webhook_config::Drift;
    match kinject_k8s::webhook_config::drift(&spec.build(), mwc) {
        None => Status::Ok,
        Some(why @ Drift::Changed(_)) if matches!(&why, Drift::Changed(f) if f == "matchConditions") => {
            fail(format!(
                "{why}: the API server supports matchConditions (1.30+) but the configuration lacks them; \
             is the AdmissionWebhookMatchConditions feature gate off, or an old injector registering?"
            ))
        }
        Some(why) => fail(format!(
            "{why}: something edits the webhook configuration; the injector repairs it while it runs (is it running?)"
        )),
    }
}

/// The namespaces the observed selector excludes by name.
pub(super) fn excluded_from(
    w: &k8s_openapi::api::admissionregistration::v1::MutatingWebhook,
) -> Vec<String> {
    w.namespace_selector
        .as_ref()
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .find(|e| e.key == "kubernetes.io/metadata.name")
        .and_then(|e| e.values.clone())
        .unwrap_or_default()
}

/// The certificate chain the injector serves, the caBundle, and the name the
/// API server checks: by URL, a TLS handshake with the injector (what the API
/// server does); by Service, the Secret that identity writes.
pub(super) async fn serving_chain(
    client: &kube::Client,
    mwc: &MutatingWebhookConfiguration,
) -> Result<(Vec<Vec<u8>>, Vec<u8>, String), String> {
    let Some(w) = mwc.webhooks.iter().flatten().next() else {
        return Err("no webhook in the configuration".into());
    };
    let bundle = w
        .client_config
        .ca_bundle
        .clone()
        .map(|b| b.0)
        .unwrap_or_default();
    if bundle.is_empty() {
        return Err("the caBundle is empty; restart the injector so it re-registers".into());
    }
    if let Some(url) = &w.client_config.url {
        let rest = url
            .strip_prefix("https://")
            .ok_or("the webhook URL is not https")?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .trim_matches(['[', ']']);
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:443")
        };
        let chain = fetch_served_chain(&addr, host).await?;
        return Ok((chain, bundle, host.to_string()));
    }
    let svc = w
        .client_config
        .service
        .as_ref()
        .ok_or("no url and no service")?;
    let secrets = Api::<Secret>::namespaced(client.clone(), &svc.namespace);
    let secret_name = kinject_mesh::names::WEBHOOK_SECRET;
    let s = timed("GET serving Secret", secrets.get_opt(secret_name))
        .await?
        .ok_or_else(|| {
            format!(
                "no Secret {}/{secret_name}: is identity running?",
                svc.namespace
            )
        })?;
    let pem = secret_text(&s, "tls.crt").ok_or("the serving Secret has no tls.crt")?;
    let chain = rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
        .filter_map(|c: Result<rustls_pki_types::CertificateDer<'static>, _>| c.ok())
        .map(|c| c.to_vec())
        .collect();
    Ok((chain, bundle, format!("{}.{}.svc", svc.name, svc.namespace)))
}

/// The chain a TLS server presents (no verification here: that is the next step).
pub(super) async fn fetch_served_chain(addr: &str, host: &str) -> Result<Vec<Vec<u8>>, String> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
    let tcp = timed(
        "connect to the injector",
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|e| format!("{e}; is the injector running?"))?;
    let tls = timed(
        "TLS handshake with the injector",
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await?;
    let (_, conn) = tls.get_ref();
    Ok(conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_vec())
        .collect())
}

/// Verifies `chain` for `name` against the caBundle as the API server does
/// (path to a bundle root, server name); returns the leaf's expiry.
pub(super) fn verify_chain(
    chain: &[Vec<u8>],
    bundle: &[u8],
    name: &str,
) -> Result<time::OffsetDateTime, String> {
    let Some(leaf) = chain.first() else {
        return Err("the injector presented no certificate".into());
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(bundle) {
        let c: rustls_pki_types::CertificateDer<'static> =
            c.map_err(|e| format!("the caBundle is not PEM: {e}"))?;
        roots
            .add(c)
            .map_err(|e| format!("the caBundle holds a bad certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("the caBundle cannot verify anything: {e}"))?;
    let end = rustls_pki_types::CertificateDer::from(leaf.clone());
    let rest: Vec<_> = chain[1..]
        .iter()
        .map(|c| rustls_pki_types::CertificateDer::from(c.clone()))
        .collect();
    let server = rustls_pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?}: {e}"))?;
    // Verify at a time inside the leaf's validity: expiry is the next check's job.
    let (not_before, not_after) =
        kinject_identity::ca::validity(leaf).ok_or("the serving certificate does not parse")?;
    let now = time::OffsetDateTime::now_utc();
    let at = if now > not_after || now < not_before {
        not_before + (not_after - not_before) / 2
    } else {
        now
    };
    let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(at.unix_timestamp()).unwrap_or(0),
    ));
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &*verifier,
        &end,
        &rest,
        &server,
        &[],
        at,
    )
    .map_err(|e| format!("the caBundle does not verify the serving certificate for {name}: {e}"))?;
    Ok(not_after)
}

/// A server-side dry-run pod create that should come back injected.
pub(super) async fn probe_injection(client: &kube::Client, probe_ns: &str) -> Status {
    let pod: Pod = match serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "kinject-check-",
                     "annotations": {"linkerd.io/inject": "enabled"}},
        "spec": {"containers": [{"name": "probe", "image": "kinject-check-probe"}]},
    })) {
        Ok(p) => p,
        Err(e) => return fail(format!("building the probe pod: {e}")),
    };
    let pods = Api::<Pod>::namespaced(client.clone(), probe_ns);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match timed("dry-run pod create", pods.create(&params, &pod)).await {
        Ok(p) => {
            let spec = p.spec.unwrap_or_default();
            let has_proxy = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .any(|c| c.name == "linkerd-proxy");
            if has_proxy {
                Status::Ok
            } else {
                fail(format!(
                    "a dry-run pod in {probe_ns:?} came back without linkerd-proxy: the API server did not reach the injector (failurePolicy Ignore hides it), or {probe_ns:?} is excluded (--probe-namespace)"
                ))
            }
        }
        Err(e) => fail(format!(
            "{e}; with failurePolicy Fail this means the injector is unreachable"
        )),
    }
}

/// The webhook configuration: there, with the expected rules, not contested,
/// its caBundle verifying the served certificate (and for how long), a
/// dry-run pod injected, and no running pod left without its proxy.
pub(super) async fn webhook_checks(
    client: &kube::Client,
    args: &CheckArgs,
    c: &mut Checker,
    match_conditions: bool,
) {
    let ns = args.namespace.name.as_str();
    let cat = "kinject-webhook";
    let mwc = c
        .value(cat, "webhook configuration exists", Kind::Retryable, || async {
            let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
            match timed("GET webhook configuration", api.get_opt(kinject_k8s::webhook_config::CONFIG_NAME)).await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(fail(format!(
                    "{} not found: the injector registers it once it is ready; kubectl -n {ns} logs deploy/{INJECTOR}",
                    kinject_k8s::webhook_config::CONFIG_NAME
                ))),
                Err(e) => Err(fail(e)),
            }
        })
        .await;
    let Some(mwc) = mwc else {
        return;
    };
    c.run(
        cat,
        "webhook configuration has the expected rules",
        Kind::Normal,
        || async { expected_rules(&mwc, ns, match_conditions) },
    )
    .await;
    c.run(
        cat,
        "webhook configuration is not contested by another writer",
        Kind::Normal,
        || async { contest_status(client, &mwc, ns).await },
    )
    .await;
    let expiry = c
        .value(cat, "caBundle verifies the injector's serving certificate", Kind::Retryable, || async {
            let (chain, bundle, name) = serving_chain(client, &mwc).await.map_err(fail)?;
            verify_chain(&chain, &bundle, &name).map_err(|e| {
                fail(format!(
                    "{e}; the API server cannot call the injector: restart the injector so it re-registers its caBundle"
                ))
            })
        })
        .await;
    if let Some(not_after) = expiry {
        let days = args.cert_min_days;
        c.run(cat, &format!("serving certificate is valid for at least {days} days"), Kind::Normal, || async {
            let left = not_after - time::OffsetDateTime::now_utc();
            if left <= time::Duration::ZERO {
                fail(format!(
                    "it expired at {not_after}; identity renews it (kubectl -n {ns} logs deploy/{IDENTITY})"
                ))
            } else if left < time::Duration::days(i64::from(days)) {
                fail(format!(
                    "it expires at {not_after}, in {} hours; identity renews it at two thirds of its life: is identity running?",
                    left.whole_hours()
                ))
            } else {
                Status::Ok
            }
        })
        .await;
    }
    c.run(
        cat,
        "a pod created in an injected namespace gets the proxy",
        Kind::Retryable,
        || async { probe_injection(client, &args.probe_namespace).await },
    )
    .await;
    c.run(
        cat,
        "no running pod that should be meshed lacks the proxy",
        Kind::Normal,
        || async { missing_proxies(client).await },
    )
    .await;
}
