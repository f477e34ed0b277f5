//! Warnings: every setting the engine could not honour is reported, never
//! silently dropped. Front ends forward them (admission `warnings`, the CLI
//! report, Events).

use serde::Serialize;

/// What kind of problem a [`Warning`] reports; stable, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarningCode {
    /// A `config.linkerd.io/*` (or alpha/beta) key kinject does not know.
    UnknownConfigKey,
    /// A known key with a value that cannot be used; the setting is ignored.
    InvalidConfigValue,
    /// `linkerd.io/inject` or `linkerd.io/auto-inject` with an unknown value.
    InvalidInjectValue,
    /// Native sidecars were asked for, but the API server predates them.
    NativeSidecarUnsupported,
    /// The pod spec has no containers.
    NoContainers,
    /// The object's annotations exceed Kubernetes' total size limit.
    AnnotationsTooLarge,
    /// No identity trust anchors are configured: the proxy cannot start.
    NoTrustAnchors,
    /// A container exposes a UDP port, which the proxy does not handle.
    UdpPort,
    /// The document is not a Kubernetes object kinject can inject.
    UnsupportedObject,
    /// A bug in kinject; the object is left unchanged.
    InternalError,
}

impl WarningCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownConfigKey => "unknown_config_key",
            Self::InvalidConfigValue => "invalid_config_value",
            Self::InvalidInjectValue => "invalid_inject_value",
            Self::NativeSidecarUnsupported => "native_sidecar_unsupported",
            Self::NoContainers => "no_containers",
            Self::AnnotationsTooLarge => "annotations_too_large",
            Self::NoTrustAnchors => "no_trust_anchors",
            Self::UdpPort => "udp_port",
            Self::UnsupportedObject => "unsupported_object",
            Self::InternalError => "internal_error",
        }
    }
}

/// One user-facing warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: WarningCode,
    pub message: String,
}

impl Warning {
    pub fn new(code: WarningCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
