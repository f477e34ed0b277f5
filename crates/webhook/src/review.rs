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

/// A response body in up to three parts: a small part written per request
/// (version, uid), a tail shared by every request one cached answer serves
/// (the patch, ~10 KB; or its gzip-compressed form) and, for a gzip reply, the
/// per-request trailer. A cache hit neither allocates nor copies the patch.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    parts: [Bytes; 3],
    gzip: bool,
}

impl Reply {
    /// A body in one piece (error messages).
    pub fn whole(bytes: impl Into<Bytes>) -> Self {
        Self {
            parts: [bytes.into(), Bytes::new(), Bytes::new()],
            gzip: false,
        }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body is gzip-encoded (`Content-Encoding: gzip`).
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// The body as one contiguous buffer, as sent (tests, fuzzing).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

/// Up to three data frames and an exact length, so HTTP/1 sends a
/// `Content-Length` and writes the parts in one vectored write.
impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self
            .get_mut()
            .parts
            .iter_mut()
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

/// Whether an `Accept-Encoding` value admits gzip (RFC 9110 12.5.3): `gzip`
/// (or its alias `x-gzip`) or `*`, with a non-zero quality. Go's HTTP client,
/// and so the API server's webhook client, sends `gzip` unless compression is
/// disabled.
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    let mut gzip = None;
    let mut star = None;
    for item in accept_encoding.split(',') {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or("").trim();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
            .next()
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q > 0.0);
        } else if coding == "*" {
            star = Some(q > 0.0);
        }
    }
    // An explicit `gzip;q=0` wins over `*`.
    gzip.or(star).unwrap_or(false)
}

/// Tails shorter than this are sent as is: compressing a skip answer
/// (`"allowed":true`, ~20 bytes) would only add framing.
pub const GZIP_MIN_TAIL: usize = 1024;

/// A shared tail compressed once: a raw DEFLATE stream, and the tail's CRC-32
/// and length for the gzip trailer.
#[derive(Debug, Clone)]
pub struct GzipTail {
    deflate: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl GzipTail {
    /// Compresses `tail`; `None` when it is too small to gain (see
    /// [`GZIP_MIN_TAIL`]) or does not shrink.
    pub fn compress(tail: &[u8]) -> Option<Self> {
        use std::io::Write as _;
        if tail.len() < GZIP_MIN_TAIL {
            return None;
        }
        let mut enc = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(tail.len() / 2),
            flate2::Compression::default(),
        );
        // Writing into a Vec cannot fail; if it did, the tail goes uncompressed.
        enc.write_all(tail).ok()?;
        let deflate = enc.finish().ok()?;
        if deflate.len() >= tail.len() {
            return None;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(tail);
        Some(Self {
            deflate: deflate.into(),
            crc,
            len: tail.len() as u64,
        })
    }

    pub fn compressed_len(&self) -> usize {
        self.deflate.len()
    }
}

/// The gzip header (RFC 1952: deflate, no name, no mtime, unknown OS).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One gzip member whose DEFLATE stream is the per-request `head` as a stored
/// (uncompressed, non-final) block followed by the shared compressed tail,
/// and whose trailer combines the two CRCs. Only the head and the 8-byte
/// trailer are written per request; a stored block lets the precompressed
/// tail follow byte-aligned, so no deflate state exists per request. `None`
/// if the head does not fit one stored block (64 KiB; a uid never comes close).
fn gzip_reply(head: &[u8], tail: &GzipTail) -> Option<Reply> {
    let len = u16::try_from(head.len()).ok()?;
    let mut first = Vec::with_capacity(GZIP_HEADER.len() + 5 + head.len());
    first.extend_from_slice(&GZIP_HEADER);
    // Stored block header: BFINAL=0, BTYPE=00, padded to the byte, then
    // LEN and its one's complement.
    first.push(0);
    first.extend_from_slice(&len.to_le_bytes());
    first.extend_from_slice(&(!len).to_le_bytes());
    first.extend_from_slice(head);
    let mut crc = crc32fast::Hasher::new();
    crc.update(head);
    crc.combine(&tail.crc);
    // ISIZE is the uncompressed length modulo 2^32 (RFC 1952).
    let size = (head.len() as u64 + tail.len) as u32;
    let mut trailer = Vec::with_capacity(8);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    trailer.extend_from_slice(&size.to_le_bytes());
    Some(Reply {
        parts: [first.into(), tail.deflate.clone(), trailer.into()],
        gzip: true,
    })
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

/// The per-request start of an allowing response, up to and including the uid.
fn allow_head(api_version: &'static str, uid: &str) -> Vec<u8> {
    let mut head = Vec::with_capacity(96 + uid.len());
    head.extend_from_slice(b"{\"apiVersion\":\"");
    head.extend_from_slice(api_version.as_bytes());
    head.extend_from_slice(b"\",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut head, uid);
    head
}

/// An allowing response for `uid` with a tail from [`allow_tail`].
pub fn allow_with(api_version: &'static str, uid: &str, tail: Bytes) -> Reply {
    Reply {
        parts: [allow_head(api_version, uid).into(), tail, Bytes::new()],
        gzip: false,
    }
}

/// [`allow_with`], gzip-encoded with the tail's precompressed form; `None`
/// when the uid is absurdly long (the caller then answers uncompressed).
pub fn allow_gzip(api_version: &'static str, uid: &str, tail: &GzipTail) -> Option<Reply> {
    gzip_reply(&allow_head(api_version, uid), tail)
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
        assert_eq!(again.parts[1].as_ptr(), tail.as_ptr());
        // Empty parts are skipped; an empty reply ends at once.
        let text = Reply::whole("bad\n").collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"bad\n");
        assert!(Reply::default().is_end_stream());
    }

    #[test]
    fn accept_encoding_is_read_as_rfc_9110_says() {
        for yes in [
            "gzip",
            "gzip, deflate",
            "deflate, GZIP",
            "x-gzip",
            "*",
            "br;q=1.0, gzip;q=0.5",
            " gzip ; q=1 ",
        ] {
            assert!(accepts_gzip(yes), "{yes:?} accepts gzip");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip; q=0.000",
            "*;q=0",
            "gzip;q=0, *",
            "gzip;q=nonsense",
            "gzipped",
        ] {
            assert!(!accepts_gzip(no), "{no:?} does not accept gzip");
        }
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read as _;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[tokio::test]
    async fn a_gzip_reply_decodes_to_the_plain_reply() {
        use http_body_util::BodyExt;
        let patch =
            encode_patch(&br#"{"op":"add","path":"/spec/containers/-","value":{}}"#.repeat(64));
        let tail = allow_tail(Some(&patch), &["a warning".into()]);
        let gz = GzipTail::compress(&tail).expect("a 4 KB tail compresses");
        assert!(gz.compressed_len() < tail.len() / 2);
        for (version, uid) in [
            (V1, "705ab4f5-6393-11e8-b7cc-42010a800002"),
            (V1BETA1, "u\"2"),
        ] {
            let plain = allow_with(version, uid, tail.clone());
            let reply = allow_gzip(version, uid, &gz).expect("a short uid fits");
            assert!(reply.is_gzip() && !plain.is_gzip());
            assert_eq!(reply.size_hint().exact(), Some(reply.len() as u64));
            let sent = reply.clone().collect().await.unwrap().to_bytes();
            assert_eq!(&sent[..], &reply.to_vec()[..]);
            assert!(sent.len() < plain.len());
            // A single gzip member: any decoder reads it, not only multi-member ones.
            assert_eq!(gunzip(&sent), plain.to_vec());
            // The compressed tail is shared between replies, not copied.
            assert_eq!(reply.parts[1].as_ptr(), gz.deflate.as_ptr());
        }
    }

    #[test]
    fn gzip_is_skipped_where_it_cannot_help() {
        // A skip answer is a few bytes: framing would only add to it.
        assert!(GzipTail::compress(&allow_tail(None, &[])).is_none());
        // Incompressible bytes do not shrink.
        let noise: Vec<u8> = (0..512u64)
            .flat_map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()).to_le_bytes())
            .collect();
        assert!(GzipTail::compress(&noise).is_none());
        // A uid longer than one stored block is answered uncompressed.
        let tail = allow_tail(Some(&"QUFB".repeat(1024)), &[]);
        let gz = GzipTail::compress(&tail).expect("compressible");
        assert!(allow_gzip(V1, &"u".repeat(70_000), &gz).is_none());
    }
}
