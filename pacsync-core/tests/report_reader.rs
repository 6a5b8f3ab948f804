//! The fast state-report reader against serde's, on generated reports and
//! on damaged ones: whatever the fast reader accepts, serde reads the same;
//! whatever serde refuses, the fast reader leaves to it.

use pacsync_core::package::{InstallReason, Origin, Package};
use pacsync_core::report::{Report, fast, read_report, read_report_serde};
use pacsync_core::state::PackageState;
use proptest::prelude::*;
use serde::Serialize;

/// Text with what JSON must escape now and then (a quote, a backslash, a
/// control character) among plain and non-ASCII characters.
fn text() -> impl Strategy<Value = String> {
    "[a-z0-9.+_-]{1,6}|[a-zé\"\\\\\u{1}\u{7f}✓ ]{0,4}"
}

fn origin() -> impl Strategy<Value = Option<Origin>> {
    prop_oneof![
        Just(None),
        Just(Some(Origin::Foreign)),
        text().prop_map(|r| Some(Origin::Repo(r))),
    ]
}

fn package() -> impl Strategy<Value = Package> {
    (
        text(),
        text(),
        prop_oneof![Just("x86_64".to_owned()), text()],
        prop::bool::ANY,
        origin(),
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        prop::collection::vec(text(), 0..4),
    )
        .prop_map(
            |(name, version, arch, explicit, origin, size, depends)| Package {
                name,
                version: version.into(),
                arch,
                reason: if explicit {
                    InstallReason::Explicit
                } else {
                    InstallReason::Dependency
                },
                origin,
                installed_size: size,
                depends,
            },
        )
}

#[derive(Serialize)]
struct Written<'a> {
    hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<&'a [Package]>,
}

/// A report as serde_json writes it, compact or pretty.
fn report() -> impl Strategy<Value = String> {
    (
        "[0-9a-f]{64}|[a-z\"]{0,3}",
        prop::option::of(prop::collection::vec(package(), 0..6)),
        prop::bool::ANY,
    )
        .prop_map(|(hash, packages, pretty)| {
            let w = Written {
                hash: &hash,
                packages: packages.as_deref(),
            };
            if pretty {
                serde_json::to_string_pretty(&w)
            } else {
                serde_json::to_string(&w)
            }
            .expect("serializable")
        })
}

fn needs_escape(json: &str) -> bool {
    json.contains('\\')
}

fn fast_report(json: &str) -> Option<Report> {
    fast::read(json).map(|(h, p)| (h.to_owned(), p.map(PackageState::from)))
}

/// Bytes a damaged report gets: JSON's punctuation, pieces of literals
/// and numbers, an escape, a control character, a multi-byte character.
const DAMAGE: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "0",
    "1",
    "-",
    ".",
    "e",
    "null",
    "n",
    "é",
    "\u{1}",
    "\"x\"",
    "\"name\"",
    "\"kind\"",
    "\"repo\"",
    "\"explicit\"",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Every report written as machines write it: the fast reader reads
    /// it (unless it has an escape) and agrees with serde.
    #[test]
    fn the_fast_reader_agrees_with_serde_on_written_reports(json in report()) {
        let by_serde = read_report_serde(&json).expect("a written report reads");
        match fast_report(&json) {
            Some(fast) => prop_assert_eq!(&fast, &by_serde),
            None => prop_assert!(needs_escape(&json), "left to serde: {}", json),
        }
        prop_assert_eq!(read_report(&json).expect("reads"), by_serde);
    }

    /// A damaged report: the fast reader gives up, or reads what serde
    /// reads. It never accepts what serde refuses.
    #[test]
    fn the_fast_reader_never_accepts_what_serde_refuses(
        json in report(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..3, prop::sample::select(DAMAGE)), 1..4),
    ) {
        let mut json = json;
        for (at, how, piece) in edits {
            let boundaries: Vec<usize> = json
                .char_indices()
                .map(|(i, _)| i)
                .chain([json.len()])
                .collect();
            let i = boundaries[at.index(boundaries.len())];
            let next = boundaries.iter().copied().find(|&b| b > i);
            match (how, next) {
                (0, _) | (_, None) => json.insert_str(i, piece),
                (1, Some(n)) => json.replace_range(i..n, ""),
                (_, Some(n)) => json.replace_range(i..n, piece),
            }
        }
        if let Some(fast) = fast_report(&json) {
            let by_serde = read_report_serde(&json);
            prop_assert!(by_serde.is_ok(), "fast accepted, serde refused {:?}: {:?}", json, by_serde);
            prop_assert_eq!(Some(fast), by_serde.ok(), "{}", json);
        }
    }
}

/// Every single edit of a report with each kind of field — each piece of
/// [`DAMAGE`] inserted before, or put in place of, each character, and
/// each character deleted: the fast reader gives up or agrees.
#[test]
fn no_single_edit_makes_the_fast_reader_accept_what_serde_refuses() {
    let json = format!(
        r#"{{"hash":"{}","packages":[{{"name":"a","version":"1:2-3","arch":"x86_64","reason":"explicit","origin":{{"kind":"repo","repo":"core"}},"installed_size":10,"depends":["b","c"]}},{{"name":"b","version":"1","arch":"any","reason":"dependency","origin":{{"kind":"foreign"}},"installed_size":0,"depends":[]}},{{"name":"c","version":"2","arch":"any","reason":"dependency","origin":null}}]}}"#,
        "0f".repeat(32)
    );
    assert!(fast::read(&json).is_some(), "the report itself reads fast");
    let (mut edits, mut accepted) = (0, 0);
    let mut check = |edited: String| {
        edits += 1;
        if let Some(fast) = fast_report(&edited) {
            accepted += 1;
            let by_serde = read_report_serde(&edited);
            assert_eq!(Some(fast), by_serde.ok(), "{edited}");
        }
    };
    for i in 0..json.len() {
        for piece in DAMAGE {
            let mut e = json.clone();
            e.insert_str(i, piece);
            check(e);
            let mut e = json.clone();
            e.replace_range(i..=i, piece);
            check(e);
        }
        let mut e = json.clone();
        e.remove(i);
        check(e);
    }
    // Spaces and newlines between tokens, other digits: many edits leave a
    // report both readers take, so the agreement was tested, not skipped.
    assert!(accepted * 20 > edits, "{accepted} of {edits} read fast");
}
