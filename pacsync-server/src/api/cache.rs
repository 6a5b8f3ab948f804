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
//!
//! A page past its time-to-live whose counter is still current is served
//! as it is while one render in the background replaces it, up to twice
//! its time-to-live: a request never waits for a page merely because time
//! passed. Requests that find no servable page wait for the one render of
//! it under the current counter, if one is under way, rather than each
//! making it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::store::changes::Generations;

/// How long a list page is served as made: the `last_seen_at` of machines
/// reporting an unchanged state bumps no counter, so past this a page is
/// made again. Everything else a page shows is current.
pub const PAGE_TTL: Duration = Duration::from_secs(1);
/// How long a page is served at most, counted from when its render began
/// (before it read rows): between [`PAGE_TTL`] and this, while its counter
/// is current, the page is served as it is and one render in the
/// background replaces it. So a page may show `last_seen_at` this late.
pub const PAGE_STALE_MAX: Duration = Duration::from_secs(2);
/// How many lists' totals (one per filter) are kept at most.
const TOTALS_MAX: usize = 1024;
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
            pages: PageCache::new(generations.clone(), PAGE_TTL, PAGE_STALE_MAX),
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
    /// When the render that made it took its counter, before it read rows.
    made: Instant,
    /// Which page this is (the count in its entity tag).
    serial: u64,
    page: CachedPage,
}

/// A render of a page under way: requests for the same page under the
/// same counter wait for it rather than render it again.
#[derive(Debug)]
struct Flight {
    id: u64,
    generation: u64,
    started: Instant,
    done: watch::Receiver<Option<CachedPage>>,
}

/// The total of a list under one filter, which only a change the counter
/// sees can move.
#[derive(Debug)]
struct Total {
    generation: u64,
    made: Instant,
    total: i64,
}

#[derive(Debug, Default)]
struct Pages {
    entries: HashMap<String, PageEntry>,
    flights: HashMap<String, Flight>,
    totals: HashMap<String, Total>,
    bytes: usize,
    next_flight: u64,
}

fn lock(pages: &Mutex<Pages>) -> MutexGuard<'_, Pages> {
    pages.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a request for a page does.
#[derive(Debug)]
pub enum Lookup {
    /// Serves this page.
    Hit(CachedPage),
    /// Serves this page, which is past its time-to-live, and has `Render`
    /// make its successor in the background: the only render of that page.
    Stale(CachedPage, Render),
    /// Waits for the page another request is making under the current
    /// counter.
    Wait(Wait),
    /// Makes the page itself (nothing servable, and nobody making it).
    Render(Render),
}

/// The right and duty to make one page. Made pages are handed to
/// [`PageCache::complete`]; a render dropped without (it failed, or its
/// request went away) lets the requests waiting for it render themselves,
/// and retires the stale page it was to replace, so that the next request
/// renders rather than being served that page again.
#[derive(Debug)]
pub struct Render {
    pages: Arc<Mutex<Pages>>,
    key: String,
    generation: u64,
    started: Instant,
    flight: u64,
    /// The serial of the stale page this render replaces.
    replaces: Option<u64>,
    done: watch::Sender<Option<CachedPage>>,
    completed: bool,
}

impl Render {
    /// The counter the page is made under: taken before the rows are read,
    /// so a write that commits meanwhile leaves the page unserved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the render started (the page's age counts from here).
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for Render {
    fn drop(&mut self) {
        let mut pages = lock(&self.pages);
        if pages.flights.get(&self.key).map(|f| f.id) == Some(self.flight) {
            pages.flights.remove(&self.key);
        }
        if !self.completed
            && let Some(serial) = self.replaces
            && pages.entries.get(&self.key).map(|e| e.serial) == Some(serial)
            && let Some(old) = pages.entries.remove(&self.key)
        {
            pages.bytes -= old.page.body.len();
        }
    }
}

/// A page another request is making.
#[derive(Debug)]
pub struct Wait {
    done: watch::Receiver<Option<CachedPage>>,
}

impl Wait {
    /// The page, or `None` if its render failed.
    pub async fn page(mut self) -> Option<CachedPage> {
        self.done
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|page| page.clone())
    }
}

/// Whole pages of a list by their query.
#[derive(Debug)]
pub struct PageCache {
    generations: Arc<Generations>,
    ttl: Duration,
    stale_max: Duration,
    pages: Arc<Mutex<Pages>>,
    /// Entity tags are this process's nonce and a count of pages made, so
    /// no two different bodies ever share one, across restarts and replicas.
    nonce: u64,
    made: AtomicU64,
}

impl PageCache {
    /// Pages served as made for `ttl`, and while one render replaces them
    /// until `stale_max`.
    pub fn new(generations: Arc<Generations>, ttl: Duration, stale_max: Duration) -> PageCache {
        let mut nonce = [0u8; 8];
        // Without OS randomness, the time still tells restarts apart.
        if getrandom::fill(&mut nonce).is_err() {
            nonce = crate::store::now_ms().to_le_bytes();
        }
        PageCache {
            generations,
            ttl,
            stale_max,
            pages: Arc::default(),
            nonce: u64::from_le_bytes(nonce),
            made: AtomicU64::new(0),
        }
    }

    /// The counter to make a page under outside [`PageCache::lookup`]:
    /// taken before reading the database, so a write that commits
    /// meanwhile leaves the page unserved.
    pub fn generation(&self) -> u64 {
        self.generations.listed()
    }

    /// What a request for page `key` at `now` does. A page made under an
    /// older counter than the current one is never served, nor waited for.
    pub fn lookup(&self, key: &str, now: Instant) -> Lookup {
        let current = self.generations.listed();
        let mut pages = lock(&self.pages);
        let mut stale = None;
        if let Some(e) = pages.entries.get(key)
            && e.generation == current
        {
            let age = now.saturating_duration_since(e.made);
            if age < self.ttl {
                return Lookup::Hit(e.page.clone());
            }
            if age < self.stale_max {
                stale = Some((e.page.clone(), e.serial));
            }
        }
        if let Some(f) = pages.flights.get(key)
            && f.generation == current
            && !f.done.is_closed()
            && now.saturating_duration_since(f.started) < self.stale_max
        {
            return match stale {
                Some((page, _)) => Lookup::Hit(page),
                None => Lookup::Wait(Wait {
                    done: f.done.clone(),
                }),
            };
        }
        pages.next_flight += 1;
        let id = pages.next_flight;
        let (done, rx) = watch::channel(None);
        pages.flights.insert(
            key.to_owned(),
            Flight {
                id,
                generation: current,
                started: now,
                done: rx,
            },
        );
        let render = Render {
            pages: self.pages.clone(),
            key: key.to_owned(),
            generation: current,
            started: now,
            flight: id,
            replaces: stale.as_ref().map(|(_, serial)| *serial),
            done,
            completed: false,
        };
        match stale {
            Some((page, _)) => Lookup::Stale(page, render),
            None => Lookup::Render(render),
        }
    }

    /// Keeps the page `render` made and hands it to whoever waits for it.
    pub fn complete(&self, mut render: Render, body: Bytes) -> CachedPage {
        let page = self.insert(render.key.clone(), render.generation, render.started, body);
        render.done.send_replace(Some(page.clone()));
        render.completed = true;
        page
    }

    /// Keeps `body`, made under `generation` by a render started at
    /// `made`, and returns it as a page. A page made later, or under a
    /// later counter, is not replaced by it.
    pub fn insert(&self, key: String, generation: u64, made: Instant, body: Bytes) -> CachedPage {
        let serial = self.made.fetch_add(1, Ordering::Relaxed);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{serial:x}\"", self.nonce))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let page = CachedPage { body, etag };
        let size = page.body.len();
        if size > PAGE_BYTES_MAX / 4 {
            return page;
        }
        let mut pages = lock(&self.pages);
        if let Some(old) = pages.entries.get(&key) {
            if (old.generation, old.made) > (generation, made) {
                return page;
            }
            let old = old.page.body.len();
            pages.entries.remove(&key);
            pages.bytes -= old;
        }
        if pages.bytes + size > PAGE_BYTES_MAX {
            // Dead entries first, then the oldest until the page fits.
            let (current, stale_max) = (self.generations.listed(), self.stale_max);
            pages.entries.retain(|_, e| {
                e.generation == current && made.saturating_duration_since(e.made) < stale_max
            });
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
                made,
                serial,
                page: page.clone(),
            },
        );
        page
    }

    /// The total of the list under `filter` as counted under `generation`
    /// less than a time-to-live before `now`, if known.
    pub fn total(&self, filter: &str, generation: u64, now: Instant) -> Option<i64> {
        let pages = lock(&self.pages);
        let t = pages.totals.get(filter)?;
        (t.generation == generation && now.saturating_duration_since(t.made) < self.ttl)
            .then_some(t.total)
    }

    /// Keeps the total of the list under `filter`, counted under
    /// `generation` by a render started at `made`.
    pub fn keep_total(&self, filter: String, generation: u64, made: Instant, total: i64) {
        let mut pages = lock(&self.pages);
        if pages.totals.len() >= TOTALS_MAX {
            pages.totals.clear();
        }
        if let Some(old) = pages.totals.get(&filter)
            && (old.generation, old.made) > (generation, made)
        {
            return;
        }
        pages.totals.insert(
            filter,
            Total {
                generation,
                made,
                total,
            },
        );
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

    /// The page `lookup` serves at once, if any.
    fn served(c: &PageCache, key: &str, now: Instant) -> Option<Bytes> {
        match c.lookup(key, now) {
            Lookup::Hit(p) | Lookup::Stale(p, _) => Some(p.body),
            Lookup::Wait(_) | Lookup::Render(_) => None,
        }
    }

    fn made(c: &PageCache, key: &str, now: Instant, body: &'static [u8]) -> CachedPage {
        c.insert(key.into(), c.generation(), now, Bytes::from_static(body))
    }

    #[test]
    fn a_page_lives_until_what_it_shows_changes() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g.clone(), LONG, LONG * 2);
        let now = Instant::now();
        let first = made(&c, "p1", now, b"[1]");
        assert_eq!(served(&c, "p1", now), Some(Bytes::from_static(b"[1]")));
        g.bump(Touched::Nothing);
        assert!(
            served(&c, "p1", now).is_some(),
            "last_seen_at alone keeps pages"
        );
        g.bump(Touched::Listed);
        assert!(served(&c, "p1", now).is_none(), "a change retires the page");
        // A page read before a change committed is not served after it.
        let stale = c.generation() - 1;
        c.insert("p1".into(), stale, now, Bytes::from_static(b"[0]"));
        assert!(served(&c, "p1", now).is_none());
        let second = made(&c, "p1", now, b"[2]");
        assert_ne!(first.etag(), second.etag());
    }

    #[test]
    fn pages_expire() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g, Duration::ZERO, Duration::ZERO);
        let now = Instant::now();
        made(&c, "p", now, b"{}");
        assert!(served(&c, "p", now).is_none());
    }

    #[tokio::test]
    async fn an_expired_page_is_served_while_one_render_replaces_it() {
        let g = Arc::new(Generations::default());
        let ttl = Duration::from_secs(1);
        let c = PageCache::new(g.clone(), ttl, ttl * 2);
        let t0 = Instant::now();
        made(&c, "p", t0, b"[1]");
        let Lookup::Hit(_) = c.lookup("p", t0 + ttl / 2) else {
            panic!("a young page is served as it is");
        };
        // Past its time-to-live: served, and the first request to see that
        // gets the one render of its successor; the others only the page.
        let later = t0 + ttl + ttl / 4;
        let Lookup::Stale(page, render) = c.lookup("p", later) else {
            panic!("an expired page is served while it is made again");
        };
        assert_eq!(page.body, Bytes::from_static(b"[1]"));
        assert_eq!(render.generation(), c.generation());
        for _ in 0..3 {
            let Lookup::Hit(page) = c.lookup("p", later) else {
                panic!("one render at a time");
            };
            assert_eq!(page.body, Bytes::from_static(b"[1]"));
        }
        let fresh = c.complete(render, Bytes::from_static(b"[2]"));
        // The new page counts its age from when its render started.
        let Lookup::Hit(page) = c.lookup("p", later + ttl / 2) else {
            panic!("the new page is served");
        };
        assert_eq!(page.body, Bytes::from_static(b"[2]"));
        assert_eq!(page.etag(), fresh.etag());

        // Past twice the time-to-live, the request renders the page itself.
        let Lookup::Render(render) = c.lookup("p", later + 2 * ttl) else {
            panic!("too old a page is not served");
        };
        drop(render);

        // A render that fails retires the page it was to replace.
        let t1 = later + 3 * ttl;
        made(&c, "p", t1, b"[3]");
        let Lookup::Stale(_, render) = c.lookup("p", t1 + ttl) else {
            panic!("expired page");
        };
        drop(render);
        let Lookup::Render(_) = c.lookup("p", t1 + ttl) else {
            panic!("after a failed render, the request renders");
        };
    }

    #[tokio::test]
    async fn a_page_under_an_old_counter_is_never_served_nor_waited_for() {
        let g = Arc::new(Generations::default());
        let ttl = Duration::from_secs(1);
        let c = PageCache::new(g.clone(), ttl, ttl * 2);
        let t0 = Instant::now();
        made(&c, "p", t0, b"[1]");
        let Lookup::Stale(_, render) = c.lookup("p", t0 + ttl) else {
            panic!("expired page");
        };
        // A write commits while the page is made again: neither the old
        // page nor the render under way is served.
        g.bump(Touched::Listed);
        let Lookup::Render(current) = c.lookup("p", t0 + ttl) else {
            panic!("the request renders under the new counter");
        };
        assert_eq!(current.generation(), render.generation() + 1);
        // Others wait for that render, not the older one.
        let Lookup::Wait(wait) = c.lookup("p", t0 + ttl) else {
            panic!("one render per counter");
        };
        c.complete(render, Bytes::from_static(b"[old]"));
        assert!(served(&c, "p", t0 + ttl).is_none(), "old counter");
        c.complete(current, Bytes::from_static(b"[new]"));
        let page = wait.page().await.expect("the render it waited for");
        assert_eq!(page.body, Bytes::from_static(b"[new]"));
        assert_eq!(
            served(&c, "p", t0 + ttl),
            Some(Bytes::from_static(b"[new]"))
        );
        // The older render, finishing last, does not replace the newer page.
        c.insert("p".into(), 0, t0, Bytes::from_static(b"[older]"));
        assert_eq!(
            served(&c, "p", t0 + ttl),
            Some(Bytes::from_static(b"[new]"))
        );
    }

    #[tokio::test]
    async fn waiting_requests_render_themselves_when_the_render_fails() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g, LONG, LONG * 2);
        let now = Instant::now();
        let Lookup::Render(render) = c.lookup("p", now) else {
            panic!("nothing cached");
        };
        let Lookup::Wait(wait) = c.lookup("p", now) else {
            panic!("a render is under way");
        };
        drop(render);
        assert!(wait.page().await.is_none());
        let Lookup::Render(_) = c.lookup("p", now) else {
            panic!("the failed render is forgotten");
        };
    }

    #[test]
    fn totals_are_kept_under_their_counter() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g.clone(), LONG, LONG * 2);
        let now = Instant::now();
        let made = c.generation();
        c.keep_total("/".into(), made, now, 7);
        assert_eq!(c.total("/", made, now), Some(7));
        assert_eq!(c.total("pool/", made, now), None);
        assert_eq!(c.total("/", made, now + LONG), None, "expired");
        g.bump(Touched::Listed);
        assert_eq!(c.total("/", c.generation(), now), None);
    }

    #[test]
    fn pages_stay_within_their_byte_budget() {
        let g = Arc::new(Generations::default());
        let c = PageCache::new(g, LONG, LONG * 2);
        let now = Instant::now();
        let body = Bytes::from(vec![b' '; PAGE_BYTES_MAX / 8]);
        for i in 0..64 {
            c.insert(format!("p{i}"), c.generation(), now, body.clone());
        }
        let pages = lock(&c.pages);
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
        let c = PageCache::new(g, LONG, LONG * 2);
        let page = made(&c, "p", Instant::now(), b"{}");
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
