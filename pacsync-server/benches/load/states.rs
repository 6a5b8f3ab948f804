//! The states the benchmarks report: plausible 1,500-package states, and
//! their report bodies made once, so a figure is the server's and not the
//! generator's JSON encoder's.

use axum::body::Bytes;
use pacsync_core::package::{InstallReason, Origin, Package};
use pacsync_core::state::PackageState;

/// A plausible 1,500-package state; `variant` bumps a few versions.
pub fn make_state(packages: usize, variant: usize) -> PackageState {
    (0..packages)
        .map(|i| {
            let bump = if i % 97 == variant % 97 { variant } else { 0 };
            Package {
                name: format!("package-{i:04}"),
                version: format!("{}.{}.{}-{}", i % 7 + 1, i % 13, bump, i % 3 + 1).into(),
                arch: "x86_64".into(),
                reason: if i % 4 == 0 {
                    InstallReason::Explicit
                } else {
                    InstallReason::Dependency
                },
                origin: Some(Origin::Repo(
                    if i % 2 == 0 { "core" } else { "extra" }.into(),
                )),
                installed_size: 1024 * (i as u64 + 1),
                depends: (1..=3)
                    .map(|d| format!("package-{:04}", (i + d * 31) % packages))
                    .collect(),
            }
        })
        .collect()
}

/// A state's hash and its full report body, serialized once.
pub fn full_body(state: &PackageState) -> (String, Bytes) {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        hash: &'a str,
        packages: &'a PackageState,
    }
    let hash = state.content_hash().to_string();
    let body = serde_json::to_vec(&Report {
        hash: &hash,
        packages: state,
    })
    .unwrap_or_default();
    (hash, Bytes::from(body))
}
