//! Settings that several components read, typed once. Their text forms are
//! Kubernetes' and Linkerd's own spellings.

use std::fmt;
use std::str::FromStr;

/// What the API server does when the injector cannot be reached
/// (`failurePolicy` of the webhook configuration; Linkerd's
/// `webhookFailurePolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Admit the pod without the proxy (Linkerd's default).
    #[default]
    Ignore,
    /// Refuse the pod.
    Fail,
}

impl FailurePolicy {
    /// Kubernetes' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Ignore` or `Fail`, in any case.
impl FromStr for FailurePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ignore" => Ok(FailurePolicy::Ignore),
            "fail" => Ok(FailurePolicy::Fail),
            _ => Err(format!("{s:?} is not a failure policy: use Ignore or Fail")),
        }
    }
}

/// What happens to a pod that nothing opts in or out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// The seed's behaviour: every pod in a non-disabled namespace is meshed.
    #[default]
    Enabled,
    /// Modern Linkerd's opt-in: only pods or namespaces saying `enabled` are meshed.
    Disabled,
}

impl DefaultPolicy {
    /// The spelling of install's `--default-inject`, the injector's
    /// `--default-policy` and the chart's `defaultInject`.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Enabled => "enabled",
            DefaultPolicy::Disabled => "disabled",
        }
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DefaultPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            _ => Err(format!("{s:?} is not one of enabled, disabled")),
        }
    }
}

/// The default inbound policies (`proxy.defaultInboundPolicy` and the
/// `config.linkerd.io/default-inbound-policy` annotation): who may connect
/// to a port no Server selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundPolicy {
    AllUnauthenticated,
    AllAuthenticated,
    ClusterUnauthenticated,
    ClusterAuthenticated,
    Deny,
    /// Admit everyone, as all-unauthenticated does; the name tells the proxy
    /// to report what a stricter policy would refuse.
    Audit,
}

impl InboundPolicy {
    pub const ALL: [InboundPolicy; 6] = [
        InboundPolicy::AllUnauthenticated,
        InboundPolicy::AllAuthenticated,
        InboundPolicy::ClusterUnauthenticated,
        InboundPolicy::ClusterAuthenticated,
        InboundPolicy::Deny,
        InboundPolicy::Audit,
    ];

    /// Linkerd's spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::AllAuthenticated => "all-authenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::ClusterAuthenticated => "cluster-authenticated",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }

    /// Every spelling, for messages and value checks.
    pub fn names() -> [&'static str; 6] {
        Self::ALL.map(Self::name)
    }
}

impl fmt::Display for InboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InboundPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a default inbound policy (one of {})",
                    Self::names().join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_policies_read_kubernetes_spellings_in_any_case() {
        assert_eq!("Ignore".parse(), Ok(FailurePolicy::Ignore));
        assert_eq!("fail".parse(), Ok(FailurePolicy::Fail));
        assert_eq!(FailurePolicy::Fail.to_string(), "Fail");
        let e = "sometimes".parse::<FailurePolicy>().unwrap_err();
        assert!(e.contains("use Ignore or Fail"), "{e}");
    }

    #[test]
    fn inbound_policies_round_trip_their_names() {
        for p in InboundPolicy::ALL {
            assert_eq!(p.name().parse(), Ok(p));
        }
        let e = "open".parse::<InboundPolicy>().unwrap_err();
        assert!(
            e.contains("one of all-unauthenticated, all-authenticated"),
            "{e}"
        );
    }
}
