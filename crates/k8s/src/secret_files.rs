//! A Secret's keys kept as files in a directory, from a watch on that one
//! Secret. Why not a Secret volume: the kubelet refreshes those on its pod
//! sync (about a minute), so a server whose certificate identity writes
//! after the pod started would wait that long to become ready. The files are
//! written atomically (temporary file, then rename), only when they change.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{info, warn};

/// Keys that make safe file names: letters, digits, `.`, `_`, `-`, not
/// starting with a dot (which would hide them or reach a parent).
pub fn safe_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('.')
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Writes each of the Secret's keys into `dir`; returns the keys written.
pub fn write_keys(secret: &Secret, dir: &Path) -> std::io::Result<Vec<String>> {
    let mut written = Vec::new();
    for (key, value) in secret.data.iter().flatten() {
        if !safe_key(key) {
            warn!(key, "a Secret key that is not a safe file name; skipped");
            continue;
        }
        let path = dir.join(key);
        if std::fs::read(&path).ok().as_deref() == Some(value.0.as_slice()) {
            continue;
        }
        let tmp = dir.join(format!(".{key}.tmp"));
        std::fs::write(&tmp, &value.0)?;
        std::fs::rename(&tmp, &path)?;
        written.push(key.clone());
    }
    Ok(written)
}

/// Follows Secret `namespace/name` until the process ends, mirroring its
/// keys into `dir` (created if missing). A deleted Secret leaves the last
/// files in place: a server keeps serving what it has.
pub async fn sync(client: kube::Client, namespace: String, name: String, dir: PathBuf) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), error = %e, "cannot create the certificate directory");
    }
    let api = Api::<Secret>::namespaced(client, &namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, cfg).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(secret) => match write_keys(&secret, &dir) {
                Ok(keys) if !keys.is_empty() => {
                    info!(secret = %format!("{namespace}/{name}"), ?keys, dir = %dir.display(), "wrote the Secret's files")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot write the Secret's files")
                }
            },
            Err(e) => {
                warn!(secret = %format!("{namespace}/{name}"), error = %e, "watch error (retrying)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn keys_become_files_and_unsafe_keys_do_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let secret = Secret {
            data: Some(
                [
                    ("tls.crt", "CERT"),
                    ("tls.key", "KEY"),
                    ("../escape", "x"),
                    (".hidden", "x"),
                    ("a/b", "x"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
            ),
            ..Secret::default()
        };
        let mut written = write_keys(&secret, dir.path()).expect("write");
        written.sort();
        assert_eq!(written, vec!["tls.crt", "tls.key"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.crt")).expect("crt"),
            "CERT"
        );
        assert!(!dir.path().join(".hidden").exists());
        assert!(
            write_keys(&secret, dir.path()).expect("again").is_empty(),
            "unchanged files are not rewritten"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        assert_eq!(names, vec!["tls.crt", "tls.key"], "no temporary files left");
    }
}
