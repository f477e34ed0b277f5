//! Reading the annotations of a pod and its namespace (the names themselves
//! are the mesh contract's: `kinject_mesh::labels`).
//!
//! Precedence: the pod's own annotation beats the namespace's (for inheritable
//! keys), which beats the values file. Every unknown key and every value that
//! cannot be used becomes a [`Warning`]; the setting is then left at its default.

use std::collections::BTreeMap;

use kinject_mesh::labels::{INJECT_ANNOTATION, is_config_key};
use serde_json::{Map, Value};

/// Reads a string-valued map entry. Non-string scalars (`true`, `3` from
/// hand-written YAML) are read as their text, as Kubernetes' YAML loader would.
pub fn scalar_str(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Bool(b) => Some(b.to_string().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

/// The effective configuration annotations of a pod: its own `config.*` and
/// `linkerd.io/inject` keys, plus the annotations the injector is about to add
/// (inherited namespace keys, the filtered opaque-ports list), which are read
/// as if the pod had them.
#[derive(Debug, Default)]
pub struct EffectiveAnnotations<'a> {
    pub map: BTreeMap<&'a str, std::borrow::Cow<'a, str>>,
}

impl<'a> EffectiveAnnotations<'a> {
    pub fn collect(
        pod: Option<&'a Map<String, Value>>,
        added: &'a BTreeMap<String, String>,
    ) -> Self {
        let mut out = Self::default();
        if let Some(pod) = pod {
            for (k, v) in pod {
                if (is_config_key(k) || k == INJECT_ANNOTATION)
                    && let Some(s) = scalar_str(v)
                {
                    out.map.insert(k.as_str(), s);
                }
            }
        }
        for (k, v) in added {
            if is_config_key(k) || k == INJECT_ANNOTATION {
                out.map.entry(k.as_str()).or_insert(v.as_str().into());
            }
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(|v| v.as_ref())
    }

    /// True when any annotation changes the configuration (`linkerd.io/inject`
    /// only does so for `ingress`).
    pub fn has_overrides(&self) -> bool {
        self.map
            .iter()
            .any(|(k, v)| *k != INJECT_ANNOTATION || v.as_ref() == "ingress")
    }
}

/// Merges env var lists by name: entries of `over` replace same-named entries of
/// `base` in place; new names are appended.
pub fn merge_env(mut base: Vec<Value>, over: Vec<Value>) -> Vec<Value> {
    for e in over {
        let name = e.get("name").cloned();
        match base.iter_mut().find(|b| b.get("name") == name.as_ref()) {
            Some(slot) => *slot = e,
            None => base.push(e),
        }
    }
    base
}
