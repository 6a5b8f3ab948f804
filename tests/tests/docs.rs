//! The generated references in docs/ match the contracts they describe:
//! `docs/dbus.md` the D-Bus XML, `docs/api-reference.md` the OpenAPI file.
//! `PACSYNC_BLESS=1` rewrites them instead of failing.

use std::path::{Path, PathBuf};

use pacsync_tests::docgen::{api_reference, dbus_reference};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn compare_or_bless(doc: &str, generated: &str) {
    let path = workspace().join(doc);
    if std::env::var_os("PACSYNC_BLESS").is_some() {
        std::fs::write(&path, generated).expect("write");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{doc} is out of date with its source: run `PACSYNC_BLESS=1 cargo nextest run -p pacsync-tests docs`"
    );
}

#[test]
fn dbus_reference_matches_the_xml() {
    let xml =
        std::fs::read_to_string(workspace().join("dbus/org.pacsync.Daemon1.xml")).expect("the XML");
    compare_or_bless("docs/dbus.md", &dbus_reference(&xml).expect("generate"));
}

#[test]
fn api_reference_matches_openapi() {
    let text = std::fs::read_to_string(workspace().join("pacsync-server/src/api/openapi.json"))
        .expect("openapi.json");
    let openapi: serde_json::Value = serde_json::from_str(&text).expect("openapi.json");
    compare_or_bless(
        "docs/api-reference.md",
        &api_reference(&openapi).expect("generate"),
    );
}
