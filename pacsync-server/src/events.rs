//! Change notifications for the WebSocket channel.
//!
//! Store functions [`emit`] events while they write; the events of a write
//! transaction are kept aside and leave only when it commits, so a client is
//! never told of a change that was rolled back. On SQLite (one process) they
//! go straight to the in-process [`Hub`]; on PostgreSQL they are sent with
//! `pg_notify` inside the transaction (PostgreSQL delivers them at commit)
//! and every replica's listener ([`crate::pglisten`]) feeds its own hub, so a
//! change made through one replica reaches sockets held by any other.

use std::cell::RefCell;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

/// The PostgreSQL channel the replicas talk on.
pub const PG_CHANNEL: &str = "pacsync_events";
/// `pg_notify` payloads must stay under 8000 bytes.
const PG_PAYLOAD_MAX: usize = 7000;
/// Events a slow socket may fall behind before it is told to resync.
const HUB_CAPACITY: usize = 4096;
/// The same for machines, which hear far fewer events (their pool's, their
/// own).
const MACHINE_HUB_CAPACITY: usize = 256;

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    /// The machines of a pool (and admin clients).
    Pool(String),
    /// One machine.
    Endpoint(String),
    /// Admin clients only.
    Admins,
    /// Everyone connected.
    All,
}

/// One notification: the JSON message sockets receive (`{"type": …}`) and
/// who receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub scope: Scope,
    pub message: Value,
}

/// An event as sessions receive it: serialized once, whatever the number
/// of sockets it goes to, and shared by reference.
#[derive(Debug)]
pub struct Pushed {
    pub scope: Scope,
    pub message: Value,
    pub text: Utf8Bytes,
}

/// The in-process fan-out to WebSocket sessions, on two channels: admin
/// clients hear pool and admin events, machines pool and machine events.
/// A machine's socket thus never wakes for the status change of each other
/// machine (a new target changes thousands at once).
#[derive(Debug, Clone)]
pub struct Hub {
    admins: broadcast::Sender<Arc<Pushed>>,
    machines: broadcast::Sender<Arc<Pushed>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            admins: broadcast::channel(HUB_CAPACITY).0,
            machines: broadcast::channel(MACHINE_HUB_CAPACITY).0,
        }
    }
}

impl Hub {
    pub fn publish(&self, event: Event) {
        let (admins, machines) = match event.scope {
            Scope::All | Scope::Pool(_) => (true, true),
            Scope::Admins => (true, false),
            Scope::Endpoint(_) => (false, true),
        };
        let admins = admins && self.admins.receiver_count() > 0;
        let machines = machines && self.machines.receiver_count() > 0;
        if !admins && !machines {
            return;
        }
        let pushed = Arc::new(Pushed {
            text: event.message.to_string().into(),
            scope: event.scope,
            message: event.message,
        });
        // A receiver gone in between is not an error.
        if admins {
            let _ = self.admins.send(pushed.clone());
        }
        if machines {
            let _ = self.machines.send(pushed);
        }
    }

    /// The events of admin clients: `Pool`, `Admins` and `All`.
    pub fn subscribe_admin(&self) -> broadcast::Receiver<Arc<Pushed>> {
        self.admins.subscribe()
    }

    /// The events of machines: `Pool`, `Endpoint` and `All`.
    pub fn subscribe_machine(&self) -> broadcast::Receiver<Arc<Pushed>> {
        self.machines.subscribe()
    }
}

thread_local! {
    /// The events of the write transaction running on this thread; `None`
    /// outside one. Store calls run on a blocking thread each, one
    /// transaction at a time, so a thread-local is exactly per transaction.
    static PENDING: RefCell<Option<Vec<Event>>> = const { RefCell::new(None) };
}

/// Records an event of the current write transaction (dropped outside one).
pub fn emit(scope: Scope, message: Value) {
    PENDING.with(|p| {
        if let Some(events) = p.borrow_mut().as_mut() {
            events.push(Event { scope, message });
        }
    });
}

/// Starts collecting this thread's events.
pub(crate) fn begin() {
    PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
}

/// Stops collecting and returns what was emitted since [`begin`].
pub(crate) fn take() -> Vec<Event> {
    PENDING.with(|p| p.borrow_mut().take()).unwrap_or_default()
}

/// Runs `f` on what was emitted so far in this transaction, in place.
pub(crate) fn with_pending<T>(f: impl FnOnce(&[Event]) -> T) -> T {
    PENDING.with_borrow(|p| f(p.as_deref().unwrap_or_default()))
}

/// Events as `pg_notify` payloads: JSON arrays, each under the size limit.
pub fn pg_payloads<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for e in events {
        let Ok(text) = serde_json::to_string(e) else {
            continue;
        };
        if !current.is_empty() && current.len() + text.len() + 2 > PG_PAYLOAD_MAX {
            current.push(']');
            out.push(std::mem::take(&mut current));
        }
        current.push(if current.is_empty() { '[' } else { ',' });
        current.push_str(&text);
    }
    if !current.is_empty() {
        current.push(']');
        out.push(current);
    }
    out
}

/// The events of one `pg_notify` payload.
pub fn parse_payload(payload: &str) -> Vec<Event> {
    serde_json::from_str(payload).unwrap_or_else(|e| {
        tracing::warn!("unreadable notification payload: {e}");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_split_under_the_limit_and_read_back() {
        let events: Vec<Event> = (0..500)
            .map(|i| Event {
                scope: Scope::Endpoint(format!("e{i}")),
                message: json!({ "type": "endpoint_status", "status": "behind", "n": i }),
            })
            .collect();
        let payloads = pg_payloads(&events);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < 8000));
        let back: Vec<Event> = payloads.iter().flat_map(|p| parse_payload(p)).collect();
        assert_eq!(back, events);
    }

    #[test]
    fn only_collected_inside_a_transaction() {
        emit(Scope::Admins, json!({}));
        begin();
        emit(Scope::All, json!({ "type": "resync" }));
        let got = take();
        assert_eq!(got.len(), 1);
        emit(Scope::Admins, json!({}));
        assert!(take().is_empty());
    }
}
