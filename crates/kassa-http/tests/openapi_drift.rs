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
