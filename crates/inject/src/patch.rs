//! `PodPatch`: an RFC 6902 JSON patch built by hand, op by op.
//!
//! Patches are never computed with `json_patch::diff`: it diffs arrays by
//! position and would rewrite the user's containers in place. Every insert is an
//! `add` to an explicit index or `-`, and parents are created before children.
//! Pointer tokens are escaped (`~` → `~0`, `/` → `~1`), which Linkerd's template
//! does not do for `~`.
//!
//! Each op's value is serialised once, when it is added (`RawValue`): the
//! webhook only needs the patch bytes, and building `serde_json::Value` trees for
//! the proxy container would cost most of the admission time.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// One `add` operation with a pre-serialised value.
#[derive(Clone, Debug, Serialize)]
pub struct PatchOp {
    op: &'static str,
    path: String,
    value: Box<RawValue>,
}

impl PatchOp {
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl PartialEq for PatchOp {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.path == other.path && self.value.get() == other.value.get()
    }
}

/// Errors turning a patch into values or applying it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    #[error("invalid JSON pointer {path:?}: {message}")]
    Pointer { path: String, message: String },
    #[error("invalid patch value at {path}: {source}")]
    Value {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Apply(#[from] json_patch::PatchError),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PodPatch(Vec<PatchOp>);

impl PodPatch {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn operations(&self) -> &[PatchOp] {
        &self.0
    }

    /// The patch as JSON bytes, as sent in an AdmissionResponse.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            2 + self
                .0
                .iter()
                .map(|op| op.path.len() + op.value.get().len() + 32)
                .sum::<usize>(),
        );
        // Writing strings and pre-serialised JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &self.0);
        out
    }

    /// The patch as `json_patch` operations (parses every value).
    pub fn to_json_patch(&self) -> Result<json_patch::Patch, PatchError> {
        self.0
            .iter()
            .map(|op| {
                let path = PointerBuf::parse(op.path.clone()).map_err(|e| PatchError::Pointer {
                    path: op.path.clone(),
                    message: e.to_string(),
                })?;
                let value: Value =
                    serde_json::from_str(op.value.get()).map_err(|source| PatchError::Value {
                        path: op.path.clone(),
                        source,
                    })?;
                Ok(PatchOperation::Add(AddOperation { path, value }))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(json_patch::Patch)
    }

    /// Applies the patch to `doc`. On failure `doc` is left unchanged.
    pub fn apply(&self, doc: &mut Value) -> Result<(), PatchError> {
        let patch = self.to_json_patch()?;
        json_patch::patch(doc, &patch)?;
        Ok(())
    }
}

/// Escapes one JSON pointer token (RFC 6901).
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    if token.contains(['~', '/']) {
        path.push_str(&token.replace('~', "~0").replace('/', "~1"));
    } else {
        path.push_str(token);
    }
}

/// Accumulates `add` operations under a path prefix.
pub struct PatchBuilder {
    prefix: String,
    ops: Vec<PatchOp>,
    error: Option<serde_json::Error>,
}

impl PatchBuilder {
    /// `prefix` is an already-escaped JSON pointer such as `""` or `/spec/template`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            ops: Vec::with_capacity(16),
            error: None,
        }
    }

    pub fn add(&mut self, tokens: &[&str], value: &impl Serialize) {
        let mut path = String::with_capacity(self.prefix.len() + 48);
        path.push_str(&self.prefix);
        for t in tokens {
            push_token(&mut path, t);
        }
        match serde_json::value::to_raw_value(value) {
            Ok(value) => self.ops.push(PatchOp {
                op: "add",
                path,
                value,
            }),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// The patch, or the first serialisation error (a bug in kinject's types).
    pub fn finish(self) -> Result<PodPatch, serde_json::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(PodPatch(self.ops)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_tokens_are_escaped() {
        let mut b = PatchBuilder::new("/spec/template");
        b.add(&["metadata", "annotations", "a/b~c"], &"x");
        let p = b.finish().unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations/a~1b~0c", "value": "x"}])
        );
        let mut doc = json!({"spec": {"template": {"metadata": {"annotations": {}}}}});
        p.apply(&mut doc).unwrap();
        assert_eq!(
            doc["spec"]["template"]["metadata"]["annotations"]["a/b~c"],
            "x"
        );
    }

    #[test]
    fn bytes_equal_serde() {
        let mut b = PatchBuilder::new("");
        b.add(&["a"], &json!({"k": [1, "two"]}));
        let p = b.finish().unwrap();
        assert_eq!(p.to_json_bytes(), serde_json::to_vec(&p).unwrap());
    }

    #[test]
    fn apply_is_atomic() {
        let mut b = PatchBuilder::new("");
        b.add(&["a"], &json!(1));
        b.add(&["missing", "child"], &json!(2));
        let mut doc = json!({});
        assert!(b.finish().unwrap().apply(&mut doc).is_err());
        assert_eq!(doc, json!({}));
    }
}
