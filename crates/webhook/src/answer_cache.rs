//! The admission handler's answer cache. A ReplicaSet scaling up sends the API server's webhook
//! call for N identical pods, and the answer depends only on the object's
//! bytes, the namespace's labels and annotations, the resolved owner and the
//! engine (configuration) in force. Two levels, both bounded:
//!
//! - **Reviews** (the fast path): the whole request body except `request.uid`
//!   and the timestamps of the pod's `metadata.managedFields` entries, for
//!   bodies in the API server's own layout (`"request":{"uid":"…"` first).
//!   Those are the only bytes that differ between a ReplicaSet's pods (the
//!   timestamps carry the second the controller created each one), and the
//!   engine reads neither. A hit parses nothing: the rest of the body is
//!   byte-for-byte, offset for offset, one that was fully parsed and
//!   validated before, and what was left out is a plain string's contents
//!   (a uid, timestamp characters) that cannot change how the rest parses.
//!   Only the cluster context is re-checked (namespace labels, owner,
//!   configuration).
//! - **Objects**: the request's `object` bytes, timestamps left out, for any
//!   layout. A hit skips parsing the object and running the engine.
//!
//! A span is left out of a key only if, when the entry was made, it was
//! proven to be the request's uid / a timestamp of the pod's own
//! managedFields (pointer equality with the parsed, borrowed values): a body
//! with a look-alike elsewhere is never learnt.
//!
//! Keys are 128-bit xxh3 hashes with a per-process random seed, so colliding
//! bodies cannot be prepared offline.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use kinject_inject::{Injector, Owner};
use kinject_k8s::NamespaceInfo;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Cached answers kept per level (bounded; an arbitrary entry is evicted when
/// full). An answer is ~12 KB (mostly the patch), so the cache stays under
/// ~1.5 MiB; a rollout needs one entry per pod template, not per pod.
pub(crate) const CACHE_ENTRIES: usize = 64;
/// How the API server serialises a review: `request.uid` is the request's
/// first field (Go marshals struct fields in declaration order, compactly).
/// Built once: a `memmem::find` per request spent more time preparing its
/// searcher than searching the first ~100 bytes.
static UID_MARKER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(br#""request":{"uid":""#));
/// The key of a managedFields entry's timestamp, as the API server writes it.
static TIME_KEY: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(br#""time":""#));
/// The longest timestamp left out of a key (RFC 3339 with nanoseconds and an
/// offset is 35 bytes).
const MAX_TIME_LEN: usize = 40;

/// One level of the cache: at most [`CACHE_ENTRIES`] answers by key.
pub(crate) struct Bounded<V> {
    entries: Mutex<HashMap<u128, V>>,
}

impl<V: Clone> Bounded<V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::with_capacity(CACHE_ENTRIES)),
        }
    }

    pub(crate) fn get(&self, key: u128) -> Option<V> {
        self.entries.lock().ok().and_then(|m| m.get(&key).cloned())
    }

    /// Inserts, evicting one arbitrary entry when full: clearing hundreds of
    /// answers at once would stall the request that does it.
    pub(crate) fn insert(&self, key: u128, value: V) {
        if let Ok(mut m) = self.entries.lock() {
            if m.len() >= CACHE_ENTRIES
                && !m.contains_key(&key)
                && let Some(k) = m.keys().next().copied()
            {
                m.remove(&k);
            }
            m.insert(key, value);
        }
    }
}

/// Where the uid's characters are in a body laid out as the API server lays
/// it out, if they need no unescaping (a uid is a UUID).
pub(crate) fn uid_span(body: &[u8]) -> Option<(usize, usize)> {
    let start = UID_MARKER.find(body)? + UID_MARKER.needle().len();
    let len = memchr::memchr(b'"', &body[start..])?;
    let uid = &body[start..start + len];
    (!uid.is_empty() && uid.iter().all(|b| b.is_ascii_graphic() && *b != b'\\'))
        .then_some((start, start + len))
}

/// The values of every `"time":"…"` member in `part` after `from`, as
/// (start, end) of the characters between the quotes: the timestamps of the
/// pod's managedFields entries, which differ (to the second the controller
/// created each pod) between a ReplicaSet's otherwise identical pods. Only
/// values of timestamp characters count, so leaving one out can never change
/// how the rest of the body parses; a value cut by the end of `part` is not
/// left out. Callers learn a body only if these are exactly its pod's
/// managedFields timestamps ([`genuine_times`]).
pub(crate) fn time_spans(part: &[u8], from: usize, offset: usize, out: &mut Vec<(usize, usize)>) {
    let Some(rest) = part.get(from..) else { return };
    for at in TIME_KEY.find_iter(rest) {
        let start = from + at + TIME_KEY.needle().len();
        let value = &part[start..part.len().min(start + MAX_TIME_LEN + 1)];
        let Some(len) = memchr::memchr(b'"', value) else {
            continue;
        };
        if value[..len]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'+' | b'-'))
        {
            out.push((offset + start, offset + start + len));
        }
    }
}

/// [`time_spans`] over a body in parts, after offset `from` of the whole
/// body; offsets are into the whole body.
pub(crate) fn time_spans_in_parts(parts: &[&[u8]], from: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for part in parts {
        let end = offset + part.len();
        if end > from {
            time_spans(part, from.saturating_sub(offset), offset, &mut out);
        }
        offset = end;
    }
    out
}

/// Where the timestamps of `object.metadata.managedFields` lie in the
/// object's bytes, in order; `None` if that cannot be told (duplicate keys,
/// escapes in a timestamp, …).
pub(crate) fn genuine_times(object: &RawValue) -> Option<Vec<(usize, usize)>> {
    #[derive(Deserialize)]
    struct Object<'a> {
        #[serde(borrow)]
        metadata: Option<Metadata<'a>>,
    }
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow, rename = "managedFields", default)]
        managed_fields: Vec<Entry<'a>>,
    }
    #[derive(Deserialize)]
    struct Entry<'a> {
        time: Option<&'a str>,
    }
    let text = object.get();
    let parsed: Object<'_> = serde_json::from_str(text).ok()?;
    let base = text.as_ptr() as usize;
    Some(
        parsed
            .metadata
            .map(|m| m.managed_fields)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.time)
            .map(|t| {
                (
                    t.as_ptr() as usize - base,
                    t.as_ptr() as usize - base + t.len(),
                )
            })
            .collect(),
    )
}

/// Hashes a body given in parts, leaving out `excised` (sorted, disjoint,
/// offsets into the whole body) but hashing their offsets: two bodies with
/// one key are byte-for-byte the same outside those ranges, at the same
/// offsets, whatever the parts.
pub(crate) fn keyed_hash(seed: u64, parts: &[&[u8]], excised: &[(usize, usize)]) -> u128 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::with_seed(seed);
    h.update(&(excised.len() as u64).to_le_bytes());
    for (s, e) in excised {
        h.update(&(*s as u64).to_le_bytes());
        h.update(&(*e as u64).to_le_bytes());
    }
    let mut offset = 0;
    for part in parts {
        let end = offset + part.len();
        let mut pos = offset;
        for &(s, e) in excised {
            if e <= pos || s >= end {
                continue;
            }
            if s > pos {
                h.update(&part[pos - offset..s - offset]);
            }
            pos = e.min(end);
        }
        if pos < end {
            h.update(&part[pos - offset..]);
        }
        offset = end;
    }
    h.digest128()
}

/// Identifies an object: its kind and bytes, the `times` left out.
pub(crate) fn object_key(seed: u64, kind: &str, object: &str, times: &[(usize, usize)]) -> u128 {
    let kind_len = (kind.len() as u64).to_le_bytes();
    let at = kind_len.len() + kind.len();
    let spans: Vec<_> = times.iter().map(|(s, e)| (at + s, at + e)).collect();
    keyed_hash(
        seed,
        &[&kind_len, kind.as_bytes(), object.as_bytes()],
        &spans,
    )
}

/// Identifies what an answer depends on besides the object.
pub(crate) fn context_key(
    engine: &Arc<Injector>,
    ns: &NamespaceInfo,
    owner: Option<&Owner>,
) -> u128 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    // Length prefixes keep field boundaries unambiguous.
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(&(Arc::as_ptr(engine) as usize).to_le_bytes());
    field(ns.name.as_bytes());
    field(&[u8::from(ns.known)]);
    for map in [&ns.labels, &ns.annotations] {
        field(&(map.len() as u64).to_le_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.as_str().unwrap_or("").as_bytes());
        }
    }
    match owner {
        Some(o) => {
            field(o.kind.as_bytes());
            field(o.name.as_bytes());
        }
        None => field(b"-"),
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timestamp_characters_are_left_out() {
        let spans = |body: &str| {
            let mut out = Vec::new();
            time_spans(body.as_bytes(), 0, 100, &mut out);
            out
        };
        assert_eq!(spans(r#"{"time":"2026-11-25T03:15:10Z"}"#), [(109, 129)]);
        assert_eq!(
            spans(r#"{"time":"2026-11-25T03:15:10.123+01:00"}"#).len(),
            1
        );
        // An escape, a quote-less end, anything too long or not a timestamp:
        // kept in the key.
        for kept in [
            r#"{"time":"a\"b"}"#,
            r#"{"time":"2026"#,
            r#"{"time":"a b"}"#,
        ] {
            assert!(spans(kept).is_empty(), "{kept}");
        }
        assert!(spans(&format!(r#"{{"time":"{}"}}"#, "1".repeat(MAX_TIME_LEN + 1))).is_empty());
        // Parts: a value cut by a part's end is kept.
        let body = br#"{"a":{"time":"2026-11-25T03:15:10Z"},"b":{"time":"2026-11-25T03:15:11Z"}}"#;
        assert_eq!(time_spans_in_parts(&[body], 0).len(), 2);
        assert_eq!(time_spans_in_parts(&[&body[..20], &body[20..]], 0).len(), 1);
        assert_eq!(
            time_spans_in_parts(&[&body[..40], &body[40..]], 0),
            time_spans_in_parts(&[body], 0)
        );
        assert_eq!(time_spans_in_parts(&[body], 40).len(), 1);
    }

    #[test]
    fn a_key_is_the_same_however_the_body_is_cut() {
        let body = b"0123456789abcdefghij";
        let spans = [(2, 4), (10, 15)];
        let whole = keyed_hash(7, &[body], &spans);
        for cuts in [vec![3], vec![4, 10], vec![1, 12, 19], vec![2, 3, 4, 15]] {
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts.iter().copied().chain([body.len()]) {
                parts.push(&body[at..c]);
                at = c;
            }
            assert_eq!(keyed_hash(7, &parts, &spans), whole, "{cuts:?}");
        }
        // Bytes inside the spans do not count; outside, and the offsets, do.
        assert_eq!(keyed_hash(7, &[b"01XX456789YYYYYfghij"], &spans), whole);
        assert_ne!(keyed_hash(7, &[b"0123456789abcdefghiZ"], &spans), whole);
        assert_ne!(keyed_hash(7, &[body], &[(2, 4), (10, 14)]), whole);
        assert_ne!(keyed_hash(7, &[body], &[(2, 4)]), whole);
        assert_ne!(keyed_hash(8, &[body], &spans), whole);
    }
}
