//! `docs/ARCHITECTURE.md` against the workspace as cargo sees it, so that
//! the page a new engineer reads first cannot lie: its crate table lists
//! every workspace crate and no other, each row's "depends on" names exactly
//! that crate's kinject dependencies, and the floors hold (no server crate
//! depends on another, the ground crates on nothing above them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Each workspace crate's directory (`crates/NAME`) and kinject dependencies.
fn workspace() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let root = meta["workspace_root"].as_str().expect("workspace_root");
    let mut crates = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let manifest = p["manifest_path"].as_str().expect("manifest_path");
        let dir = Path::new(manifest)
            .parent()
            .and_then(|d| d.strip_prefix(root).ok())
            .map(|d| d.display().to_string())
            .expect("a crate under the workspace");
        let deps: BTreeSet<String> = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|n| n.starts_with("kinject"))
            .map(str::to_string)
            .collect();
        crates.insert(
            dir,
            (p["name"].as_str().unwrap_or_default().to_string(), deps),
        );
    }
    crates
}

/// The crate table's rows: directory → the kinject crates its "depends on"
/// cell names.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let page =
        std::fs::read_to_string(repo().join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = page
        .split("\n## Crates\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a `## Crates` section");
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `crates/")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        if cells.len() != 3 {
            continue; // test suites and scripts: two columns
        }
        let dir = cells[0]
            .trim()
            .trim_start_matches('`')
            .split('`')
            .next()
            .expect("a directory")
            .to_string();
        let deps: BTreeSet<String> = cells[2]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("kinject-"))
            .map(str::to_string)
            .collect();
        rows.insert(dir, deps);
    }
    rows
}

#[test]
fn the_crate_table_is_the_workspace() {
    let crates = workspace();
    let rows = documented();
    let actual: BTreeSet<&String> = crates.keys().collect();
    let listed: BTreeSet<&String> = rows.keys().collect();
    assert_eq!(
        listed, actual,
        "docs/ARCHITECTURE.md's crate table lists other crates than the workspace has"
    );
    for (dir, (name, deps)) in &crates {
        assert_eq!(
            &rows[dir], deps,
            "{dir} ({name}): ARCHITECTURE.md's \"depends on\" names other kinject crates than Cargo.toml"
        );
    }
}

#[test]
fn the_floors_hold() {
    let crates = workspace();
    let deps_of = |name: &str| {
        crates
            .values()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no crate {name}"))
    };
    assert!(deps_of("kinject-mesh").is_empty(), "mesh is the ground");
    assert_eq!(
        deps_of("kinject-inject"),
        BTreeSet::from(["kinject-mesh".to_string()]),
        "the engine stands on the mesh contract alone"
    );
    let servers = ["kinject-webhook", "kinject-identity", "kinject-destination"];
    for s in servers {
        let siblings: Vec<&str> = servers
            .iter()
            .copied()
            .filter(|o| *o != s && deps_of(s).contains(*o))
            .collect();
        assert!(siblings.is_empty(), "{s} depends on {siblings:?}");
    }
    for s in ["kinject-identity", "kinject-destination"] {
        assert!(
            !deps_of(s).contains("kinject-inject"),
            "{s} reads the contract from kinject-mesh, not from the engine"
        );
    }
    for (name, deps) in crates.values() {
        assert!(
            !deps.contains("kinject-test-support"),
            "{name} ships test helpers: kinject-test-support is a dev-dependency only"
        );
    }
}

/// Every `.rs` file under `crates/*/src`, with its text up to its
/// `#[cfg(test)]` module (tests are not held to the size bars).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for c in std::fs::read_dir(repo().join("crates"))
        .expect("crates/")
        .flatten()
    {
        walk(&c.path().join("src"), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("source");
            let code: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("#[cfg(test)]"))
                .collect();
            let name = p.strip_prefix(repo()).unwrap_or(&p).display().to_string();
            (name, code.join("\n"))
        })
        .collect()
}

fn is_code(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with("//")
}

/// The size bars of the house: no file over 800 lines of code and no
/// function over 120 (blank and comment lines aside, tests aside). A
/// function ends at the first `}` at its own indentation, which rustfmt
/// guarantees.
#[test]
fn no_file_or_function_is_too_long() {
    let mut over = Vec::new();
    let sources = sources();
    assert!(sources.len() > 50, "found {} sources", sources.len());
    for (name, text) in &sources {
        let lines: Vec<&str> = text.lines().collect();
        let code = lines.iter().filter(|l| is_code(l)).count();
        if code > 800 {
            over.push(format!("{name}: {code} lines of code"));
        }
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let signature = trimmed
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("const ")
                .trim_start_matches("async ");
            let Some(rest) = signature.strip_prefix("fn ") else {
                continue;
            };
            let fn_name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A declaration without a body (a trait's) ends at its `;`.
            let body_opens = lines[i..]
                .iter()
                .find(|l| l.contains('{') || l.trim_end().ends_with(';'))
                .is_some_and(|l| l.contains('{'));
            if !body_opens {
                continue;
            }
            let close = format!("{indent}}}");
            let Some(end) = lines[i..].iter().position(|l| *l == close) else {
                continue;
            };
            let length = lines[i..=i + end].iter().filter(|l| is_code(l)).count();
            if length > 120 {
                over.push(format!("{name}: fn {fn_name} is {length} lines of code"));
            }
        }
    }
    assert!(over.is_empty(), "over the bars:\n{}", over.join("\n"));
}
