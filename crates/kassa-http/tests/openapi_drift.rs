//! The committed OpenAPI document (docs/openapi.json) is what the server
//! serves; regenerate it with
//! `KASSA_UPDATE_OPENAPI=1 cargo test -p kassa-http --test openapi_drift`.

#![allow(clippy::panic, reason = "test code")]

use std::path::PathBuf;

#[test]
fn committed_openapi_document_matches_the_served_one() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = format!("{:#}\n", kassa_http::openapi::document());
    if std::env::var_os("KASSA_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    assert!(
        committed == generated,
        "docs/openapi.json is out of date; run KASSA_UPDATE_OPENAPI=1 cargo test -p kassa-http --test openapi_drift"
    );
}

#[test]
fn every_route_in_the_document_names_who_may_call_it() {
    let document = kassa_http::openapi::document();
    let paths = document["paths"].as_object().map(|paths| paths.len()).unwrap_or(0);
    assert!(paths >= 30, "only {paths} paths documented");
    for (path, operations) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            assert!(operation["x-kassa-access"].is_string(), "{method} {path} has no access level");
        }
    }
}

/// Every route the router serves is in the document (and the other way
/// round): the route table cannot be asked what it serves, so this reads
/// the `.route(…)` calls in the source, the same text the compiler reads:
/// `router()` in src/lib.rs (before its `.nest("/api/v1", api)` the API's
/// routes, after it the root's) and each feature module's `routes()`
/// (merged into the API). A route added to a router but not to the
/// OpenAPI tables fails here.
#[test]
fn every_served_route_is_documented() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut served = std::collections::BTreeSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap_or_else(|error| panic!("read src/: {error}"))
        .map(|entry| entry.unwrap_or_else(|error| panic!("read src/: {error}")).path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    let mut modules = 0;
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap_or_else(|error| panic!("read {}: {error}", file.display()));
        let name = file.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
        let (start, api_until) = if name == "lib.rs" {
            let start = source.find("pub fn router(").unwrap_or_else(|| panic!("no router() in src/lib.rs"));
            let body = &source[start..];
            let nest =
                body.find(".nest(\"/api/v1\", api)").unwrap_or_else(|| panic!("router() no longer nests /api/v1"));
            (start, nest)
        } else if let Some(start) = source.find("pub fn routes() -> Router<AppState>") {
            modules += 1;
            (start, usize::MAX)
        } else {
            continue;
        };
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        for (offset, chunk) in body.match_indices(".route(\"").map(|(at, _)| (at, &body[at + 8..])) {
            let path = &chunk[..chunk.find('"').unwrap_or_else(|| panic!("an unterminated route path in {name}"))];
            let rest = &chunk[path.len()..];
            let call = &rest[..rest.find(".route(").unwrap_or(rest.len()).min(rest.find(";").unwrap_or(rest.len()))];
            let prefix = if offset < api_until { "/api/v1" } else { "" };
            let mut methods = 0;
            for method in ["get", "post", "put", "patch", "delete"] {
                if call.contains(&format!("{method}(")) {
                    served.insert((method.to_uppercase(), format!("{prefix}{path}")));
                    methods += 1;
                }
            }
            assert!(methods > 0, "no method found for the route {path} in {name}");
        }
    }
    assert!(modules >= 6, "only {modules} feature modules with routes() found: is the parser still right?");
    let documented: std::collections::BTreeSet<(String, String)> = kassa_http::served_routes()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_owned(), path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in the OpenAPI route tables: {undocumented:?}");
    assert!(unserved.is_empty(), "in the OpenAPI route tables but not served: {unserved:?}");
    assert!(served.len() >= 30, "only {} routes read from the source: is the parser still right?", served.len());
}
