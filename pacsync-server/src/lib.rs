//! pacsync's central server as a library: [`launch`] serves the API on a
//! listener until a shutdown future completes. `main.rs` is a thin CLI
//! around it, and tests launch it in-process on port 0.

pub mod admin;
pub mod api;
pub mod archive;
pub mod auth;
pub mod events;
pub mod healthcheck;
pub mod logging;
pub mod metrics;
mod pglisten;
pub mod ratelimit;
pub mod settings;
pub mod store;
mod tls;
pub mod uploads;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::AppState;
use crate::ratelimit::{ClientAddr, RateLimiter};
pub use crate::settings::Settings;
use crate::store::Store;

/// How long in-flight requests get to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often old state history is cleaned up (when configured).
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);
/// How often machines past their pool's grace period are marked offline.
const OFFLINE_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A server with its database open and migrated, ready to serve.
pub struct Server {
    state: AppState,
    tls: Option<TlsAcceptor>,
    /// Set to true when shutdown begins; sessions and connections watch it.
    stop: watch::Sender<bool>,
    /// Ends (`None`) when the last [`AppState`] clone is dropped, i.e.
    /// when every connection and WebSocket session is over.
    drained: mpsc::Receiver<()>,
    /// The PostgreSQL notification listener.
    listener_task: Option<tokio::task::JoinHandle<()>>,
    /// `AUTO_CLEANUP_OLD_STATES`.
    cleanup_days: Option<u32>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    /// Opens the database, runs pending migrations, loads keys and TLS.
    pub async fn prepare(settings: Settings) -> anyhow::Result<Server> {
        let store = Store::open(&settings.database)?;
        let migrated = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.migrate())
                .await
                .context("migration task")??
        };
        for m in migrated {
            tracing::info!("applied migration {m}");
        }
        let secret = settings.resolve_jwt_secret()?;
        let tls = match &settings.tls {
            Some(t) => Some(tls::acceptor(t)?),
            None => None,
        };
        let listener_task = match settings.database.kind {
            settings::DatabaseKind::Postgresql => Some(
                pglisten::start(
                    settings.database.url.expose().to_owned(),
                    store.hub().clone(),
                    store.generations().clone(),
                )
                .await?,
            ),
            settings::DatabaseKind::Internal => None,
        };
        let archive = archive::Archive::open(&settings.archive)?;
        let bases = store.bases().clone();
        let uploads = uploads::Uploads::start(std::sync::Arc::new(move |body: &[u8]| {
            api::endpoints::check_content(body, &bases)
        }));
        let (stop, shutdown) = watch::channel(false);
        let (alive, drained) = mpsc::channel(1);
        Ok(Server {
            state: AppState {
                store: store.clone(),
                keys: Arc::new(auth::Keys::new(&secret)),
                metrics: Arc::default(),
                limiter: Arc::new(RateLimiter::new(settings.api_rate_limit)),
                analysis: settings.enable_repository_analysis,
                uploads,
                caches: Arc::new(api::cache::ReadCaches::new(store.generations().clone())),
                archive,
                shutdown,
                alive,
            },
            tls,
            stop,
            drained,
            listener_task,
            cleanup_days: settings.auto_cleanup_old_states,
        })
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish and WebSocket sessions close (up to 30 s)
    /// and closes the pool.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let Server {
            state,
            tls,
            stop,
            mut drained,
            listener_task,
            cleanup_days,
        } = self;
        let sweeper = tokio::spawn(sweep_offline(state.store.clone()));
        let checkpointer = tokio::spawn(store::wal::checkpoint_now_and_then(state.store.clone()));
        tokio::spawn(settle_analysis(state.store.clone(), state.analysis));
        let cleaner =
            cleanup_days.map(|days| tokio::spawn(clean_old_states(state.store.clone(), days)));
        let router = api::router(state);
        let mut http = hyper::server::conn::http1::Builder::new();
        // Slow clients cannot hold a connection open forever by trickling headers.
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            // Bodies stream through in chunks; a smaller read buffer than
            // hyper's ~400 KiB default keeps idle keep-alive connections
            // that once carried a state report from holding that much.
            .max_buf_size(64 * 1024);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a bit
                        // rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let transport = web::session::Transport { tls: tls.is_some() };
            let svc = tower::ServiceExt::map_request(
                router.clone(),
                move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer.ip()));
                    req.extensions_mut().insert(transport);
                    req
                },
            );
            let svc = TowerToHyperService::new(svc);
            let tls = tls.clone();
            let http = http.clone();
            let stop = stop.subscribe();
            tokio::spawn(async move {
                let result = match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => serve_connection(&http, TokioIo::new(s), svc, stop).await,
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake with {peer} failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => serve_connection(&http, TokioIo::new(stream), svc, stop).await,
                };
                if let Err(e) = result {
                    tracing::debug!("connection from {peer} ended: {e}");
                }
            });
        }
        drop(listener);
        tracing::info!("shutting down: finishing in-flight requests");
        sweeper.abort();
        checkpointer.abort();
        if let Some(c) = cleaner {
            c.abort();
        }
        let _ = stop.send(true);
        drop(router);
        tokio::select! {
            _ = drained.recv() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("gave up waiting for connections to close"),
        }
        if let Some(t) = listener_task {
            t.abort();
        }
        Ok(())
    }
}

/// One HTTP/1 connection (with upgrades, for WebSocket), shut down
/// gracefully — the request in flight finishes — once `stop` turns true.
async fn serve_connection<I, S>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    svc: S,
    stop: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stopping(stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Completes once `stop` turns true (or its sender is gone).
pub(crate) async fn stopping(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Starts the server on `listener` and runs it until `shutdown` completes.
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    Server::prepare(settings)
        .await?
        .serve(listener, shutdown)
        .await
}

/// Brings every pool's analysis exclusions in line with the setting at
/// start: recomputed when analysis is on (repositories or targets may have
/// changed while it was off), dropped when it is off.
async fn settle_analysis(store: Store, enabled: bool) {
    let result = store
        .write(move |conn| {
            let pools: Vec<String> = if enabled {
                use diesel::prelude::*;
                store::schema::pools::table
                    .select(store::schema::pools::id)
                    .load(conn)?
            } else {
                store::repos::clear_all(conn)?
            };
            for p in &pools {
                if enabled {
                    store::repos::after_change(conn, p)?;
                } else {
                    store::status::recompute_pool(conn, p)?;
                    store::pools::announce_policy(p);
                }
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("settling repository analysis failed: {e}");
    }
}

/// Removes state history older than `days` (and contents nothing needs)
/// now and then every hour.
async fn clean_old_states(store: Store, days: u32) {
    let mut tick = tokio::time::interval(CLEANUP_EVERY);
    loop {
        tick.tick().await;
        let cutoff = store::now_ms() - i64::from(days) * 24 * 3600 * 1000;
        match store
            .write(move |conn| store::retention::cleanup(conn, cutoff))
            .await
        {
            Ok(c) => tracing::info!(
                "cleanup: {} history rows, {} states, {} targets, {} repositories removed",
                c.history,
                c.states,
                c.targets,
                c.repositories
            ),
            Err(e) => tracing::warn!("cleanup of old states failed: {e}"),
        }
    }
}

async fn sweep_offline(store: Store) {
    let mut tick = tokio::time::interval(OFFLINE_SWEEP_EVERY);
    loop {
        tick.tick().await;
        let sweep = |conn: &mut store::DbConnection| {
            let n = store::status::sweep_offline(conn)?;
            let touched = if n == 0 {
                store::changes::Touched::Nothing
            } else {
                store::changes::Touched::Listed
            };
            Ok((n, touched))
        };
        match store.write_touching(sweep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("{n} machines went offline"),
            Err(e) => tracing::warn!("offline sweep failed: {e}"),
        }
    }
}
