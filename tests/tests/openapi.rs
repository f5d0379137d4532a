//! The committed OpenAPI document (`api/openapi.json`) is the one the API serves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/openapi.json");
    let generated = draas_api::openapi::json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "api/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p draas-tests --test openapi` and commit it"
    );
}
