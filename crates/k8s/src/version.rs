//! The API server's version and what follows from it.

use std::fmt;

/// `major.minor` of the API server (`/version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Parses `/version`'s `major`/`minor`, which may carry suffixes such as
    /// `"20+"` on managed clusters.
    pub fn parse(major: &str, minor: &str) -> Option<Self> {
        let num = |s: &str| {
            s.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse::<u32>()
                .ok()
        };
        Some(Self {
            major: num(major)?,
            minor: num(minor)?,
        })
    }

    /// Native sidecars (`restartPolicy: Always` on init containers) are on by
    /// default from 1.29; older servers silently drop the field, which would
    /// turn the proxy into a blocking init container.
    pub fn supports_native_sidecars(self) -> bool {
        self >= Self {
            major: 1,
            minor: 29,
        }
    }

    /// `matchConditions` on admission webhooks (CEL) are GA, on by default,
    /// from 1.30; older servers drop the field.
    pub fn supports_match_conditions(self) -> bool {
        self >= Self {
            major: 1,
            minor: 30,
        }
    }

    /// EndpointSlices are served as `discovery.k8s.io/v1` from 1.21; 1.20
    /// serves only `v1beta1`.
    pub fn serves_endpoint_slices_v1(self) -> bool {
        self >= Self {
            major: 1,
            minor: 21,
        }
    }

    pub async fn detect(client: &kube::Client) -> anyhow::Result<Self> {
        let info = client.apiserver_version().await?;
        Self::parse(&info.major, &info.minor).ok_or_else(|| {
            anyhow::anyhow!("unparsable server version {}.{}", info.major, info.minor)
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let v = ServerVersion::parse("1", "20+").unwrap();
        assert_eq!(
            v,
            ServerVersion {
                major: 1,
                minor: 20
            }
        );
        assert!(!v.supports_native_sidecars());
        assert!(
            ServerVersion::parse("1", "29")
                .unwrap()
                .supports_native_sidecars()
        );
        assert!(!v.serves_endpoint_slices_v1());
        assert!(
            ServerVersion::parse("1", "21")
                .unwrap()
                .serves_endpoint_slices_v1()
        );
        assert!(ServerVersion::parse("1", "x").is_none());
    }
}
