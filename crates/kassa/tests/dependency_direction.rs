//! The crates' dependencies point one way: interfaces and engines depend on
//! the core and the storage boundary, never the reverse, and the core stays
//! free of IO. These arrows are easy to break with one line in a
//! Cargo.toml, so they are checked from `cargo metadata` on every test run.

#![allow(clippy::expect_used, clippy::panic, reason = "a test fails by panicking, with the reason in the message")]

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// The dependency graph of the workspace, by package name.
struct Graph {
    /// Direct dependencies of each workspace member, with their kind
    /// ("normal", "build" or "dev"), as declared in its Cargo.toml.
    declared: HashMap<String, Vec<(String, String)>>,
    /// Direct normal and build dependencies of every package in the
    /// resolved graph, by package name.
    resolved: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    fn load() -> Graph {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|error| panic!("cannot run cargo metadata: {error}"));
        assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");

        let packages = metadata["packages"].as_array().expect("metadata has packages");
        let name_of: HashMap<&str, &str> = packages
            .iter()
            .map(|package| (package["id"].as_str().expect("id"), package["name"].as_str().expect("name")))
            .collect();
        let members: BTreeSet<&str> = metadata["workspace_members"]
            .as_array()
            .expect("metadata has workspace members")
            .iter()
            .map(|id| name_of[id.as_str().expect("member id")])
            .collect();
        let declared = packages
            .iter()
            .filter(|package| members.contains(package["name"].as_str().expect("name")))
            .map(|package| {
                let dependencies = package["dependencies"]
                    .as_array()
                    .expect("dependencies")
                    .iter()
                    .map(|dependency| {
                        let name = dependency["name"].as_str().expect("dependency name").to_owned();
                        let kind = dependency["kind"].as_str().unwrap_or("normal").to_owned();
                        (name, kind)
                    })
                    .collect();
                (package["name"].as_str().expect("name").to_owned(), dependencies)
            })
            .collect();

        let mut resolved: HashMap<String, BTreeSet<String>> = HashMap::new();
        for node in metadata["resolve"]["nodes"].as_array().expect("metadata has a resolved graph") {
            let name = name_of[node["id"].as_str().expect("node id")].to_owned();
            let entry = resolved.entry(name).or_default();
            for dependency in node["deps"].as_array().expect("node deps") {
                let not_dev_only = dependency["dep_kinds"]
                    .as_array()
                    .expect("dep kinds")
                    .iter()
                    .any(|kind| kind["kind"].as_str() != Some("dev"));
                if not_dev_only {
                    entry.insert(name_of[dependency["pkg"].as_str().expect("dep pkg")].to_owned());
                }
            }
        }
        Graph { declared, resolved }
    }

    /// Direct normal and build dependencies of a workspace member.
    fn direct(&self, package: &str) -> Vec<&str> {
        self.declared
            .get(package)
            .unwrap_or_else(|| panic!("{package} is not a workspace member"))
            .iter()
            .filter(|(_, kind)| kind != "dev")
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every package `package` reaches through normal and build
    /// dependencies, each with the path that reaches it, for the message.
    fn reachable(&self, package: &str) -> HashMap<String, Vec<String>> {
        let mut paths: HashMap<String, Vec<String>> = HashMap::new();
        let mut queue = vec![vec![package.to_owned()]];
        while let Some(path) = queue.pop() {
            let last = path.last().expect("paths are never empty");
            for next in self.resolved.get(last).into_iter().flatten() {
                if !paths.contains_key(next) && next != package {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    paths.insert(next.clone(), longer.clone());
                    queue.push(longer);
                }
            }
        }
        paths
    }

    /// Fails, naming each offending arrow, if `package` reaches any of
    /// `forbidden` directly or through other crates.
    fn assert_never_reaches(&self, package: &str, forbidden: &[&str], why: &str) {
        let reachable = self.reachable(package);
        let offending: Vec<String> =
            forbidden.iter().filter_map(|name| reachable.get(*name)).map(|path| path.join(" -> ")).collect();
        assert!(offending.is_empty(), "{why}, but:\n  {}", offending.join("\n  "));
    }
}

/// Database drivers and the things that bring one along.
const DRIVERS: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "sqlx",
    "sqlx-core",
    "tokio-postgres",
    "postgres",
    "postgres-protocol",
    "deadpool-postgres",
    "diesel",
    "sea-orm",
    "mysql",
    "mysql_async",
];

#[test]
fn the_core_depends_on_nothing_but_thiserror() {
    let graph = Graph::load();
    let direct = graph.direct("kassa-core");
    let unexpected: Vec<String> =
        direct.iter().filter(|name| **name != "thiserror").map(|name| format!("kassa-core -> {name}")).collect();
    assert!(
        unexpected.is_empty(),
        "kassa-core is the pure centre and may depend only on thiserror, but:\n  {}",
        unexpected.join("\n  ")
    );
    let mut forbidden = vec![
        "tokio",
        "serde",
        "async-trait",
        "axum",
        "hyper",
        "futures",
        "kassa-store",
        "kassa-store-sqlite",
        "kassa-store-postgres",
        "kassa-ledger",
        "kassa",
    ];
    forbidden.extend_from_slice(DRIVERS);
    graph.assert_never_reaches("kassa-core", &forbidden, "kassa-core must do no IO and know no interface");
}

#[test]
fn the_storage_boundary_names_no_database() {
    let graph = Graph::load();
    let mut forbidden = vec!["kassa-store-sqlite", "kassa-store-postgres", "kassa-ledger", "kassa"];
    forbidden.extend_from_slice(DRIVERS);
    graph.assert_never_reaches(
        "kassa-store",
        &forbidden,
        "kassa-store is the boundary both engines implement and may not depend on either engine or a driver",
    );
}

#[test]
fn the_engines_do_not_depend_on_each_other_or_on_their_users() {
    let graph = Graph::load();
    graph.assert_never_reaches(
        "kassa-store-sqlite",
        &["kassa-store-postgres", "kassa-ledger", "kassa", "tokio-postgres", "sqlx"],
        "the SQLite engine stands alone beside the PostgreSQL one",
    );
    graph.assert_never_reaches(
        "kassa-store-postgres",
        &["kassa-store-sqlite", "kassa-ledger", "kassa", "rusqlite", "libsqlite3-sys", "sqlx"],
        "the PostgreSQL engine stands alone beside the SQLite one",
    );
}

#[test]
fn the_ledger_depends_on_the_boundary_not_on_an_engine() {
    let graph = Graph::load();
    let mut forbidden = vec!["kassa-store-sqlite", "kassa-store-postgres", "kassa"];
    forbidden.extend_from_slice(DRIVERS);
    graph.assert_never_reaches(
        "kassa-ledger",
        &forbidden,
        "kassa-ledger works through the LedgerStore trait and may not depend on an engine or a driver",
    );
}

/// The checks above pass vacuously if the graph is read wrong (a renamed
/// field, names spelled differently), so known arrows must be seen.
#[test]
fn the_graph_shows_the_arrows_that_do_exist() {
    let graph = Graph::load();
    for (from, to) in [
        ("kassa-store-sqlite", "rusqlite"),
        ("kassa-store-sqlite", "libsqlite3-sys"),
        ("kassa-store-postgres", "tokio-postgres"),
        ("kassa-ledger", "kassa-store"),
        ("kassa-store", "kassa-core"),
        ("kassa", "kassa-ledger"),
        ("kassa-core", "thiserror"),
    ] {
        assert!(graph.reachable(from).contains_key(to), "the graph read from cargo metadata lacks {from} -> {to}");
    }
    assert!(graph.direct("kassa-core").contains(&"thiserror"), "kassa-core's declared dependencies were not read");
}
