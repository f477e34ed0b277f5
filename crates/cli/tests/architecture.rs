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
}
