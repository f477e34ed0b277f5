//! Where the values come from: an optional running Linkerd's `linkerd-config`,
//! then `--values` files, then `--set`, `--set-string` and `--set-file`, in
//! Helm's order. Shared by `kinject inject`, `kinject values` and the
//! proxy-injector (which re-reads the files on change).

use std::path::PathBuf;

use crate::linkerd_config::{self, LinkerdConfig};
use anyhow::{Context, Result, bail};
use kinject_mesh::helm::{self, SetKind};
use kinject_mesh::values::{LoadedValues, ValuesLoader};

/// The user's values sources, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct ValuesSources {
    pub files: Vec<PathBuf>,
    pub sets: Vec<String>,
    pub set_strings: Vec<String>,
    pub set_files: Vec<String>,
}

impl ValuesSources {
    /// Checks the `--set*` syntax without reading anything (fail fast at start).
    pub fn check_syntax(&self) -> Result<()> {
        for s in &self.sets {
            helm::parse_set(s, SetKind::Typed)?;
        }
        for s in &self.set_strings {
            helm::parse_set(s, SetKind::String)?;
        }
        for s in &self.set_files {
            helm::parse_set_file(s)?;
        }
        Ok(())
    }

    /// Every file whose change should trigger a reload.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut out = self.files.clone();
        out.extend(
            self.set_files
                .iter()
                .filter_map(|s| helm::parse_set_file(s).ok())
                .map(|(_, f)| PathBuf::from(f)),
        );
        out
    }

    /// Loads over a running Linkerd's `linkerd-config` in `namespace` when
    /// `cluster` is given (an error when it is missing or has no values),
    /// otherwise over the defaults alone.
    pub fn load_over(
        &self,
        cluster: Option<&LinkerdConfig>,
        namespace: &str,
    ) -> Result<LoadedValues> {
        let base = match cluster.map(|c| &c.values) {
            None => None,
            Some(None) => bail!("{}", linkerd_config::missing_message(namespace)),
            Some(Some(Err(e))) => bail!("{e}"),
            Some(Some(Ok(text))) => Some(text.as_str()),
        };
        let source = linkerd_config::values_source_name(namespace);
        self.load(base.map(|t| (source.as_str(), t)))
    }

    /// Reads and merges everything over the defaults. `base` is a document
    /// that goes under the files (a cluster's `linkerd-config`), with its name.
    pub fn load(&self, base: Option<(&str, &str)>) -> Result<LoadedValues> {
        let mut loader = ValuesLoader::new();
        if let Some((name, text)) = base {
            loader.add_document(name, text)?;
        }
        for path in &self.files {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read values file {}", path.display()))?;
            loader.add_document(&format!("values file {}", path.display()), &text)?;
        }
        for s in &self.sets {
            loader.add_set(SetKind::Typed, s)?;
        }
        for s in &self.set_strings {
            loader.add_set(SetKind::String, s)?;
        }
        for s in &self.set_files {
            let (path, file) = helm::parse_set_file(s)?;
            let contents = std::fs::read_to_string(&file)
                .with_context(|| format!("--set-file {s}: cannot read {file}"))?;
            loader.add_set_file(path, &file, contents);
        }
        Ok(loader.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_then_sets_then_set_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, "proxy: {logLevel: a, uid: 1}\n").expect("write");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "PEM\n").expect("write");
        let src = ValuesSources {
            files: vec![a.clone()],
            sets: vec!["proxy.uid=2".into()],
            set_strings: vec!["proxy.logLevel=3".into()],
            set_files: vec![format!("identityTrustAnchorsPEM={}", pem.display())],
        };
        let v = src
            .load(Some(("cluster", "proxy: {logLevel: base, gid: 9}")))
            .expect("load")
            .values;
        assert_eq!(v.proxy.log_level, "3");
        assert_eq!(v.proxy.uid, 2);
        assert_eq!(v.proxy.gid, 9);
        assert_eq!(v.identity_trust_anchors_pem, "PEM\n");
        assert_eq!(src.watched_files(), vec![a, pem]);
    }

    #[test]
    fn unreadable_inputs_are_named() {
        let src = ValuesSources {
            files: vec!["/nonexistent/v.yaml".into()],
            ..Default::default()
        };
        let e = format!("{:#}", src.load(None).unwrap_err());
        assert!(
            e.starts_with("cannot read values file /nonexistent/v.yaml"),
            "{e}"
        );
        let src = ValuesSources {
            set_files: vec!["a=/nonexistent/f".into()],
            ..Default::default()
        };
        let e = format!("{:#}", src.load(None).unwrap_err());
        assert!(
            e.starts_with("--set-file a=/nonexistent/f: cannot read /nonexistent/f"),
            "{e}"
        );
        let src = ValuesSources {
            sets: vec!["a..b=1".into()],
            ..Default::default()
        };
        assert!(src.check_syntax().is_err());
    }
}
