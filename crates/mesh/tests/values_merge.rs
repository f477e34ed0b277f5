//! Property test for Helm's merge: laying a random partial values tree over
//! the defaults keeps every default that the partial does not name, and sets
//! every scalar it does name.

use kinject_mesh::helm::{coalesce, merge_layer};
use kinject_mesh::values::Values;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Every leaf of `v` as (path, value); maps are walked, anything else is a leaf.
fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        other => out.push((prefix.clone(), other.clone())),
    }
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set(tree: &mut Value, path: &[String], value: Value) {
    let mut cur = tree;
    for k in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .map(|m| m.entry(k.clone()).or_insert(Value::Null))
            .expect("a map");
    }
    *cur = value;
}

fn defaults() -> Value {
    serde_json::to_value(Values::default()).expect("defaults serialise")
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z0-9]{0,6}".prop_map(Value::String),
        proptest::collection::vec("[a-z]{1,3}".prop_map(Value::String), 0..3)
            .prop_map(Value::Array),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_keeps_every_default_the_partial_does_not_name(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), scalar()), 0..12),
        split in any::<prop::sample::Index>(),
    ) {
        let base = defaults();
        let mut all = Vec::new();
        leaves(&base, &mut Vec::new(), &mut all);
        // A partial tree naming some default leaves (given in two layers, to
        // exercise the layer merge too).
        let mut named: Vec<(Vec<String>, Value)> = Vec::new();
        for (idx, v) in &picks {
            let (path, _) = &all[idx.index(all.len())];
            named.retain(|(p, _)| p != path);
            named.push((path.clone(), v.clone()));
        }
        let cut = split.index(named.len() + 1);
        let mut layer_a = Value::Object(Map::new());
        let mut layer_b = Value::Object(Map::new());
        for (i, (p, v)) in named.iter().enumerate() {
            set(if i < cut { &mut layer_a } else { &mut layer_b }, p, v.clone());
        }
        let mut user = Value::Object(Map::new());
        merge_layer(&mut user, layer_a);
        merge_layer(&mut user, layer_b);
        let mut merged = base.clone();
        coalesce(&mut merged, &user);

        for (path, default) in &all {
            match named.iter().find(|(p, _)| p == path) {
                // A named null means "the default".
                Some((_, Value::Null)) | None => {
                    prop_assert_eq!(get(&merged, path), Some(default), "path {:?}", path);
                }
                Some((_, v)) => prop_assert_eq!(get(&merged, path), Some(v), "path {:?}", path),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any `--set` text either parses or is an error naming the flag;
    /// applying what parses never panics, and the result loads or is an error.
    #[test]
    fn arbitrary_set_expressions_never_panic(expr in r"[a-zA-Z0-9.\[\]{}=,\\ -]{0,24}") {
        use kinject_mesh::helm::{SetKind, parse_set};
        for kind in [SetKind::Typed, SetKind::String] {
            match parse_set(&expr, kind) {
                Ok(assignments) => {
                    let mut tree = Value::Object(Map::new());
                    for a in assignments {
                        a.apply(&mut tree);
                    }
                    let mut loader = kinject_mesh::values::ValuesLoader::new();
                    prop_assert!(loader.add_set(kind, &expr).is_ok());
                    let _ = loader.finish();
                }
                Err(e) => prop_assert!(e.to_string().starts_with(kind.flag())),
            }
        }
    }

    /// Arbitrary YAML-ish documents never panic the loader.
    #[test]
    fn arbitrary_values_documents_never_panic(text in r"[a-zA-Z:\{\}\[\], \n-]{0,64}") {
        let mut loader = kinject_mesh::values::ValuesLoader::new();
        if loader.add_document("f", &text).is_ok() {
            let _ = loader.finish();
        }
    }
}
