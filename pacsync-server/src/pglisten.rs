//! The PostgreSQL side of [`crate::events`]: one dedicated connection per
//! replica that `LISTEN`s on [`PG_CHANNEL`] and feeds every notification
//! into the replica's hub (its own events too: that is how they reach its
//! sockets), and on [`changes::PG_CHANNEL`] for what other replicas' writes
//! changed (the read caches' counters; a replica counts its own writes when
//! they commit and skips their notifications). diesel cannot
//! wait for notifications, so this connection is tokio-postgres's, driven
//! by the server's runtime, with TLS as `DATABASE_URL` asks ([`tls`]).

mod tls;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_postgres::AsyncMessage;

use crate::events::{Event, Hub, PG_CHANNEL, Scope, parse_payload};
use crate::store::changes::{self, Generations, Touched};

/// Pause before reconnecting after the listener connection broke.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Starts listening; returns once `LISTEN` is in force, so nothing
/// committed after this returns is missed. The task then runs until
/// aborted, reconnecting when the connection breaks (and telling every
/// socket to resync, since notifications sent meanwhile are lost).
pub async fn start(
    url: String,
    hub: Hub,
    generations: Arc<Generations>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (rest, options) = tls::split_options(&url)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .context("DATABASE_URL for the notification listener")?;
    let plan = tls::plan(&options)?;
    config.ssl_mode(plan.mode);
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            let connector = plan.connector.clone();
            let result = listen(&config, connector, &hub, &generations, &mut ready).await;
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
    config: &tokio_postgres::Config,
    connector: tls::RustlsConnect,
    hub: &Hub,
    generations: &Generations,
    ready: &mut Option<oneshot::Sender<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    let (client, mut connection) = config
        .connect(connector)
        .await
        .context("connecting the notification listener")?;
    let driver = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == PG_CHANNEL => {
                    // Events come from writes, which changed what lists show.
                    generations.bump(Touched::Listed);
                    for e in parse_payload(n.payload()) {
                        hub.publish(e);
                    }
                }
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == changes::PG_CHANNEL => {
                    generations.bump_notified(n.payload());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => anyhow::bail!("the server closed the listener connection"),
            }
        }
    };
    let subscribe = async {
        client
            .batch_execute(&format!(
                "LISTEN {PG_CHANNEL}; LISTEN {}",
                changes::PG_CHANNEL
            ))
            .await
            .context("LISTEN")?;
        match ready.take() {
            Some(tx) => {
                let _ = tx.send(Ok(()));
            }
            None => {
                // Whatever changed while the connection was down went unheard.
                generations.bump(Touched::Everything);
                hub.publish(Event {
                    scope: Scope::All,
                    message: json!({ "type": "resync" }),
                });
            }
        }
        // Holding the client keeps the connection open.
        std::future::pending::<anyhow::Result<()>>().await
    };
    tokio::select! {
        r = driver => r,
        r = subscribe => r,
    }
}
