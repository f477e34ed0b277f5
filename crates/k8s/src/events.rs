//! `Injected` / `InjectionSkipped` Events on the pod's owner. Never on the
//! admission path: the handler hands an event to a bounded queue (dropped when
//! full) and a background task publishes it, at most once a minute per owner
//! and reason (kube's recorder further folds repeats into a series).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tracing::{debug, warn};

const QUEUE: usize = 1024;
const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// One event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectionEvent {
    pub namespace: String,
    /// The owner's kind as Kubernetes spells it (`Deployment`), and its name.
    pub kind: String,
    pub name: String,
    pub injected: bool,
    pub note: String,
}

fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" => "batch/v1",
        "CronJob" => "batch/v1beta1",
        _ => "v1",
    }
}

/// Maps the engine's lowercase owner kinds back to Kubernetes kinds.
pub fn kind_name(lower: &str) -> String {
    match lower {
        "deployment" => "Deployment",
        "replicaset" => "ReplicaSet",
        "replicationcontroller" => "ReplicationController",
        "statefulset" => "StatefulSet",
        "daemonset" => "DaemonSet",
        "job" => "Job",
        "cronjob" => "CronJob",
        "pod" => "Pod",
        other => return other.to_string(),
    }
    .to_string()
}

/// The handler's end of the queue. Cheap to clone; never blocks. Repeats
/// within [`MIN_INTERVAL`] are dropped here, before anything is queued, so a
/// burst of identical pods costs one hash lookup each.
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::Sender<InjectionEvent>>,
    recent: std::sync::Arc<std::sync::Mutex<HashMap<u64, Instant>>>,
}

impl EventSink {
    /// A sink that drops everything (tests, `--no-events`).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            recent: Default::default(),
        }
    }

    /// Starts the publisher task.
    pub fn spawn(client: kube::Client, instance: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: "kinject-proxy-injector".into(),
                instance: Some(instance),
            },
        );
        tokio::spawn(publish(recorder, rx));
        Self {
            tx: Some(tx),
            recent: Default::default(),
        }
    }

    pub fn send(&self, ev: &InjectionEvent) {
        let Some(tx) = &self.tx else {
            return;
        };
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&ev.namespace, &ev.kind, &ev.name, ev.injected).hash(&mut h);
            h.finish()
        };
        let now = Instant::now();
        if let Ok(mut recent) = self.recent.lock() {
            if recent
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < MIN_INTERVAL)
            {
                return;
            }
            if recent.len() > 10_000 {
                recent.retain(|_, t| now.duration_since(*t) < MIN_INTERVAL);
            }
            recent.insert(key, now);
        }
        if tx.try_send(ev.clone()).is_err() {
            debug!("event queue full; event dropped");
        }
    }
}

async fn publish(recorder: Recorder, mut rx: mpsc::Receiver<InjectionEvent>) {
    let mut last: HashMap<(String, String, String, bool), Instant> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        let key = (
            ev.namespace.clone(),
            ev.kind.clone(),
            ev.name.clone(),
            ev.injected,
        );
        let now = Instant::now();
        if last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < MIN_INTERVAL)
        {
            continue;
        }
        last.insert(key, now);
        if last.len() > 10_000 {
            last.retain(|_, t| now.duration_since(*t) < MIN_INTERVAL);
        }
        let reference = ObjectReference {
            api_version: Some(api_version(&ev.kind).into()),
            kind: Some(ev.kind.clone()),
            name: Some(ev.name.clone()),
            namespace: Some(ev.namespace.clone()),
            ..ObjectReference::default()
        };
        let (reason, action) = if ev.injected {
            ("Injected", "Inject")
        } else {
            ("InjectionSkipped", "Skip")
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(ev.note.clone()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(error = %e, kind = %ev.kind, name = %ev.name, "cannot publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_before_the_queue() {
        let (tx, mut rx) = mpsc::channel(8);
        let sink = EventSink {
            tx: Some(tx),
            recent: Default::default(),
        };
        let ev = InjectionEvent {
            namespace: "apps".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            injected: true,
            note: "n".into(),
        };
        sink.send(&ev);
        sink.send(&ev);
        let other = InjectionEvent {
            injected: false,
            ..ev.clone()
        };
        sink.send(&other);
        assert_eq!(rx.try_recv().ok(), Some(ev));
        assert_eq!(rx.try_recv().ok(), Some(other));
        assert!(rx.try_recv().is_err());
        EventSink::disabled().send(&InjectionEvent {
            namespace: String::new(),
            kind: String::new(),
            name: String::new(),
            injected: true,
            note: String::new(),
        });
    }
}
