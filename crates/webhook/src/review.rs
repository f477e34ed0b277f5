//! The AdmissionReview codec, `admission.k8s.io/v1` and `v1beta1` (the same
//! shape). Own small types rather than kube-core's: those serialise `patch` as a
//! JSON array of numbers instead of base64 (kube-rs #1781), and would round-trip
//! the object's metadata through a typed struct.

use std::borrow::Cow;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;
use serde_json::value::RawValue;

pub const V1: &str = "admission.k8s.io/v1";
pub const V1BETA1: &str = "admission.k8s.io/v1beta1";

/// Why a body is not an AdmissionReview kinject can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReviewError {
    #[error("empty body: expected an AdmissionReview")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("not an AdmissionReview (kind {0:?})")]
    NotAReview(String),
    #[error(
        "unsupported AdmissionReview version {0:?} (supported: admission.k8s.io/v1, admission.k8s.io/v1beta1)"
    )]
    Version(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// The parts of `request` kinject reads, borrowed from the body where JSON
/// escaping allows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<'a> {
    #[serde(default, borrow)]
    pub uid: Cow<'a, str>,
    #[serde(default)]
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Kept as raw JSON (validated, not copied): it is hashed for the answer
    /// cache and parsed only when the engine has to run.
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReview<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<AdmissionRequest<'a>>,
}

/// A parsed review: the version to answer in, and the request.
#[derive(Debug)]
pub struct Review<'a> {
    pub api_version: &'static str,
    pub request: AdmissionRequest<'a>,
}

/// Parses and validates a request body.
pub fn parse(body: &[u8]) -> Result<Review<'_>, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    let raw: RawReview<'_> =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    if raw.kind != "AdmissionReview" {
        return Err(ReviewError::NotAReview(raw.kind));
    }
    let api_version = match raw.api_version.as_str() {
        V1 => V1,
        V1BETA1 => V1BETA1,
        other => return Err(ReviewError::Version(other.to_string())),
    };
    let request = raw.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    Ok(Review {
        api_version,
        request,
    })
}

/// A response body in two parts: a small head written per request (version,
/// uid) and a tail shared by every request one cached answer serves (the
/// patch, ~10 KB), so a cache hit neither allocates nor copies the patch.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    head: Bytes,
    tail: Bytes,
}

impl Reply {
    /// A body in one piece (error messages).
    pub fn whole(bytes: impl Into<Bytes>) -> Self {
        Self {
            head: bytes.into(),
            tail: Bytes::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as one contiguous buffer (tests, fuzzing).
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.tail[..]].concat()
    }
}

/// Up to two data frames and an exact length, so HTTP/1 sends a
/// `Content-Length` and writes both parts in one vectored write.
impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let next = [&mut this.head, &mut this.tail]
            .into_iter()
            .find(|b| !b.is_empty())
            .map(std::mem::take);
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len() as u64)
    }
}

/// The part of an allowing response that does not depend on the request:
/// everything after the uid. `patch_b64` is the already base64-encoded patch;
/// base64 needs no JSON escaping, so it is copied as is.
pub fn allow_tail(patch_b64: Option<&str>, warnings: &[String]) -> Bytes {
    let mut out = Vec::with_capacity(96 + patch_b64.map_or(0, str::len) + warnings.len() * 64);
    out.extend_from_slice(b",\"allowed\":true");
    if let Some(p) = patch_b64 {
        out.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
        out.extend_from_slice(p.as_bytes());
        out.push(b'"');
    }
    if !warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, warnings);
    }
    out.extend_from_slice(b"}}");
    out.into()
}

/// An allowing response for `uid` with a tail from [`allow_tail`].
pub fn allow_with(api_version: &'static str, uid: &str, tail: Bytes) -> Reply {
    let mut head = Vec::with_capacity(96 + uid.len());
    head.extend_from_slice(b"{\"apiVersion\":\"");
    head.extend_from_slice(api_version.as_bytes());
    head.extend_from_slice(b"\",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut head, uid);
    Reply {
        head: head.into(),
        tail,
    }
}

/// An allowing response, built in one go (answers that are not cached).
pub fn allow(
    api_version: &'static str,
    uid: &str,
    patch_b64: Option<&str>,
    warnings: &[String],
) -> Reply {
    allow_with(api_version, uid, allow_tail(patch_b64, warnings))
}

/// Base64 (standard alphabet, padded), as the admission API expects `patch`.
pub fn encode_patch(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn rejects_what_is_not_a_review() {
        assert_eq!(parse(b"").unwrap_err(), ReviewError::Empty);
        assert_eq!(parse(b"  \n").unwrap_err(), ReviewError::Empty);
        assert!(matches!(parse(b"{nope").unwrap_err(), ReviewError::Json(_)));
        assert!(matches!(parse(b"[1,2]").unwrap_err(), ReviewError::Json(_)));
        assert_eq!(
            parse(br#"{"kind":"Pod","apiVersion":"v1"}"#).unwrap_err(),
            ReviewError::NotAReview("Pod".into())
        );
        assert_eq!(
            parse(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2"}"#).unwrap_err(),
            ReviewError::Version("admission.k8s.io/v2".into())
        );
        assert_eq!(
            parse(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#).unwrap_err(),
            ReviewError::NoRequest
        );
        assert_eq!(
            parse(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}"#)
                .unwrap_err(),
            ReviewError::NoUid
        );
    }

    #[test]
    fn answers_in_the_version_asked_with_base64_patch() {
        let r = parse(br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u1","operation":"CREATE"}}"#).unwrap();
        assert_eq!(r.api_version, V1BETA1);
        let reply = allow(
            r.api_version,
            &r.request.uid,
            Some(&encode_patch(b"[]")),
            &["w \"quoted\"".into()],
        );
        let out: Value = serde_json::from_slice(&reply.to_vec()).unwrap();
        assert_eq!(out["apiVersion"], V1BETA1);
        assert_eq!(out["response"]["uid"], "u1");
        assert_eq!(out["response"]["patch"], "W10=");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        assert_eq!(out["response"]["warnings"][0], "w \"quoted\"");
        let out: Value = serde_json::from_slice(&allow(V1, "u\"2", None, &[]).to_vec()).unwrap();
        assert_eq!(out["response"]["uid"], "u\"2");
        assert!(out["response"].get("patch").is_none());
        assert!(out["response"].get("warnings").is_none());
    }

    #[tokio::test]
    async fn a_reply_is_its_parts_in_order_with_an_exact_length() {
        use http_body_util::BodyExt;
        let tail = allow_tail(Some("W10="), &[]);
        let reply = allow_with(V1, "u1", tail.clone());
        assert_eq!(reply.size_hint().exact(), Some(reply.len() as u64));
        let whole = reply.clone().collect().await.unwrap().to_bytes();
        assert_eq!(whole, reply.to_vec());
        assert!(whole.ends_with(&tail));
        // The tail is shared, not copied.
        let again = allow_with(V1, "u2", tail.clone());
        assert_eq!(again.tail.as_ptr(), tail.as_ptr());
        // Empty parts are skipped; an empty reply ends at once.
        let text = Reply::whole("bad\n").collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"bad\n");
        assert!(Reply::default().is_end_stream());
    }
}
