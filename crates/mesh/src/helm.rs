//! Helm's value semantics on JSON trees: merging values layers and the
//! `--set` / `--set-string` / `--set-file` syntax.
//!
//! kinject's configuration is Linkerd's chart values, so a user who knows
//! `helm install -f a.yaml -f b.yaml --set proxy.logLevel=debug` must get the
//! same tree from kinject:
//! - layers merge key by key, maps recursively, lists and scalars replaced
//!   whole, later layers win ([`merge_layer`]);
//! - the merged user tree is then laid over the chart defaults, where `null`
//!   means "the default" ([`coalesce`]);
//! - `--set` expressions are parsed as Helm's `strvals` parses them: dotted
//!   paths, `\.` for a literal dot, `a[0]` list indices, `{a,b}` lists, `,`
//!   between assignments (`\,` for a literal comma), and typed scalars
//!   (`true`, `false`, `null`, integers without a leading zero) for `--set`
//!   only ([`parse_set`]).

use serde_json::{Map, Value};

/// Helm refuses list indices above this (strvals' `MaxIndex`), so a typo such
/// as `a[99999999]=x` cannot allocate a huge list.
pub const MAX_INDEX: usize = 65536;

/// Merges `overlay` into `acc` as Helm merges `-f` files and `--set`s: where
/// both are maps the keys merge recursively; anything else (lists, scalars,
/// `null`, a map replacing a scalar) replaces the old value whole. `null`s
/// are kept so that [`coalesce`] can restore the default.
pub fn merge_layer(acc: &mut Value, overlay: Value) {
    match (acc, overlay) {
        (Value::Object(a), Value::Object(o)) => {
            for (k, v) in o {
                match a.get_mut(&k) {
                    Some(slot) => merge_layer(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Lays the user tree over the defaults: maps merge recursively, a user `null`
/// keeps the default (and is dropped where there is none), anything else
/// replaces the default.
pub fn coalesce(defaults: &mut Value, user: &Value) {
    match (defaults, user) {
        (Value::Object(d), Value::Object(u)) => {
            for (k, v) in u {
                if v.is_null() {
                    continue;
                }
                match d.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => coalesce(slot, v),
                    Some(slot) => *slot = without_nulls(v),
                    None => {
                        d.insert(k.clone(), without_nulls(v));
                    }
                }
            }
        }
        (slot, v) if !v.is_null() => *slot = without_nulls(v),
        _ => {}
    }
}

/// `v` with every `null` map member removed (a `null` under a key that has no
/// default means "unset").
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// How the value side of a `--set`-style expression is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// `--set`: `true`/`false`/`null`/integers are typed, the rest are strings.
    Typed,
    /// `--set-string`: every value is a string.
    String,
    /// `--set-file`: the value is replaced by the named file's contents (the
    /// caller reads the file; see [`parse_set_file`]).
    File,
}

/// One step of a path: a map key or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// A malformed `--set` expression. `message` says what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {expr:?}: {message}")]
pub struct SetError {
    pub flag: &'static str,
    pub expr: String,
    pub message: String,
}

/// One parsed assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub path: Vec<PathStep>,
    pub value: Value,
}

impl SetKind {
    pub fn flag(self) -> &'static str {
        match self {
            SetKind::Typed => "--set",
            SetKind::String => "--set-string",
            SetKind::File => "--set-file",
        }
    }
}

/// Parses one `--set`/`--set-string` argument (which may hold several
/// comma-separated assignments) into assignments, in order.
pub fn parse_set(expr: &str, kind: SetKind) -> Result<Vec<Assignment>, SetError> {
    let err = |message: String| SetError {
        flag: kind.flag(),
        expr: expr.to_string(),
        message,
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut pos = 0;
    let mut out = Vec::new();
    if chars.is_empty() {
        return Err(err("empty expression; expected path=value".into()));
    }
    while pos < chars.len() {
        let path = parse_path(&chars, &mut pos).map_err(&err)?;
        if pos >= chars.len() || chars[pos] != '=' {
            let shown = render_path(&path);
            return Err(err(format!(
                "key {shown:?} has no value (expected {shown}=VALUE)"
            )));
        }
        pos += 1; // '='
        let value = if chars.get(pos) == Some(&'{') && kind != SetKind::File {
            parse_list(&chars, &mut pos, kind).map_err(&err)?
        } else {
            let raw = read_until(&chars, &mut pos, &[',']);
            scalar(&raw, kind)
        };
        if pos < chars.len() {
            if chars[pos] != ',' {
                return Err(err(format!(
                    "unexpected {:?} at character {}",
                    chars[pos],
                    pos + 1
                )));
            }
            pos += 1;
            if pos == chars.len() {
                return Err(err("trailing ',' with no assignment after it".into()));
            }
        }
        out.push(Assignment { path, value });
    }
    Ok(out)
}

/// Parses one `--set-file path=FILE` argument: returns the path and the file
/// name; the caller reads the file and passes its contents to
/// [`Assignment::file`].
pub fn parse_set_file(expr: &str) -> Result<(Vec<PathStep>, String), SetError> {
    let err = |message: String| SetError {
        flag: SetKind::File.flag(),
        expr: expr.to_string(),
        message,
    };
    let chars: Vec<char> = expr.chars().collect();
    let mut pos = 0;
    let path = parse_path(&chars, &mut pos).map_err(&err)?;
    if chars.get(pos) != Some(&'=') {
        return Err(err("expected path=FILE".into()));
    }
    let file: String = chars[pos + 1..].iter().collect();
    if file.is_empty() {
        return Err(err("no file name after '='".into()));
    }
    Ok((path, file))
}

impl Assignment {
    /// The assignment `--set-file` makes once the file is read.
    pub fn file(path: Vec<PathStep>, contents: String) -> Self {
        Self {
            path,
            value: Value::String(contents),
        }
    }

    /// Applies the assignment to `tree` (a map), creating maps and lists on
    /// the way as Helm does; list gaps are filled with `null`. A step that
    /// meets a value of the other shape (a key into a list, an index into a
    /// map or scalar) replaces it, as Helm does.
    pub fn apply(self, tree: &mut Value) {
        let mut cur = tree;
        for step in &self.path {
            cur = match step {
                PathStep::Key(k) => {
                    if !cur.is_object() {
                        *cur = Value::Object(Map::new());
                    }
                    let Value::Object(m) = cur else {
                        unreachable!("made a map above")
                    };
                    m.entry(k.clone()).or_insert(Value::Null)
                }
                PathStep::Index(i) => {
                    if !cur.is_array() {
                        *cur = Value::Array(Vec::new());
                    }
                    let Value::Array(a) = cur else {
                        unreachable!("made a list above")
                    };
                    if a.len() <= *i {
                        a.resize(*i + 1, Value::Null);
                    }
                    &mut a[*i]
                }
            };
        }
        *cur = self.value;
    }
}

/// `a.b[0].c` for messages.
pub fn render_path(path: &[PathStep]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            PathStep::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(&k.replace('.', "\\."));
            }
            PathStep::Index(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }
    s
}

/// Reads `key(.key|[n])*` up to `=` (or the end).
fn parse_path(chars: &[char], pos: &mut usize) -> Result<Vec<PathStep>, String> {
    let mut path = Vec::new();
    loop {
        let start = *pos;
        let key = read_until(chars, pos, &['.', '[', '=', ',']);
        if key.is_empty() {
            let at = chars
                .get(*pos)
                .map_or("the end".into(), |c| format!("{c:?}"));
            return Err(format!("empty key before {at} at character {}", start + 1));
        }
        path.push(PathStep::Key(key));
        // Indices after the key: a[0][1]
        while chars.get(*pos) == Some(&'[') {
            *pos += 1;
            let digits_start = *pos;
            while chars.get(*pos).is_some_and(|c| *c != ']') {
                *pos += 1;
            }
            if *pos >= chars.len() {
                return Err(format!(
                    "unclosed '[' at character {} (expected a list index like [0])",
                    digits_start
                ));
            }
            let digits: String = chars[digits_start..*pos].iter().collect();
            *pos += 1; // ']'
            let index = parse_index(&digits)?;
            path.push(PathStep::Index(index));
        }
        match chars.get(*pos) {
            Some('.') => {
                *pos += 1;
                continue;
            }
            Some('=') => return Ok(path),
            None => return Ok(path),
            Some(',') => return Ok(path),
            Some(c) => return Err(format!("unexpected {c:?} at character {}", *pos + 1)),
        }
    }
}

fn parse_index(digits: &str) -> Result<usize, String> {
    let trimmed = digits.trim();
    if let Some(rest) = trimmed.strip_prefix('-')
        && rest.chars().all(|c| c.is_ascii_digit())
        && !rest.is_empty()
    {
        return Err(format!("negative list index [{trimmed}] is not allowed"));
    }
    let n: usize = trimmed
        .parse()
        .map_err(|_| format!("list index [{digits}] is not a number"))?;
    if n > MAX_INDEX {
        return Err(format!(
            "list index [{n}] is larger than the maximum {MAX_INDEX}"
        ));
    }
    Ok(n)
}

/// Reads characters up to one of `stops` (unescaped) or the end; `\x` yields `x`.
fn read_until(chars: &[char], pos: &mut usize, stops: &[char]) -> String {
    let mut s = String::new();
    while let Some(&c) = chars.get(*pos) {
        if c == '\\' {
            if let Some(&next) = chars.get(*pos + 1) {
                s.push(next);
                *pos += 2;
                continue;
            }
            s.push(c);
            *pos += 1;
            continue;
        }
        if stops.contains(&c) {
            break;
        }
        s.push(c);
        *pos += 1;
    }
    s
}

/// `{a,b,c}` → a list of scalars.
fn parse_list(chars: &[char], pos: &mut usize, kind: SetKind) -> Result<Value, String> {
    let open = *pos;
    *pos += 1; // '{'
    let mut items = Vec::new();
    loop {
        let raw = read_until(chars, pos, &[',', '}']);
        match chars.get(*pos) {
            Some(',') => {
                items.push(scalar(&raw, kind));
                *pos += 1;
            }
            Some('}') => {
                if !(raw.is_empty() && items.is_empty()) {
                    items.push(scalar(&raw, kind));
                }
                *pos += 1;
                return Ok(Value::Array(items));
            }
            _ => {
                return Err(format!(
                    "list opened with '{{' at character {} is never closed",
                    open + 1
                ));
            }
        }
    }
}

/// Helm's `typedVal`: only `--set` types its values.
fn scalar(raw: &str, kind: SetKind) -> Value {
    if kind != SetKind::Typed {
        return Value::String(raw.to_string());
    }
    match raw {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        "0" => return Value::from(0),
        _ => {}
    }
    // Integers without a leading zero (so "0755" and "007" stay strings);
    // floats stay strings, as in Helm.
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty()
        && !digits.starts_with('0')
        && digits.chars().all(|c| c.is_ascii_digit())
        && let Ok(n) = raw.parse::<i64>()
    {
        return Value::from(n);
    }
    Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(expr: &str) -> Value {
        let mut tree = json!({});
        for a in parse_set(expr, SetKind::Typed).unwrap() {
            a.apply(&mut tree);
        }
        tree
    }

    #[test]
    fn merge_layer_merges_maps_and_replaces_the_rest() {
        let mut acc = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge_layer(&mut acc, json!({"a": {"c": [3], "e": null}, "d": {"m": 1}}));
        assert_eq!(
            acc,
            json!({"a": {"b": 1, "c": [3], "e": null}, "d": {"m": 1}})
        );
    }

    #[test]
    fn coalesce_keeps_defaults_for_nulls_and_unnamed_keys() {
        let mut d = json!({"proxy": {"image": {"name": "n", "version": ""}, "uid": 2102}});
        coalesce(
            &mut d,
            &json!({"proxy": {"image": {"version": "v1"}, "uid": null}, "new": {"x": null, "y": 1}}),
        );
        assert_eq!(
            d,
            json!({"proxy": {"image": {"name": "n", "version": "v1"}, "uid": 2102}, "new": {"y": 1}})
        );
    }

    #[test]
    fn set_paths_lists_and_types() {
        assert_eq!(
            set("proxy.logLevel=debug,proxy.uid=7"),
            json!({"proxy": {"logLevel": "debug", "uid": 7}})
        );
        assert_eq!(set("a[1].b=x"), json!({"a": [null, {"b": "x"}]}));
        assert_eq!(set("a[0][1]=x"), json!({"a": [[null, "x"]]}));
        assert_eq!(
            set(r"tracing.labels.k8s\.pod\.ip=1\,2"),
            json!({"tracing": {"labels": {"k8s.pod.ip": "1,2"}}})
        );
        assert_eq!(set("l={a,b,3}"), json!({"l": ["a", "b", 3]}));
        assert_eq!(set("l={}"), json!({"l": []}));
        assert_eq!(
            set("a=true,b=false,c=null,d=0,e=0755,f=1.5,g=-3,h="),
            json!({"a": true, "b": false, "c": null, "d": 0, "e": "0755", "f": "1.5", "g": -3, "h": ""})
        );
        assert_eq!(set("a=x=y"), json!({"a": "x=y"}));
    }

    #[test]
    fn set_string_never_types() {
        let mut tree = json!({});
        for a in parse_set("a=true,b=12,c={1,2}", SetKind::String).unwrap() {
            a.apply(&mut tree);
        }
        assert_eq!(tree, json!({"a": "true", "b": "12", "c": ["1", "2"]}));
    }

    #[test]
    fn later_assignments_win_and_reshape() {
        assert_eq!(set("a.b=1,a.b=2"), json!({"a": {"b": 2}}));
        assert_eq!(set("a=1,a.b=2"), json!({"a": {"b": 2}}));
    }

    #[test]
    fn malformed_expressions_are_precise_errors() {
        let cases = [
            ("", "empty expression"),
            ("proxy.logLevel", "key \"proxy.logLevel\" has no value"),
            ("a..b=1", "empty key before '.' at character 3"),
            (".a=1", "empty key before '.' at character 1"),
            ("=1", "empty key before '=' at character 1"),
            ("a[x]=1", "list index [x] is not a number"),
            ("a[-1]=1", "negative list index [-1] is not allowed"),
            ("a[1=1", "unclosed '['"),
            ("a[99999999]=1", "larger than the maximum 65536"),
            ("a[0]b=1", "unexpected 'b' at character 5"),
            ("a={1,2", "never closed"),
            ("a={1}x", "unexpected 'x' at character 6"),
            ("a=1,", "trailing ','"),
        ];
        for (expr, want) in cases {
            let e = parse_set(expr, SetKind::Typed).unwrap_err();
            assert!(
                e.to_string().contains(want),
                "{expr:?}: got {e}, want {want:?}"
            );
            assert!(e.to_string().starts_with("--set "), "{e}");
        }
    }

    #[test]
    fn set_file_takes_the_rest_as_the_file_name() {
        let (path, file) = parse_set_file("identityTrustAnchorsPEM=ca,1.pem").unwrap();
        assert_eq!(path, vec![PathStep::Key("identityTrustAnchorsPEM".into())]);
        assert_eq!(file, "ca,1.pem");
        assert!(
            parse_set_file("a")
                .unwrap_err()
                .to_string()
                .contains("path=FILE")
        );
        assert!(
            parse_set_file("a=")
                .unwrap_err()
                .to_string()
                .contains("no file name")
        );
    }

    #[test]
    fn render_path_escapes_dots() {
        let p = vec![
            PathStep::Key("a.b".into()),
            PathStep::Index(2),
            PathStep::Key("c".into()),
        ];
        assert_eq!(render_path(&p), r"a\.b[2].c");
    }
}
