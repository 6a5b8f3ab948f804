//! Change counters for the read caches of the API (list pages, who a token
//! belongs to). Every committed write transaction says what it may have
//! changed ([`Touched`]); the store bumps the matching counters once it
//! committed, and a cached answer is served only while the counter it was
//! made under is still current. On PostgreSQL the transaction also tells
//! the other replicas ([`PG_CHANNEL`]), whose listeners bump theirs.

use std::sync::atomic::{AtomicU64, Ordering};

/// The PostgreSQL channel on which replicas announce committed changes
/// that sent no event (payload [`Touched::as_payload`]).
pub const PG_CHANNEL: &str = "pacsync_changes";

/// What a write transaction may have changed, as the read caches see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touched {
    /// Nothing a cache holds: a machine's `last_seen_at` alone (lists may
    /// show it up to their time-to-live late), a content stored by hash.
    Nothing,
    /// What lists show (machines, statuses, pools, operations), but no
    /// credential.
    Listed,
    /// Anything, credentials included. What every write is unless it
    /// says otherwise.
    Everything,
}

impl Touched {
    /// The notification payload that tells other replicas.
    pub fn as_payload(self) -> &'static str {
        match self {
            Touched::Nothing => "nothing",
            Touched::Listed => "listed",
            Touched::Everything => "everything",
        }
    }

    /// [`Touched::as_payload`] naming the replica that sent it, when that
    /// replica bumps its own counters (so its listener skips it).
    pub fn as_payload_from(self, origin: Option<&str>) -> String {
        match origin {
            Some(o) => format!("{}:{o}", self.as_payload()),
            None => self.as_payload().to_owned(),
        }
    }

    /// A payload read back, and the replica it names, if any; anything
    /// unknown counts as everything.
    pub fn from_payload_with_origin(payload: &str) -> (Touched, Option<&str>) {
        match payload.split_once(':') {
            Some((touched, origin)) => (Touched::from_payload(touched), Some(origin)),
            None => (Touched::from_payload(payload), None),
        }
    }

    /// A payload read back; anything unknown counts as everything.
    pub fn from_payload(payload: &str) -> Touched {
        match payload {
            "nothing" => Touched::Nothing,
            "listed" => Touched::Listed,
            _ => Touched::Everything,
        }
    }
}

/// The counters. `listed` moves with every change lists show, `credentials`
/// with every change that may affect who a token is.
#[derive(Debug)]
pub struct Generations {
    listed: AtomicU64,
    credentials: AtomicU64,
    /// This replica, as its notifications name it.
    origin: String,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            listed: AtomicU64::new(0),
            credentials: AtomicU64::new(0),
            origin: super::new_id(),
        }
    }
}

impl Generations {
    /// The id this replica's notifications carry.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Called for a notification on [`PG_CHANNEL`]: bumps what another
    /// replica's write changed. A replica's own writes were counted when
    /// they committed; their notifications are skipped.
    pub fn bump_notified(&self, payload: &str) {
        let (touched, origin) = Touched::from_payload_with_origin(payload);
        if origin != Some(self.origin.as_str()) {
            self.bump(touched);
        }
    }

    pub fn listed(&self) -> u64 {
        self.listed.load(Ordering::Acquire)
    }

    pub fn credentials(&self) -> u64 {
        self.credentials.load(Ordering::Acquire)
    }

    /// Called after a commit (or a notification of one): whatever a cache
    /// made before now and depends on `touched` is no longer served.
    pub fn bump(&self, touched: Touched) {
        if touched >= Touched::Listed {
            self.listed.fetch_add(1, Ordering::AcqRel);
        }
        if touched >= Touched::Everything {
            self.credentials.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_what_was_touched() {
        let g = Generations::default();
        g.bump(Touched::Nothing);
        assert_eq!((g.listed(), g.credentials()), (0, 0));
        g.bump(Touched::Listed);
        assert_eq!((g.listed(), g.credentials()), (1, 0));
        g.bump(Touched::Everything);
        assert_eq!((g.listed(), g.credentials()), (2, 1));
        for t in [Touched::Nothing, Touched::Listed, Touched::Everything] {
            assert_eq!(Touched::from_payload(t.as_payload()), t);
        }
        assert_eq!(Touched::from_payload("?"), Touched::Everything);
    }

    #[test]
    fn skips_its_own_notifications() {
        let (a, b) = (Generations::default(), Generations::default());
        assert_ne!(a.origin(), b.origin());
        let own = Touched::Everything.as_payload_from(Some(a.origin()));
        a.bump_notified(&own);
        assert_eq!((a.listed(), a.credentials()), (0, 0));
        b.bump_notified(&own);
        assert_eq!((b.listed(), b.credentials()), (1, 1));
        // Without an origin (a write nobody counted), everyone counts it.
        a.bump_notified(&Touched::Listed.as_payload_from(None));
        assert_eq!((a.listed(), a.credentials()), (1, 0));
        assert_eq!(
            Touched::from_payload_with_origin("listed:x"),
            (Touched::Listed, Some("x"))
        );
    }
}
