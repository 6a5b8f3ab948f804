//! Keeping the server informed, and learning the pool's target from it.
//!
//! A report runs after every change of the local state, on request, and
//! every report interval. While the server is unreachable the daemon keeps
//! serving its cached status (shown as `offline`) and retries with
//! exponential backoff and jitter; nothing is lost, since a report always
//! carries the whole current state.

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::{Daemon, now};
use crate::machine::MachineSnapshot;
use crate::server::ServerError;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Report the current state, then fetch pool and target.
pub async fn report_once(daemon: &Arc<Daemon>) -> Result<(), ServerError> {
    let Some(client) = daemon.client().await else {
        return Ok(());
    };
    let _one_at_a_time = daemon.report_lock.lock().await;
    let (state, repos) = {
        let inner = daemon.inner.lock().await;
        let machine = inner.machine.as_ref();
        (
            machine.map(|m| m.state.clone()),
            machine.map(MachineSnapshot::repo_indexes),
        )
    };
    let result = async {
        if let Some(state) = &state {
            client.report_state(state).await?;
        }
        if let Some(repos) = &repos {
            match client.report_repositories(repos).await {
                Err(e @ ServerError::Unreachable(_)) => return Err(e),
                // The status does not depend on it: report the state anyway.
                Err(e) => tracing::warn!("repository report refused: {e}"),
                Ok(()) => {}
            }
        }
        let endpoint = client.endpoint().await?;
        let target = client.target().await?;
        Ok::<_, ServerError>((endpoint, target))
    }
    .await;
    match result {
        Ok((endpoint, target)) => {
            daemon
                .update(|i| {
                    i.online = true;
                    i.cache.pool = endpoint.pool_name.or(endpoint.pool_id).unwrap_or_default();
                    i.cache.target = target;
                    if let Some(c) = i.credentials.as_mut() {
                        c.machine_name = endpoint.name;
                    }
                    if state.is_some() {
                        i.cache.last_report = now();
                    }
                    i.cache.last_known_status = i.published().last_known_status;
                })
                .await;
            Ok(())
        }
        Err(e) => {
            let unreachable = matches!(e, ServerError::Unreachable(_));
            daemon.update(|i| i.online = !unreachable).await;
            Err(e)
        }
    }
}

/// The reporting loop; never returns.
pub async fn run(daemon: Arc<Daemon>) {
    let mut backoff = BACKOFF_START;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = daemon.report_now.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        match report_once(&daemon).await {
            Ok(()) => {
                backoff = BACKOFF_START;
                wait = daemon.config.report_interval();
            }
            Err(e) => {
                tracing::warn!("report failed: {e}; retrying in {}s", backoff.as_secs());
                // Jitter spreads the retries of many machines after an outage.
                let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 2);
                wait = backoff + Duration::from_millis(jitter);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
