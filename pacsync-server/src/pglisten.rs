//! The PostgreSQL side of [`crate::events`]: one dedicated connection per
//! replica that `LISTEN`s on [`PG_CHANNEL`] and feeds every notification
//! into the replica's hub. diesel cannot wait for notifications, so this
//! connection is tokio-postgres's, driven by the server's runtime.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::events::{Event, Hub, PG_CHANNEL, Scope, parse_payload};

/// Pause before reconnecting after the listener connection broke.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts listening; returns once `LISTEN` is in force, so nothing
/// committed after this returns is missed. The task then runs until
/// aborted, reconnecting when the connection breaks (and telling every
/// socket to resync, since notifications sent meanwhile are lost).
pub async fn start(url: String, hub: Hub) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            let result = listen(&url, &hub, &mut ready).await;
            if let Some(tx) = ready.take() {
                // The first connection failed: prepare reports it.
                let _ = tx.send(result);
                return;
            }
            if let Err(e) = result {
                tracing::warn!("PostgreSQL listener connection lost: {e:#}");
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    });
    match ready_rx.await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => return Err(e),
    }
    if task.is_finished() {
        anyhow::bail!("the PostgreSQL listener stopped at once");
    }
    Ok(task)
}

/// One listener connection, until it breaks. `ready` is answered once
/// `LISTEN` ran (first connection) or, on a reconnect, every socket is
/// told to resync.
async fn listen(
    url: &str,
    hub: &Hub,
    ready: &mut Option<oneshot::Sender<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting the notification listener")?;
    let driver = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == PG_CHANNEL => {
                    for e in parse_payload(n.payload()) {
                        hub.publish(e);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => anyhow::bail!("the server closed the listener connection"),
            }
        }
    };
    let subscribe = async {
        client
            .batch_execute(&format!("LISTEN {PG_CHANNEL}"))
            .await
            .context("LISTEN")?;
        match ready.take() {
            Some(tx) => {
                let _ = tx.send(Ok(()));
            }
            None => hub.publish(Event {
                scope: Scope::All,
                message: json!({ "type": "resync" }),
            }),
        }
        // Holding the client keeps the connection open.
        std::future::pending::<anyhow::Result<()>>().await
    };
    tokio::select! {
        r = driver => r,
        r = subscribe => r,
    }
}
