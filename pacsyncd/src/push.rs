//! Following the server's push channel (`GET /api/ws`).
//!
//! The server tells the machine when its pool's target or policy changed
//! and when an operator asked for a sync or revert of it. A target change
//! is fetched at once, so `Status` and `Target` move without a Refresh; a
//! requested operation runs like one started over D-Bus, reporting its
//! progress and result to the server's operation. A channel that drops —
//! server restart, network loss, an expired token — is opened again with
//! exponential backoff and jitter, and whatever was missed meanwhile is
//! caught up by a report and a look at the operations still queued.
//!
//! The pool's `auto_sync` flag is not shown to machines; an operator's
//! request is taken as the permission. A machine's owner may refuse all
//! requests with `accept_remote_operations = false`: they are then
//! reported failed, naming that setting.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::daemon::Daemon;
use crate::operation::{self, Kind};
use crate::server::{RemoteOperation, ServerClient, ServerError};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The server pings every 20 s: this long without a word means the
/// connection is dead even if TCP has not noticed.
const SILENCE_LIMIT: Duration = Duration::from_secs(65);

#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("{0}")]
    Socket(#[from] tungstenite::Error),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("no message from the server in {}s", SILENCE_LIMIT.as_secs())]
    Silent,
}

/// Operations already taken up, so one seen both pushed and in the queued
/// list runs once.
#[derive(Debug, Default)]
struct Seen(Mutex<HashSet<String>>);

impl Seen {
    fn first_time(&self, id: &str) -> bool {
        self.0
            .lock()
            .map(|mut s| s.insert(id.to_owned()))
            .unwrap_or(false)
    }
}

/// The push loop; never returns.
pub async fn run(daemon: Arc<Daemon>) {
    let seen = Arc::new(Seen::default());
    let mut backoff = BACKOFF_START;
    loop {
        // A reset signalled before the client is read below is already
        // reflected in it.
        let _ = futures_util::FutureExt::now_or_never(daemon.push_reset.notified());
        let Some(client) = daemon.client().await else {
            // Not enrolled: wait for Register.
            daemon.push_reset.notified().await;
            continue;
        };
        let mut connected = false;
        match session(&daemon, &client, &seen, &mut connected).await {
            Ok(()) => tracing::info!("push channel closed; connecting again"),
            Err(e) => tracing::warn!("push channel: {e}"),
        }
        if connected {
            backoff = BACKOFF_START;
        }
        // Jitter spreads the reconnections of many machines after a
        // server restart.
        let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 2);
        let wait = backoff + Duration::from_millis(jitter);
        tracing::debug!("push channel: next attempt in {}ms", wait.as_millis());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = daemon.push_reset.notified() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(client: &ServerClient) -> Result<Socket, PushError> {
    for attempt in 0..2 {
        let (url, token) = client.push_endpoint().await;
        let mut request = url.into_client_request()?;
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, bearer);
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => return Ok(socket),
            Err(tungstenite::Error::Http(resp))
                if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 =>
            {
                // The access token expired (the server also closes a
                // session with 4001 when it does).
                client.refresh().await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServerError::Unauthorized("push channel refused after a token refresh".into()).into())
}

async fn session(
    daemon: &Arc<Daemon>,
    client: &Arc<ServerClient>,
    seen: &Arc<Seen>,
    connected: &mut bool,
) -> Result<(), PushError> {
    let mut socket = tokio::select! {
        s = connect(client) => s?,
        () = daemon.push_reset.notified() => return Ok(()),
    };
    *connected = true;
    tracing::info!("push channel open");
    catch_up(daemon, client, seen).await;
    loop {
        let message = tokio::select! {
            m = tokio::time::timeout(SILENCE_LIMIT, socket.next()) => match m {
                Err(_) => return Err(PushError::Silent),
                Ok(None) => return Ok(()),
                Ok(Some(m)) => m?,
            },
            // New credentials or server: start over with them.
            () = daemon.push_reset.notified() => {
                let _ = socket.close(None).await;
                return Ok(());
            }
        };
        match message {
            Message::Text(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v) => handle(daemon, client, seen, &v).await,
                Err(e) => tracing::warn!("push channel: unreadable message: {e}"),
            },
            Message::Close(frame) => {
                if let Some(f) = frame {
                    tracing::info!(code = u16::from(f.code), "push channel: {}", f.reason);
                }
                return Ok(());
            }
            // Pings are answered by the WebSocket layer.
            _ => {}
        }
    }
}

/// After (re)connecting: what the server may have said while nobody was
/// listening.
async fn catch_up(daemon: &Arc<Daemon>, client: &Arc<ServerClient>, seen: &Arc<Seen>) {
    if let Err(e) = crate::reporter::report_once(daemon).await {
        tracing::warn!("report after connecting failed: {e}");
        daemon.report_now.notify_one();
    }
    match client.queued_operations().await {
        Ok(ops) => {
            for op in ops {
                take_up(daemon, seen, op);
            }
        }
        Err(e) => tracing::warn!("cannot list queued operations: {e}"),
    }
}

async fn handle(daemon: &Arc<Daemon>, client: &Arc<ServerClient>, seen: &Arc<Seen>, v: &Value) {
    let kind = v["type"].as_str().unwrap_or_default();
    tracing::debug!(kind, "push channel message");
    match kind {
        "target_changed" | "policy_changed" => {
            if let Err(e) = crate::reporter::report_once(daemon).await {
                tracing::warn!("cannot fetch the new target: {e}");
                daemon.report_now.notify_one();
            }
        }
        "resync" => catch_up(daemon, client, seen).await,
        "operation_requested" => match serde_json::from_value(v["operation"].clone()) {
            Ok(op) => take_up(daemon, seen, op),
            Err(e) => tracing::warn!("push channel: unreadable operation: {e}"),
        },
        "operation_cancelled" => {
            let id = v["operation"]["id"].as_str().unwrap_or_default();
            if !id.is_empty() && daemon.inner.lock().await.operation.id == id {
                tracing::info!(operation = id, "cancelled on the server");
                if let Some(flag) = daemon.cancel.lock().await.as_ref() {
                    flag.cancel();
                }
            }
        }
        _ => {}
    }
}

fn take_up(daemon: &Arc<Daemon>, seen: &Arc<Seen>, op: RemoteOperation) {
    let kind = match op.kind.as_str() {
        "sync" => Kind::Sync,
        "revert" => Kind::Revert,
        _ => return,
    };
    // The machine's own operation registers with the server before it says
    // that it runs, so a catch-up in between lists it as queued; taking it
    // up would meet the operation lock and fail it on the server. It is left
    // alone while an operation runs. One that a daemon which stopped left
    // queued is taken up at a later catch-up, and `refusal` says why not.
    let own = op
        .requested_by
        .as_deref()
        .is_some_and(|r| r.starts_with("machine:"));
    if op.status != "queued" || (own && daemon.operation_running()) || !seen.first_time(&op.id) {
        return;
    }
    tokio::spawn(run_requested(daemon.clone(), kind, op));
}

async fn run_requested(daemon: Arc<Daemon>, kind: Kind, op: RemoteOperation) {
    let who = op.requested_by.as_deref().unwrap_or("an operator");
    tracing::info!(operation = %op.id, kind = kind.as_str(), requested_by = who, "operation requested through the server");
    let result = match refusal(&daemon, kind, &op).await {
        Some(message) => Err(message),
        None => operation::start(
            daemon.clone(),
            kind,
            format!("server: {who}"),
            String::new(),
            Some(op.id.clone()),
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string()),
    };
    if let Err(message) = result {
        tracing::warn!(operation = %op.id, "requested operation not run: {message}");
        if let Some(client) = daemon.client().await
            && let Err(e) = client.progress(&op.id, "failed", 0, &message).await
        {
            tracing::warn!(operation = %op.id, "cannot report the refusal: {e}");
        }
    }
}

/// Why a requested operation must not run, if it must not.
async fn refusal(daemon: &Arc<Daemon>, kind: Kind, op: &RemoteOperation) -> Option<String> {
    // One this machine started itself and was stopped during, before the
    // server heard that it ran (so it is still queued there): its history
    // has it already, and running it again would surprise whoever started it.
    let interrupted = daemon
        .inner
        .lock()
        .await
        .cache
        .history
        .iter()
        .any(|h| h.id == op.id);
    if interrupted {
        return Some(
            "the daemon stopped during this operation; the packages are as pacman left them".into(),
        );
    }
    if !daemon.config.accept_remote_operations {
        return Some(
            "this machine does not run operations requested through the server \
             (accept_remote_operations = false in pacsyncd.toml)"
                .into(),
        );
    }
    // Plan against the target the operator saw.
    if let Err(e) = crate::reporter::report_once(daemon).await {
        return Some(format!("cannot fetch the target: {e}"));
    }
    if kind == Kind::Sync
        && let Some(wanted) = &op.target_hash
    {
        let inner = daemon.inner.lock().await;
        let current = inner.cache.target.as_ref().map(|t| t.info.hash.as_str());
        if current != Some(wanted.as_str()) {
            return Some(
                "the pool's target changed after this sync was requested; request it again".into(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn queued(id: &str, requested_by: &str) -> RemoteOperation {
        RemoteOperation {
            id: id.into(),
            kind: "revert".into(),
            status: "queued".into(),
            requested_by: Some(requested_by.into()),
            target_hash: None,
        }
    }

    /// A catch-up that lists the operation this machine is running (it
    /// registered it, and has not said yet that it runs) leaves it alone,
    /// rather than meeting the operation lock and failing it.
    #[tokio::test]
    async fn the_machines_own_running_operation_is_not_taken_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = Daemon::new(Config {
            state_dir: dir.path().into(),
            ..Config::default()
        })
        .expect("daemon");
        let seen = Arc::new(Seen::default());
        assert!(!daemon.operation_running());
        let guard = daemon
            .operation_lock
            .clone()
            .try_lock_owned()
            .expect("free");
        assert!(daemon.operation_running());
        take_up(&daemon, &seen, queued("own", "machine:m1"));
        assert!(seen.first_time("own"), "taken up while it runs");
        drop(guard);
        assert!(!daemon.operation_running());
    }
}
