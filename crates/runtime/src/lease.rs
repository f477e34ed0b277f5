//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas
//! are safe: only the holder writes (identity's Secrets, the injector's
//! webhook configuration). Writes use the Lease's resourceVersion, so two
//! candidates can never both win a round.
//!
//! Candidates may carry their settings (a hash and an epoch, the time their
//! process started). A candidate whose settings differ from the holder's and
//! are newer takes over at once instead of waiting for the lease to expire:
//! in a rolling upgrade the new settings win within a renew period, and the
//! old holder, seeing it lost, stops writing. Equal settings (plain HA
//! replicas) never preempt each other.

use std::time::Duration;

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (pod name, or host and pid).
    pub holder: String,
    pub duration: Duration,
    pub renew_every: Duration,
    /// What this candidate would write; see the module docs.
    pub settings: Option<Settings>,
}

impl LeaseConfig {
    /// A control-plane Lease: held for 15 s and renewed every 2 s, so a
    /// successor takes over within 15 s of a crash (at once after a clean
    /// stop, which releases it).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, holder: String) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            holder,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
            settings: None,
        }
    }

    pub fn with_settings(self, settings: Settings) -> Self {
        Self {
            settings: Some(settings),
            ..self
        }
    }
}

/// This replica's name as a candidate: the pod's name in a cluster, else
/// the component and the process id.
pub fn holder_name(component: &str) -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("{component}-{}", std::process::id()))
}

/// Campaigns until the process starts draining, then gives the Lease up so
/// that a successor takes over at once instead of after the lease duration.
pub async fn hold_until_draining(
    client: kube::Client,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
    stopping: crate::shutdown::Stopping,
) {
    tokio::select! {
        () = campaign(client.clone(), cfg.clone(), leader) => {}
        () = stopping.draining() => release(&client, &cfg).await,
    }
}

/// A candidate's settings, published on the Lease while it holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Digest of everything the holder writes (e.g. the webhook configuration).
    pub hash: String,
    /// When these settings came into force (process start, Unix milliseconds).
    pub epoch: i64,
}

const SETTINGS_HASH: &str = "kinject.io/settings-hash";
const SETTINGS_EPOCH: &str = "kinject.io/settings-epoch";

fn settings_of(lease: &Lease) -> Option<Settings> {
    let a = lease.metadata.annotations.as_ref()?;
    Some(Settings {
        hash: a.get(SETTINGS_HASH)?.clone(),
        epoch: a.get(SETTINGS_EPOCH)?.parse().ok()?,
    })
}

/// Whether `mine` may preempt a live holder publishing `theirs`: different
/// and strictly newer settings only.
pub fn preempts(mine: Option<&Settings>, theirs: Option<&Settings>) -> bool {
    match (mine, theirs) {
        (Some(m), Some(t)) => m.hash != t.hash && m.epoch > t.epoch,
        // A holder that publishes nothing predates settings: newer ones win.
        (Some(_), None) => false,
        _ => false,
    }
}

/// Whether `me` may take or keep a lease held by `holder`, last renewed at
/// `renewed` (None: never), valid for `duration`.
pub fn may_hold(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration: Duration,
    me: &str,
    now: Timestamp,
) -> bool {
    match holder {
        None | Some("") => true,
        Some(h) if h == me => true,
        Some(_) => renewed.is_none_or(|r| {
            let expires =
                r.as_millisecond() + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
            now.as_millisecond() > expires
        }),
    }
}

async fn round(api: &Api<Lease>, cfg: &LeaseConfig) -> kube::Result<bool> {
    let now = Timestamp::now();
    let secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let annotations = cfg.settings.as_ref().map(|s| {
            BTreeMap::from([
                (SETTINGS_HASH.to_string(), s.hash.clone()),
                (SETTINGS_EPOCH.to_string(), s.epoch.to_string()),
            ])
        });
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                annotations,
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.holder.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let theirs = settings_of(&lease);
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone();
    let free = may_hold(
        holder.as_deref(),
        spec.renew_time.as_ref().map(|t| t.0),
        cfg.duration,
        &cfg.holder,
        now,
    );
    if !free && !preempts(cfg.settings.as_ref(), theirs.as_ref()) {
        return Ok(false);
    }
    if !free {
        info!(holder = ?holder, "taking over the lease: newer settings");
    }
    if holder.as_deref() != Some(cfg.holder.as_str()) {
        spec.holder_identity = Some(cfg.holder.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(secs);
    if let Some(mine) = &cfg.settings {
        let a = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
        a.insert(SETTINGS_HASH.into(), mine.hash.clone());
        a.insert(SETTINGS_EPOCH.into(), mine.epoch.to_string());
    }
    // `replace` carries the resourceVersion we read: a concurrent writer wins
    // and we get 409.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `cfg.holder` holds the Lease right now (a fresh read, for a
/// holder about to write something only the holder may write).
pub async fn holds(client: &kube::Client, cfg: &LeaseConfig) -> bool {
    let api = Api::<Lease>::namespaced(client.clone(), &cfg.namespace);
    match api.get_opt(&cfg.name).await {
        Ok(Some(l)) => l
            .spec
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| h == cfg.holder),
        Ok(None) => false,
        Err(e) => {
            warn!(error = %e, "cannot read the lease");
            false
        }
    }
}

/// Gives the Lease up if `cfg.holder` holds it, so a successor takes over
/// at once instead of after the lease duration (a stopping replica). Stop
/// the campaign first, or it takes the Lease back.
pub async fn release(client: &kube::Client, cfg: &LeaseConfig) {
    let api = Api::<Lease>::namespaced(client.clone(), &cfg.namespace);
    let mut lease = match api.get_opt(&cfg.name).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "cannot read the lease to release it");
            return;
        }
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(cfg.holder.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => info!(lease = %cfg.name, "released the lease"),
        // Someone else wrote it since: it is not ours to release any more.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => warn!(error = %e, "cannot release the lease"),
    }
}

/// Campaigns until every receiver of `leader` is gone; `leader` tells whether
/// this replica holds the lease, and wakes its receivers when that changes.
pub async fn campaign(client: kube::Client, cfg: LeaseConfig, leader: watch::Sender<bool>) {
    let api = Api::<Lease>::namespaced(client, &cfg.namespace);
    loop {
        let held = match round(&api, &cfg).await {
            Ok(held) => held,
            Err(e) => {
                warn!(error = %e, "lease round failed");
                false
            }
        };
        // Wake the receivers only on a change: a renewal is not news (and
        // each wake-up re-applies what the leader owns).
        let changed = leader.send_if_modified(|was| std::mem::replace(was, held) != held);
        if changed {
            info!(holder = %cfg.holder, leader = held, "leadership changed");
        }
        if leader.is_closed() {
            return;
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_free_expired_or_own_leases_only() {
        let now = Timestamp::now();
        let d = Duration::from_secs(15);
        let recent = Some(now);
        let old = Some(Timestamp::from_second(now.as_second() - 60).unwrap());
        assert!(may_hold(None, None, d, "a", now));
        assert!(may_hold(Some("a"), recent, d, "a", now));
        assert!(!may_hold(Some("b"), recent, d, "a", now));
        assert!(may_hold(Some("b"), old, d, "a", now));
        assert!(may_hold(Some("b"), None, d, "a", now));
    }

    #[test]
    fn only_different_and_newer_settings_preempt() {
        let s = |hash: &str, epoch: i64| Settings {
            hash: hash.into(),
            epoch,
        };
        assert!(preempts(Some(&s("new", 2)), Some(&s("old", 1))));
        assert!(
            !preempts(Some(&s("old", 1)), Some(&s("new", 2))),
            "older never wins"
        );
        assert!(
            !preempts(Some(&s("same", 2)), Some(&s("same", 1))),
            "HA replicas wait"
        );
        assert!(!preempts(None, Some(&s("x", 1))));
        assert!(!preempts(Some(&s("x", 1)), None));
    }
}
