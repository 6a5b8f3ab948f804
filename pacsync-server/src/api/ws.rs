//! `GET /api/ws`: the push channel. Machines hear of their pool's target
//! and policy changing and of operations requested for them; admin
//! clients (viewer and up) hear of machines' status changes and of
//! operations' progress. Messages are JSON text `{"type": …}`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::principal::{authenticate, bearer};
use super::{ApiError, ApiResult, AppState, Query};
use crate::auth::{Principal, Role};
use crate::events::{Pushed, Scope};
use crate::store::endpoints;

/// How often the server pings; a client that answered none of the last
/// two pings is gone.
pub const PING_EVERY: Duration = Duration::from_secs(20);

/// The push channel's messages are a few hundred bytes each way, and
/// 10,000 machines may hold a socket each: per-socket buffers stay small
/// (tungstenite's defaults reserve 128 KiB for reading up front).
const READ_BUFFER: usize = 4 * 1024;
/// Frames are written out as they come (each send flushes anyway).
const WRITE_BUFFER: usize = 0;
/// What a client may send; it has nothing big to say.
const MAX_MESSAGE: usize = 64 * 1024;
/// What may queue for a client that does not read.
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// Close codes in the private range: the client should get a new token
/// (4001) or simply reconnect (1001, the server is going away).
const CLOSE_TOKEN_EXPIRED: u16 = 4001;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_UNRESPONSIVE: u16 = 4002;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    /// For browsers, which cannot set headers on a WebSocket request.
    access_token: Option<String>,
}

pub async fn connect(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let token = bearer(&headers)
        .or(q.access_token)
        .or_else(|| crate::web::session::cookie_token(&headers))
        .ok_or_else(|| ApiError::unauthorized("missing bearer token or access_token"))?;
    let (who, expires) = authenticate(&app, token.clone()).await?;
    if !matches!(who, Principal::Machine { .. }) {
        who.require(Role::Viewer)?;
    }
    let upgrade =
        upgrade.map_err(|r| ApiError::new(r.status(), "websocket_required", r.body_text()))?;
    let pool = match &who {
        Principal::Machine { endpoint_id } => {
            let id = endpoint_id.clone();
            app.store
                .run(move |conn| endpoints::get(conn, &id))
                .await?
                .pool_id
        }
        Principal::User { .. } | Principal::Token { .. } => None,
    };
    // Users' and API tokens' sessions end with their credential (logout,
    // password reset, deletion, revocation); machines are many, and end
    // with their short-lived token.
    let recheck = (!matches!(who, Principal::Machine { .. })).then_some(token);
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| session(app, who, pool, expires, recheck, socket)))
}

/// What a session needs to pick its events.
struct Listener {
    who: Principal,
    /// The machine's pool, followed as the machine moves.
    pool: Option<String>,
}

impl Listener {
    /// Whether `e` is for this session; a machine's own `target_changed`
    /// on a pool move also tells it its new pool.
    fn wants(&mut self, e: &Pushed) -> bool {
        match (&self.who, &e.scope) {
            (_, Scope::All) => true,
            (Principal::User { .. } | Principal::Token { .. }, Scope::Admins | Scope::Pool(_)) => {
                true
            }
            (Principal::User { .. } | Principal::Token { .. }, Scope::Endpoint(_)) => false,
            (Principal::Machine { .. }, Scope::Admins) => false,
            (Principal::Machine { .. }, Scope::Pool(p)) => self.pool.as_deref() == Some(p),
            (Principal::Machine { endpoint_id }, Scope::Endpoint(id)) => {
                if id != endpoint_id {
                    return false;
                }
                if let Some(p) = e.message.get("pool_id") {
                    self.pool = p.as_str().map(str::to_owned);
                }
                true
            }
        }
    }

    fn hello(&self) -> Value {
        match &self.who {
            Principal::Machine { endpoint_id } => {
                json!({ "type": "hello", "endpoint_id": endpoint_id, "pool_id": self.pool })
            }
            Principal::User { name, role, .. } => {
                json!({ "type": "hello", "user": name, "role": role })
            }
            Principal::Token { name, role, .. } => {
                json!({ "type": "hello", "token": name, "role": role })
            }
        }
    }
}

/// `outgoing`, or a close when the session's credential ended or now
/// belongs to someone else (a changed role): checked again only once any
/// credential changed since the last check (`checked`), so mostly free.
async fn still_valid(
    app: &AppState,
    token: &str,
    who: &Principal,
    checked: &mut u64,
    outgoing: Message,
) -> Message {
    let now = app.caches.principals.generation();
    if now == *checked {
        return outgoing;
    }
    *checked = now;
    match authenticate(app, token.to_owned()).await {
        Ok((p, _)) if p == *who => outgoing,
        _ => close(CLOSE_TOKEN_EXPIRED, "session ended; sign in again"),
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn session(
    app: AppState,
    who: Principal,
    pool: Option<String>,
    expires: i64,
    recheck: Option<String>,
    mut socket: WebSocket,
) {
    // Machines and admin clients listen on channels of their own, so a
    // machine does not wake for every other machine's status change.
    let mut events = match who {
        Principal::Machine { .. } => app.store.hub().subscribe_machine(),
        Principal::User { .. } | Principal::Token { .. } => app.store.hub().subscribe_admin(),
    };
    let stop = crate::stopping(app.shutdown.clone());
    tokio::pin!(stop);
    let mut listener = Listener { who, pool };
    let now = crate::store::now_ms() / 1000;
    let left = Duration::from_secs(u64::try_from(expires.saturating_sub(now)).unwrap_or(0));
    let expiry = tokio::time::sleep(left);
    tokio::pin!(expiry);
    let mut ping = tokio::time::interval(PING_EVERY);
    // A session polled late (a busy server) pings once, not in a burst
    // that would count as several unanswered pings at once.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut unanswered = 0u32;
    let mut checked = app.caches.principals.generation();
    if socket
        .send(Message::Text(listener.hello().to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let outgoing = tokio::select! {
            e = events.recv() => match e {
                Ok(e) if listener.wants(&e) => Message::Text(e.text.clone()),
                Ok(_) => continue,
                // Fell behind: what was missed is gone, so the client
                // reloads what it shows.
                Err(RecvError::Lagged(_)) => Message::Text(json!({ "type": "resync" }).to_string().into()),
                Err(RecvError::Closed) => close(CLOSE_GOING_AWAY, "server shutting down"),
            },
            m = socket.recv() => match m {
                // Pings are answered by the WebSocket layer; anything else
                // a client says is ignored, but shows it is there.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => { unanswered = 0; continue; }
            },
            _ = ping.tick() => {
                if unanswered >= 2 {
                    close(CLOSE_UNRESPONSIVE, "no answer to pings")
                } else {
                    unanswered += 1;
                    Message::Ping(axum::body::Bytes::new())
                }
            }
            () = &mut expiry => close(CLOSE_TOKEN_EXPIRED, "token expired; reconnect with a new one"),
            () = &mut stop => close(CLOSE_GOING_AWAY, "server shutting down"),
        };
        let outgoing = match &recheck {
            Some(token) if !matches!(outgoing, Message::Close(_)) => {
                still_valid(&app, token, &listener.who, &mut checked, outgoing).await
            }
            _ => outgoing,
        };
        let closing = matches!(outgoing, Message::Close(_));
        if socket.send(outgoing).await.is_err() || closing {
            return;
        }
    }
}
