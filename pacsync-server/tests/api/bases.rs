//! States compressed against other states (`store::bases`): stored small,
//! read back whole, their bases kept while needed, and stored alone when
//! their base went.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use pacsync_core::state::PackageState;
use pacsync_server::store::{Store, content, now_ms, retention};
use reqwest::StatusCode;

use crate::harness::{Backend, Machine, TestServer, pkg};

crate::on_both_backends!(similar_states_are_stored_against_a_base);
crate::on_both_backends!(a_state_whose_base_went_is_stored_alone);

/// 300 packages named `{set}-NNN`; `bump` gets another release.
fn big(set: &str, bump: usize) -> PackageState {
    (0..300)
        .map(|i| {
            let release = if i == bump { 2 } else { 1 };
            let mut p = pkg(&format!("{set}-{i:03}"), &format!("1.{}-{release}", i % 7));
            p.depends = vec![format!("{set}-{:03}", (i + 31) % 300)];
            p
        })
        .collect()
}

#[derive(Debug, QueryableByName)]
struct Row {
    #[diesel(sql_type = Nullable<Text>)]
    base: Option<String>,
    #[diesel(sql_type = BigInt)]
    size: i64,
}

/// A state's base and its stored size, if it is stored.
async fn stored(store: &Store, s: &PackageState) -> Option<(Option<String>, i64)> {
    let hash = s.content_hash().to_string();
    store
        .run(move |conn| {
            let rows: Vec<Row> = diesel::sql_query(format!(
                "SELECT base, CAST(length(content) AS BIGINT) AS size FROM states \
                 WHERE hash = '{hash}'"
            ))
            .load(conn)?;
            Ok(rows.into_iter().next().map(|r| (r.base, r.size)))
        })
        .await
        .expect("query")
}

/// Reads a state from the database, past the caches.
async fn load(store: &Store, s: &PackageState) -> PackageState {
    let hash = s.content_hash().to_string();
    store
        .run(move |conn| content::load_state(conn, &hash))
        .await
        .expect("readable")
}

async fn cleanup(store: &Store) -> retention::Cleaned {
    // Everything counts as old.
    store
        .write(|conn| retention::cleanup(conn, now_ms() + 3_600_000))
        .await
        .expect("cleanup")
}

/// A server with an admin's token and two machines `a` and `b` in a pool.
async fn two_machines(backend: Backend) -> Option<(TestServer, String, Machine, Machine)> {
    let s = TestServer::start(backend).await?;
    let admin = s.login("admin").await;
    let pool = s.create_pool(&admin, "p").await;
    let a = s.enroll(&admin, Some(&pool), "a").await;
    let b = s.enroll(&admin, Some(&pool), "b").await;
    Some((s, admin, a, b))
}

async fn similar_states_are_stored_against_a_base(backend: Backend) {
    let Some((s, _, a, b)) = two_machines(backend).await else {
        return;
    };
    let store = s.store.clone();
    let (s1, s2) = (big("pkg", 1), big("pkg", 2));
    let h1 = s1.content_hash().to_string();

    assert_eq!(s.report(&a, &s1).await, StatusCode::NO_CONTENT);
    let (base1, size1) = stored(&store, &s1).await.expect("stored");
    assert_eq!(base1, None, "the first state is stored alone");
    assert_eq!(store.bases().offered(), vec![h1.clone()]);

    assert_eq!(s.report(&b, &s2).await, StatusCode::NO_CONTENT);
    let (base2, size2) = stored(&store, &s2).await.expect("stored");
    assert_eq!(
        base2.as_deref(),
        Some(h1.as_str()),
        "stored against the first"
    );
    assert!(
        size2 * 10 < size1,
        "{size2} bytes against a base, {size1} alone"
    );
    assert_eq!(load(&store, &s2).await, s2);
    assert_eq!(load(&store, &s1).await, s1);

    // a moves to a state of other packages: stored alone, a base too.
    let other = big("other", 0);
    assert_eq!(s.report(&a, &other).await, StatusCode::NO_CONTENT);
    assert_eq!(stored(&store, &other).await.map(|r| r.0), Some(None));
    assert_eq!(store.bases().offered().len(), 2);

    // s1 is nobody's state any more, but s2 needs it.
    cleanup(&store).await;
    assert!(stored(&store, &s1).await.is_some(), "a base in use is kept");
    assert_eq!(load(&store, &s2).await, s2);

    // b moves on too: s2 goes, then its base.
    assert_eq!(s.report(&b, &other).await, StatusCode::NO_CONTENT);
    let first = cleanup(&store).await;
    let second = cleanup(&store).await;
    assert_eq!(first.states + second.states, 2, "{first:?} {second:?}");
    assert!(stored(&store, &s2).await.is_none());
    assert!(stored(&store, &s1).await.is_none());
    assert_eq!(load(&store, &other).await, other);
    s.stop().await;
}

async fn a_state_whose_base_went_is_stored_alone(backend: Backend) {
    let Some((s, admin, a, b)) = two_machines(backend).await else {
        return;
    };
    let store = s.store.clone();
    let (s1, s2) = (big("pkg", 1), big("pkg", 2));
    let h1 = s1.content_hash().to_string();
    assert_eq!(s.report(&a, &s1).await, StatusCode::NO_CONTENT);
    assert_eq!(s.report(&a, &big("other", 0)).await, StatusCode::NO_CONTENT);
    // s1 goes while this process still offers it.
    assert_eq!(cleanup(&store).await.states, 1);
    assert!(stored(&store, &s1).await.is_none());
    assert!(store.bases().offered().contains(&h1));

    assert_eq!(s.report(&b, &s2).await, StatusCode::NO_CONTENT);
    assert_eq!(
        stored(&store, &s2).await.map(|r| r.0),
        Some(None),
        "stored alone"
    );
    assert!(!store.bases().offered().contains(&h1), "no longer offered");
    assert_eq!(load(&store, &s2).await, s2);
    let v = s.endpoint(&admin, &b.id).await;
    assert_eq!(v["state_hash"], s2.content_hash().to_string(), "{v}");
    s.stop().await;
}
