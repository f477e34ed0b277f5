//! `PodPatch`: an RFC 6902 JSON patch built by hand, op by op.
//!
//! Patches are never computed with `json_patch::diff`: it diffs arrays by
//! position and would rewrite the user's containers in place. Every insert is an
//! `add` to an explicit index or `-`, and parents are created before children.
//! Pointer tokens are escaped properly (`/` → `~1`, `~` → `~0`), which Linkerd's
//! template does not do for `~`.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::{Serialize, Serializer};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodPatch(pub Patch);

impl PodPatch {
    pub fn is_empty(&self) -> bool {
        self.0.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.0.len()
    }

    pub fn operations(&self) -> &[PatchOperation] {
        &self.0.0
    }

    /// The patch as JSON bytes, as sent in an AdmissionResponse.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a Patch (strings and JSON values) cannot fail.
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    /// Applies the patch to `doc`. On failure `doc` is left unchanged.
    pub fn apply(&self, doc: &mut Value) -> Result<(), json_patch::PatchError> {
        json_patch::patch(doc, &self.0)
    }
}

impl Serialize for PodPatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Accumulates `add` operations under a path prefix.
pub struct PatchBuilder {
    prefix: PointerBuf,
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    /// `prefix` is a JSON pointer such as `""` or `/spec/template`.
    pub fn new(prefix: &str) -> Self {
        let prefix = PointerBuf::from_tokens(
            prefix
                .split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~")),
        );
        Self {
            prefix,
            ops: Vec::with_capacity(16),
        }
    }

    pub fn add(&mut self, tokens: &[&str], value: Value) {
        let mut path = self.prefix.clone();
        for t in tokens {
            path.push_back(*t);
        }
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    pub fn finish(self) -> PodPatch {
        PodPatch(Patch(self.ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_tokens_are_escaped() {
        let mut b = PatchBuilder::new("/spec/template");
        b.add(&["metadata", "annotations", "a/b~c"], json!("x"));
        let p = b.finish();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!([{"op": "add", "path": "/spec/template/metadata/annotations/a~1b~0c", "value": "x"}])
        );
    }

    #[test]
    fn apply_is_atomic() {
        let mut b = PatchBuilder::new("");
        b.add(&["a"], json!(1));
        b.add(&["missing", "child"], json!(2));
        let mut doc = json!({});
        assert!(b.finish().apply(&mut doc).is_err());
        assert_eq!(doc, json!({}));
    }
}
