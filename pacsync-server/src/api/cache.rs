//! Short-lived caches for the hottest reads: whole serialized list pages,
//! and who a bearer token belongs to.
//!
//! An entry is served only while the change counter it was made under
//! ([`Generations`]) is still current, and for at most its time-to-live.
//! Every committed write bumps the counters of what it may have changed
//! before its request is answered, so this replica never serves an answer
//! older than a write it acknowledged. Other replicas' writes arrive through
//! PostgreSQL notifications (milliseconds); the time-to-live bounds what a
//! lost notification, or a change that bumps nothing (a machine's
//! `last_seen_at`), can leave stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::store::changes::Generations;

/// How long a list page is served unchanged at most: the `last_seen_at`
/// of machines reporting an unchanged state bumps no counter, so a page
/// may show it this much late. Everything else a page shows is current.
pub const PAGE_TTL: Duration = Duration::from_secs(1);
/// Bytes of pages kept; a page of 200 machines is ~70 KB.
const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How long a token's owner is remembered at most: the bound on how late
/// another replica may notice a revocation whose notification was lost.
/// This replica forgets every owner at its own credential changes.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(5);
/// Tokens remembered; past this, forgotten wholesale.
const PRINCIPALS_MAX: usize = 4096;

/// The read caches of one server.
#[derive(Debug)]
pub struct ReadCaches {
    pub pages: PageCache,
    pub principals: PrincipalCache,
}

impl ReadCaches {
    pub fn new(generations: Arc<Generations>) -> ReadCaches {
        ReadCaches {
            pages: PageCache::new(generations.clone(), PAGE_TTL),
            principals: PrincipalCache::new(generations, PRINCIPAL_TTL),
        }
    }
}

/// A serialized JSON answer and its entity tag.
#[derive(Debug, Clone)]
pub struct CachedPage {
    body: Bytes,
    etag: HeaderValue,
}

impl CachedPage {
    /// 200 with the body, or 304 when the client holds this very page
    /// (`If-None-Match`).
    pub fn respond(self, request: &HeaderMap) -> Response {
        let ours = self.etag.to_str().unwrap_or_default();
        let held = request
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| matches!(tag.trim(), t if t == ours || t == "*"));
        let mut response = if held {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let mut r = Response::new(Body::from(self.body));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        };
        response.headers_mut().insert(ETAG, self.etag);
        response
    }

    #[cfg(test)]
    fn etag(&self) -> &str {
        self.etag.to_str().unwrap_or_default()
    }
}

#[derive(Debug)]
struct PageEntry {
    generation: u64,
    made: Instant,
    page: CachedPage,
}

#[derive(Debug, Default)]
struct Pages {
    entries: HashMap<String, PageEntry>,
    bytes: usize,
}

/// Whole pages of a list by their query.
#[derive(Debug)]
pub struct PageCache {
    generations: Arc<Generations>,
    ttl: Duration,
    pages: Mutex<Pages>,
    /// Entity tags are this process's nonce and a count of pages made, so
    /// no two different bodies ever share one, across restarts and replicas.
    nonce: u64,
    made: AtomicU64,
}

impl PageCache {
    pub fn new(generations: Arc<Generations>, ttl: Duration) -> PageCache {
        let mut nonce = [0u8; 8];
        // Without OS randomness, the time still tells restarts apart.
        if getrandom::fill(&mut nonce).is_err() {
            nonce = crate::store::now_ms().to_le_bytes();
        }
        PageCache {
            generations,
            ttl,
            pages: Mutex::default(),
            nonce: u64::from_le_bytes(nonce),
            made: AtomicU64::new(0),
        }
    }

    /// The counter to make a page under: taken before reading the database,
    /// so a write that commits meanwhile leaves the page unserved.
    pub fn generation(&self) -> u64 {
        self.generations.listed()
    }

    pub fn get(&self, key: &str) -> Option<CachedPage> {
        let current = self.generations.listed();
        let pages = self.pages.lock().ok()?;
        let e = pages.entries.get(key)?;
        (e.generation == current && e.made.elapsed() < self.ttl).then(|| e.page.clone())
    }

    /// Keeps `body`, made under `generation`, and returns it as a page.
    pub fn insert(&self, key: String, generation: u64, body: Bytes) -> CachedPage {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{n:x}\"", self.nonce))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let page = CachedPage { body, etag };
        let size = page.body.len();
        if size > PAGE_BYTES_MAX / 4 {
            return page;
        }
        let Ok(mut pages) = self.pages.lock() else {
            return page;
        };
        let current = self.generations.listed();
        let ttl = self.ttl;
        if let Some(old) = pages.entries.remove(&key) {
            pages.bytes -= old.page.body.len();
        }
        if pages.bytes + size > PAGE_BYTES_MAX {
            // Dead entries first, then the oldest until the page fits.
            pages
                .entries
                .retain(|_, e| e.generation == current && e.made.elapsed() < ttl);
            let mut live: Vec<(Instant, String)> = pages
                .entries
                .iter()
                .map(|(k, e)| (e.made, k.clone()))
                .collect();
            live.sort();
            let mut bytes: usize = pages.entries.values().map(|e| e.page.body.len()).sum();
            for (_, k) in live {
                if bytes + size <= PAGE_BYTES_MAX {
                    break;
                }
                if let Some(e) = pages.entries.remove(&k) {
                    bytes -= e.page.body.len();
                }
            }
            pages.bytes = bytes;
        }
        pages.bytes += size;
        pages.entries.insert(
            key,
            PageEntry {
                generation,
                made: Instant::now(),
                page: page.clone(),
            },
        );
        page
    }
}

#[derive(Debug)]
struct PrincipalEntry {
    principal: Principal,
    /// Unix seconds the token is valid until.
    until: i64,
    generation: u64,
    made: Instant,
}

/// Who a token belongs to, by the token's sha256 (the token itself is not
/// kept).
#[derive(Debug)]
pub struct PrincipalCache {
    generations: Arc<Generations>,
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], PrincipalEntry>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl PrincipalCache {
    pub fn new(generations: Arc<Generations>, ttl: Duration) -> PrincipalCache {
        PrincipalCache {
            generations,
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The counter to look a token up under (before asking the database).
    pub fn generation(&self) -> u64 {
        self.generations.credentials()
    }

    /// The owner of `token` and until when it is valid, if known and still
    /// valid at `now_secs`.
    pub fn get(&self, token: &str, now_secs: i64) -> Option<(Principal, i64)> {
        let current = self.generations.credentials();
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&key(token))?;
        (e.generation == current && e.made.elapsed() < self.ttl && now_secs < e.until)
            .then(|| (e.principal.clone(), e.until))
    }

    pub fn insert(&self, token: &str, generation: u64, principal: Principal, until: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= PRINCIPALS_MAX {
            let (current, ttl) = (self.generations.credentials(), self.ttl);
            entries.retain(|_, e| e.generation == current && e.made.elapsed() < ttl);
            if entries.len() >= PRINCIPALS_MAX {
                entries.clear();
            }
        }
        entries.insert(
            key(token),
            PrincipalEntry {
                principal,
                until,
                generation,
                made: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::changes::Touched;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn a_page_lives_until_what_it_shows_changes() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g.clone(), LONG);
        let made = c.generation();
        let first = c.insert("p1".into(), made, Bytes::from_static(b"[1]"));
        assert_eq!(
            c.get("p1").map(|p| p.body),
            Some(Bytes::from_static(b"[1]"))
        );
        g.bump(Touched::Nothing);
        assert!(c.get("p1").is_some(), "last_seen_at alone keeps pages");
        g.bump(Touched::Listed);
        assert!(c.get("p1").is_none(), "a change retires the page");
        // A page read before a change committed is not served after it.
        let stale = c.generation() - 1;
        c.insert("p1".into(), stale, Bytes::from_static(b"[0]"));
        assert!(c.get("p1").is_none());
        let second = c.insert("p1".into(), c.generation(), Bytes::from_static(b"[2]"));
        assert_ne!(first.etag(), second.etag());
    }

    #[test]
    fn pages_expire() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g, Duration::ZERO);
        c.insert("p".into(), c.generation(), Bytes::from_static(b"{}"));
        assert!(c.get("p").is_none());
    }

    #[test]
    fn pages_stay_within_their_byte_budget() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g, LONG);
        let body = Bytes::from(vec![b' '; PAGE_BYTES_MAX / 8]);
        for i in 0..64 {
            c.insert(format!("p{i}"), c.generation(), body.clone());
        }
        let pages = c.pages.lock().expect("lock");
        assert!(pages.bytes <= PAGE_BYTES_MAX);
        assert_eq!(
            pages.bytes,
            pages
                .entries
                .values()
                .map(|e| e.page.body.len())
                .sum::<usize>()
        );
        assert!(pages.entries.contains_key("p63"), "the newest page is kept");
    }

    #[test]
    fn if_none_match_answers_304_only_for_the_same_page() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g, LONG);
        let page = c.insert("p".into(), c.generation(), Bytes::from_static(b"{}"));
        let mut h = HeaderMap::new();
        let r = page.clone().respond(&h);
        assert_eq!(r.status(), StatusCode::OK);
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", page.etag())).expect("header"),
        );
        assert_eq!(page.clone().respond(&h).status(), StatusCode::NOT_MODIFIED);
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(page.respond(&h).status(), StatusCode::OK);
    }

    #[test]
    fn owners_are_forgotten_at_credential_changes_and_expiry() {
        let g = Arc::new(Generations::default());
        let c = PrincipalCache::new(g.clone(), LONG);
        let who = Principal::Machine {
            endpoint_id: "e".into(),
        };
        c.insert("t", c.generation(), who.clone(), 100);
        assert_eq!(c.get("t", 50), Some((who.clone(), 100)));
        assert_eq!(c.get("t", 100), None, "expired token");
        assert_eq!(c.get("u", 50), None);
        g.bump(Touched::Listed);
        assert!(c.get("t", 50).is_some(), "lists changing keeps owners");
        g.bump(Touched::Everything);
        assert_eq!(c.get("t", 50), None);
        let stale = c.generation() - 1;
        c.insert("t", stale, who, 100);
        assert_eq!(c.get("t", 50), None);
    }
}
