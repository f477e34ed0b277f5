//! How every subcommand reaches the cluster, as kubectl does: `--kubeconfig`
//! and `--context` when given, else `KUBECONFIG` (or `~/.kube/config`) and
//! its current context, else the in-cluster ServiceAccount.
//!
//! The choice is made once per process (the CLI's global flags, set before
//! any subcommand runs), so no code path can build a client for another
//! cluster than the one the user named.

use std::path::PathBuf;
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// The user's choice of cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

static ACCESS: OnceLock<Access> = OnceLock::new();

/// Records the process's choice; the first call wins.
pub fn set_access(access: Access) {
    let _ = ACCESS.set(access);
}

/// The process's choice (the default when none was recorded).
pub fn access() -> Access {
    ACCESS.get().cloned().unwrap_or_default()
}

/// Why no client could be built, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read --kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "{what}: {source}; set --kubeconfig/KUBECONFIG to a kubeconfig for the cluster (or run in a pod)"
    )]
    Config {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A client for the cluster the user chose.
pub async fn client() -> Result<kube::Client, ClientError> {
    let access = ACCESS.get().cloned().unwrap_or_default();
    client_for(&access).await
}

/// A client for `access` (tests, and [`client`]).
pub async fn client_for(access: &Access) -> Result<kube::Client, ClientError> {
    let config = config_for(access).await?;
    kube::Client::try_from(config).map_err(|e| ClientError::Config {
        what: "cannot build the client".into(),
        source: Box::new(e),
    })
}

/// The client configuration `access` names.
pub async fn config_for(access: &Access) -> Result<kube::Config, ClientError> {
    let options = KubeConfigOptions {
        context: access.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&access.kubeconfig, &access.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| ClientError::Config {
                    what: format!("--kubeconfig {}", path.display()),
                    source: Box::new(e),
                })?
        }
        (None, Some(context)) => {
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| ClientError::Config {
                    what: format!("--context {context}"),
                    source: Box::new(e),
                })?
        }
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| ClientError::Config {
                what: "no cluster configuration".into(),
                source: Box::new(e),
            })?,
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: 'https://127.0.0.1:1'}
- name: b
  cluster: {server: 'https://127.0.0.2:2'}
users:
- name: u
  user: {token: t}
contexts:
- name: ctx-a
  context: {cluster: a, user: u}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
";

    #[tokio::test]
    async fn kubeconfig_and_context_choose_the_cluster() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECONFIG).expect("write");
        for (context, url) in [
            (None, "https://127.0.0.1:1/"),
            (Some("ctx-b".to_string()), "https://127.0.0.2:2/"),
        ] {
            let access = Access {
                kubeconfig: Some(path.clone()),
                context,
            };
            let c = config_for(&access).await.expect("config");
            assert_eq!(c.cluster_url.to_string(), url);
        }
        let e = config_for(&Access {
            kubeconfig: Some(path.clone()),
            context: Some("nope".into()),
        })
        .await
        .expect_err("unknown context");
        assert!(e.to_string().contains("--kubeconfig"), "{e}");
        let e = config_for(&Access {
            kubeconfig: Some(dir.path().join("missing")),
            context: None,
        })
        .await
        .expect_err("missing file");
        assert!(e.to_string().contains("cannot read --kubeconfig"), "{e}");
    }
}
