//! `pacsync_core::vercmp` against pacman's own `vercmp` binary: a
//! hand-picked table of edge cases, then >10,000 generated pairs biased to
//! the shapes where rpmvercmp is subtle (epochs, pkgrels, separators,
//! leading zeros, letters, git describes) and to near-identical pairs.

use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::process::Command;

use pacsync_core::vercmp;
use pacsync_tests::require_binary;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

/// Generated cases × pairs per case ≥ 10,000 comparisons per run.
const CASES: u32 = 40;
const PAIRS_PER_CASE: usize = 256;
const _: () = assert!(CASES as usize * PAIRS_PER_CASE >= 10_000);

/// vercmp is a process per pair; a few threads hide the exec latency.
const THREADS: usize = 4;

/// Orders checked against pacman 6.0.2's vercmp (both directions).
const EDGE_CASES: &[(&str, &str, Ordering)] = &[
    ("1.0", "1.0", Equal),
    ("1.0", "1.1", Less),
    ("1.0", "1.0.1", Less),
    ("1.0.0", "1.0", Greater),
    ("1.0a", "1.0", Less),
    ("1.0a", "1.0b", Less),
    ("1.0rc1", "1.0", Less),
    ("1.0rc1", "1.0rc2", Less),
    ("1.0alpha", "1.0beta", Less),
    ("1.0beta", "1.0pre", Less),
    ("1.0pre", "1.0rc", Less),
    ("1.0rc", "1.0", Less),
    ("1.0.a", "1.0", Greater),
    ("1.0.a", "1.0.1", Less),
    ("1.0a1", "1.0.1", Less),
    ("1.0", "1.0-1", Equal),
    ("1.0-1", "1.0-2", Less),
    ("1.0-2", "1.0-10", Less),
    ("1.0-1", "1.0-1.1", Less),
    ("1.0-1.1", "1.0-1.2", Less),
    ("1.0-1.1", "1.0-2", Less),
    ("1:1.0", "2.0", Greater),
    ("1:1.0-1", "1.0-2", Greater),
    ("0:1.0", "1.0", Equal),
    (":1.0", "1.0", Equal),
    ("01:1.0", "1:1.0", Equal),
    ("00:2", "0:1", Greater),
    ("1:0", "0:9", Greater),
    ("2:1.0", "10:0.1", Less),
    ("1.0_beta", "1.0", Greater),
    ("0.2.0_beta-11", "0.2.0-11", Greater),
    ("0.2.0_beta", "0.2.0beta", Greater),
    ("1.0~rc1", "1.0", Greater),
    ("1.0+r5", "1.0", Greater),
    ("2.38.0+r5+g1a2b-1", "2.38.0+r6+g0000-1", Less),
    ("2.38.0+r5+g1a2b-1.1", "2.38.0+r5+g1a2b-1", Greater),
    ("r123.abcdef0", "r124.0000000", Less),
    ("8.1.g5ae006f", "8.1", Greater),
    ("20190514.711d329", "20190514.711d330", Less),
    ("010", "10", Equal),
    ("001", "1", Equal),
    ("0001.2", "1.02", Equal),
    ("1..0", "1.0", Greater),
    ("1.0.0", "1..0", Less),
    ("1.0", "1_0", Equal),
    ("1.0", "1+0", Equal),
    ("1__0", "1_0", Greater),
    ("1.0.", "1.0", Greater),
    (".1.0", "1.0", Greater),
    ("1", "a", Greater),
    ("a", "b", Less),
    ("A", "a", Less),
    ("1.0-", "1.0-1", Less),
    ("-1", "1", Less),
    ("1-2-3", "1-2-4", Less),
    ("1-2-3", "1-3-1", Less),
    ("1:2:3", "1:2:4", Less),
    ("a:1", "1", Less),
    ("1a:2", "0:1", Less),
    ("12345678901234567890", "12345678901234567891", Less),
    ("99999999999999999999", "100000000000000000000", Less),
    ("0000000000000000000001", "1", Equal),
    ("1.0a", "1.0.", Less),
    ("1.0", "1.0.0.0", Less),
    ("1.0.", "1.0.0", Less),
    ("1", "1.", Less),
    ("+", "-", Greater),
    ("~", "", Greater),
    ("", "", Equal),
    ("", "1", Less),
    ("1.2.3", "1.2.3a", Greater),
    ("1.2.3a", "1.2.3.a", Less),
    ("2.0rc1", "2.0.0rc1", Less),
    ("1.0.0-1", "1.0-1", Greater),
    ("5.0.002-1", "5.0.2-1", Equal),
    ("1:1.8.2-1", "1.8.3-1", Greater),
    ("6.1_p20190601-1", "6.1_p20190518-1", Greater),
    ("1.16.1-1", "1.16-1", Greater),
    ("2.69-5", "2.69-5.1", Less),
    ("git", "git", Equal),
    ("1.0git", "1.0", Less),
    ("1.0", "1.0p1", Greater),
    ("1.0p1", "1.0.1", Less),
    ("1.0rc1", "1.0r", Greater),
    ("1.0-1", "1.0-1a", Greater),
    ("1.0-a", "1.0-1", Less),
    ("1:", "1", Greater),
    ("1.0~1", "1.0.1", Equal),
    ("1.0-1-1", "1.0-1", Greater),
];

/// What the `vercmp` binary says about `a` versus `b`.
fn real_vercmp(a: &str, b: &str) -> Ordering {
    let output = Command::new("vercmp")
        .arg(a)
        .arg(b)
        .output()
        .expect("running vercmp");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: i32 = stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "vercmp {a:?} {b:?} exited {} and printed {stdout:?}",
            output.status
        )
    });
    answer.cmp(&0)
}

/// The binary's answers for all pairs, in order, from a few threads.
fn real_vercmp_all(pairs: &[(String, String)]) -> Vec<Ordering> {
    let chunk = pairs.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .chunks(chunk)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(a, b)| real_vercmp(a, b))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a vercmp thread panicked"))
            .collect()
    })
}

#[test]
fn edge_cases_order_as_pacman_does() {
    assert!(EDGE_CASES.len() >= 60);
    for &(a, b, want) in EDGE_CASES {
        assert_eq!(vercmp(a, b), want, "vercmp({a:?}, {b:?})");
        assert_eq!(vercmp(b, a), want.reverse(), "vercmp({b:?}, {a:?})");
    }
    // The expectations themselves come from the binary; re-check them where
    // it is installed so the table cannot drift from pacman.
    if !require_binary("vercmp") {
        return;
    }
    let pairs: Vec<(String, String)> = EDGE_CASES
        .iter()
        .flat_map(|&(a, b, _)| [(a.to_owned(), b.to_owned()), (b.to_owned(), a.to_owned())])
        .collect();
    let real = real_vercmp_all(&pairs);
    for (&(a, b, want), answers) in EDGE_CASES.iter().zip(real.chunks(2)) {
        assert_eq!(
            answers,
            [want, want.reverse()],
            "pacman's vercmp on {a:?} {b:?}"
        );
    }
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn epoch() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => Just(":".to_owned()),
        2 => "[0-9]{1,2}:",
        1 => "0{1,3}[0-9]?:",
        // A letter before the colon makes it part of the version instead.
        1 => "[0-9]?[a-z]:",
    ]
    .boxed()
}

fn segment() -> BoxedStrategy<String> {
    prop_oneof![
        5 => "[0-9]{1,3}",
        2 => "0{1,3}[0-9]{0,2}",
        1 => "[0-9]{18,24}",
        3 => select(owned(&[
            "a", "b", "z", "rc", "alpha", "beta", "pre", "git", "r", "g", "p", "dev", "post",
            "RC", "Beta",
        ])),
        2 => "[a-z]{1,3}[0-9]{0,3}",
        2 => "[0-9]{1,2}[a-z]{1,3}[0-9]{0,2}",
        1 => "[0-9a-f]{7}",
    ]
    .boxed()
}

fn separator() -> BoxedStrategy<String> {
    prop_oneof![
        8 => Just(".".to_owned()),
        4 => select(owned(&["_", "+", "~", "-", ""])),
        1 => "[._+~-]{2,3}",
        1 => select(owned(&[":", "%", "/"])),
    ]
    .boxed()
}

fn pkgver() -> BoxedStrategy<String> {
    let lead = prop_oneof![8 => Just(String::new()), 1 => separator()];
    let tail = prop_oneof![8 => Just(String::new()), 1 => separator()];
    (
        lead,
        segment(),
        prop::collection::vec((separator(), segment()), 0..5),
        tail,
    )
        .prop_map(|(lead, first, rest, tail)| {
            let mut v = lead + &first;
            for (sep, seg) in rest {
                v.push_str(&sep);
                v.push_str(&seg);
            }
            v + &tail
        })
        .boxed()
}

/// `git describe`-style versions as VCS packages write them.
fn git_describe() -> BoxedStrategy<String> {
    (
        "[0-9]{1,2}\\.[0-9]{1,2}(\\.[0-9]{1,2})?",
        select(owned(&["+r", ".r", "+", ".", "_r", "+git"])),
        "[0-9]{1,4}",
        select(owned(&["+g", ".g", ".", "+"])),
        "[0-9a-f]{4,8}",
    )
        .prop_map(|(base, before_count, count, before_hash, hash)| {
            format!("{base}{before_count}{count}{before_hash}{hash}")
        })
        .boxed()
}

fn pkgrel() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just(String::new()),
        4 => "-[1-9][0-9]?",
        2 => "-[0-9]\\.[0-9]{1,2}",
        1 => select(owned(&["-", "-0", "-01", "-1a", "-a", "-1-1", "-1.0.1"])),
    ]
    .boxed()
}

fn version() -> BoxedStrategy<String> {
    prop_oneof![
        8 => (epoch(), prop_oneof![3 => pkgver(), 1 => git_describe()], pkgrel())
            .prop_map(|(epoch, pkgver, pkgrel)| epoch + &pkgver + &pkgrel),
        // Anything at all from the characters that matter.
        1 => "[0-9a-zA-Z.:_+~-]{0,12}",
        1 => select(EDGE_CASES.iter().flat_map(|&(a, b, _)| [a, b]).map(str::to_owned).collect::<Vec<_>>()),
    ]
    .boxed()
}

/// One small edit, so the two sides of a pair differ in one place.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, char),
    Insert(Index, char),
    Delete(Index),
    Append(String),
    Prepend(String),
    Truncate(Index),
    Duplicate(Index),
}

fn edit() -> BoxedStrategy<Edit> {
    let ch = select("0123456789abgrz.-_+~:".chars().collect::<Vec<_>>());
    prop_oneof![
        3 => (any::<Index>(), ch.clone()).prop_map(|(at, c)| Edit::Replace(at, c)),
        2 => (any::<Index>(), ch).prop_map(|(at, c)| Edit::Insert(at, c)),
        2 => any::<Index>().prop_map(Edit::Delete),
        2 => select(owned(&["-1", ".1", "a", "1", "rc1", "-1.1", "+r1", ".0", "_1", "~1", "-"]))
            .prop_map(Edit::Append),
        1 => select(owned(&["1:", "0:", ":", "01:", "2:"])).prop_map(Edit::Prepend),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => any::<Index>().prop_map(Edit::Duplicate),
    ]
    .boxed()
}

/// Applies `edits` to an ASCII version (all generated ones are).
fn apply(version: &str, edits: &[Edit]) -> String {
    let mut v: Vec<char> = version.chars().collect();
    for edit in edits {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
        match edit {
            Edit::Replace(i, c) if !v.is_empty() => {
                let i = at(i, v.len());
                v[i] = *c;
            }
            Edit::Insert(i, c) => v.insert(at(i, v.len() + 1), *c),
            Edit::Delete(i) if !v.is_empty() => {
                v.remove(at(i, v.len()));
            }
            Edit::Append(s) => v.extend(s.chars()),
            Edit::Prepend(s) => v.splice(0..0, s.chars()).for_each(drop),
            Edit::Truncate(i) => v.truncate(at(i, v.len() + 1)),
            Edit::Duplicate(i) if !v.is_empty() => {
                let i = at(i, v.len());
                v.insert(i, v[i]);
            }
            _ => {}
        }
    }
    v.into_iter().collect()
}

fn pair() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        3 => (version(), version()),
        5 => (version(), prop::collection::vec(edit(), 1..4), any::<bool>()).prop_map(
            |(a, edits, swap)| {
                let b = apply(&a, &edits);
                if swap { (b, a) } else { (a, b) }
            }
        ),
        // Shared prefixes: the comparison runs deep before it decides.
        2 => (version(), pkgver(), pkgver()).prop_map(|(prefix, x, y)| {
            (format!("{prefix}.{x}"), format!("{prefix}.{y}"))
        }),
        1 => version().prop_map(|a| (a.clone(), a)),
    ]
    // vercmp takes a first argument of -h or --help as a request for help.
    .prop_filter("vercmp's help flags", |(a, _)| a != "-h" && a != "--help")
    .boxed()
}

#[test]
fn generated_pairs_order_as_pacman_does() {
    if !require_binary("vercmp") {
        return;
    }
    let config = ProptestConfig {
        cases: CASES,
        // Failures are kept next to this file
        // (vercmp_differential.proptest-regressions), to be committed.
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        // A batch has a fixed length, so shrinking can only simplify its
        // strings one by one, at a batch of processes per step: bound it. The
        // failure message names the disagreeing pairs either way.
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    };
    let pairs = prop::collection::vec(pair(), PAIRS_PER_CASE);
    let result = TestRunner::new(config).run(&pairs, |pairs| {
        let real = real_vercmp_all(&pairs);
        let disagreements: Vec<String> = pairs
            .iter()
            .zip(&real)
            .filter(|((a, b), real)| vercmp(a, b) != **real)
            .map(|((a, b), real)| {
                format!(
                    "({a:?}, {b:?}): pacman {real:?}, pacsync {:?}",
                    vercmp(a, b)
                )
            })
            .collect();
        if disagreements.is_empty() {
            Ok(())
        } else {
            // Printed before shrinking hides all but one.
            eprintln!("vercmp disagreements:\n{}", disagreements.join("\n"));
            Err(TestCaseError::fail(disagreements.join("\n")))
        }
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
