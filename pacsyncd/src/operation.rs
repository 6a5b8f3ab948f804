//! Sync, revert and set-latest: from the D-Bus call to the finished signal.

use std::collections::HashMap;
use std::sync::Arc;

use pacsync_core::package::Package;
use pacsync_core::plan::{SyncPlan, plan};
use pacsync_core::state::{PackageState, TargetState};
use pacsync_dbus::{DaemonError, HistoryEntry, OperationInfo, actions};
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use crate::archive;
use crate::daemon::{Daemon, Inner, now};
use crate::executor::{self, ApplyError, CancelFlag};
use crate::machine::MachineSnapshot;
use crate::pacman::Pacman;
use crate::server::{self, ServerError};
use crate::service::DaemonService;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sync,
    Revert,
    SetLatest,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, DaemonError> {
        match s {
            "sync" => Ok(Kind::Sync),
            "revert" => Ok(Kind::Revert),
            "set_latest" | "set-latest" => Ok(Kind::SetLatest),
            other => Err(DaemonError::InvalidArgument(format!(
                "unknown operation {other:?}: expected sync, revert or set_latest"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Revert => "revert",
            Kind::SetLatest => "set_latest",
        }
    }

    pub fn action(self) -> &'static str {
        match self {
            Kind::Sync => actions::SYNC,
            Kind::Revert => actions::REVERT,
            Kind::SetLatest => actions::SET_LATEST,
        }
    }
}

fn needs_pool(inner: &Inner) -> Result<(), DaemonError> {
    if inner.credentials.is_none() {
        return Err(DaemonError::NotRegistered(
            "this machine is not enrolled with a server: run `pacsync register`".into(),
        ));
    }
    if inner.cache.pool.is_empty() {
        return Err(DaemonError::NotInPool("this machine is in no pool".into()));
    }
    Ok(())
}

fn unreadable(inner: &Inner) -> DaemonError {
    DaemonError::Internal(format!(
        "the pacman databases could not be read: {}",
        inner.read_error
    ))
}

/// The plan of `kind`, without doing anything.
pub fn preview(inner: &Inner, kind: Kind) -> Result<SyncPlan, DaemonError> {
    match kind {
        Kind::Sync => {
            needs_pool(inner)?;
            if inner.cache.target.is_none() {
                return Err(DaemonError::NoTarget("the pool has no target yet".into()));
            }
            inner.sync_plan().ok_or_else(|| unreadable(inner))
        }
        Kind::Revert => {
            if inner.cache.before_last_operation.is_none() {
                return Err(DaemonError::InvalidArgument(
                    "nothing to revert: no sync or revert has run on this machine".into(),
                ));
            }
            inner.revert_plan().ok_or_else(|| unreadable(inner))
        }
        Kind::SetLatest => {
            needs_pool(inner)?;
            let machine = inner.machine.as_ref().ok_or_else(|| unreadable(inner))?;
            // What the pool's target would change: the old target seen as a
            // state, planned towards this machine's state.
            let (old, policy) = match &inner.cache.target {
                Some(t) => (target_as_state(&t.state), t.policy.clone()),
                None => (PackageState::default(), Default::default()),
            };
            let new = TargetState::from_state(&machine.state, &policy.exclusions);
            Ok(plan(&old, &new, &policy))
        }
    }
}

fn target_as_state(t: &TargetState) -> PackageState {
    t.iter()
        .map(|(name, e)| Package {
            name: name.to_owned(),
            version: e.version.clone(),
            arch: String::new(),
            reason: e.reason,
            origin: None,
            installed_size: 0,
            depends: Vec::new(),
        })
        .collect()
}

fn server_error(e: ServerError) -> DaemonError {
    match e {
        ServerError::Unreachable(m) => DaemonError::ServerUnreachable(m),
        ServerError::Unauthorized(m) => DaemonError::NotRegistered(m),
        ServerError::Api { code, message, .. } if code == "target_conflict" => DaemonError::Busy(
            format!("another target was set at the same time: {message}"),
        ),
        ServerError::Api {
            status,
            code,
            message,
        } => DaemonError::Internal(format!("server error {status} {code}: {message}")),
    }
}

/// Check, take the operation lock and run `kind` in the background;
/// returns the operation id at once. `requested` is the server's
/// operation when an operator asked for this one through the server.
pub async fn start(
    daemon: Arc<Daemon>,
    kind: Kind,
    caller: String,
    comment: String,
    requested: Option<String>,
) -> Result<String, DaemonError> {
    let guard = daemon
        .operation_lock
        .clone()
        .try_lock_owned()
        .map_err(|_| DaemonError::Busy("another operation is running".into()))?;
    {
        let inner = daemon.inner.lock().await;
        preview(&inner, kind)?;
    }
    let client = daemon.client().await;
    let server_op = match (kind, &client, requested) {
        (_, _, Some(id)) => Some(id),
        (Kind::Sync | Kind::Revert, Some(c), None) => c.start_operation(kind.as_str()).await.ok(),
        _ => None,
    };
    let id = server_op
        .clone()
        .unwrap_or_else(|| format!("local-{:016x}", rand::random::<u64>()));
    let cancel = CancelFlag::default();
    *daemon.cancel.lock().await = Some(cancel.clone());
    let entry = HistoryEntry {
        id: id.clone(),
        kind: kind.as_str().into(),
        outcome: "running".into(),
        caller: caller.clone(),
        finished_at: 0,
        message: comment.clone(),
    };
    daemon
        .update(|i| {
            i.operation = OperationInfo {
                id: id.clone(),
                kind: kind.as_str().into(),
                phase: "planning".into(),
                percent: 0,
                message: String::new(),
            };
            i.cache.interrupted_operation = Some(entry.clone());
        })
        .await;
    tracing::info!(operation = %id, kind = kind.as_str(), %caller, "operation started");
    let op_id = id.clone();
    tokio::spawn(async move {
        let result = run(&daemon, kind, &op_id, server_op.is_some(), &comment, cancel).await;
        *daemon.cancel.lock().await = None;
        finish(&daemon, entry, server_op.is_some(), result, guard).await;
    });
    Ok(id)
}

async fn run(
    daemon: &Arc<Daemon>,
    kind: Kind,
    op_id: &str,
    on_server: bool,
    comment: &str,
    cancel: CancelFlag,
) -> Result<String, String> {
    daemon.rescan().await;
    if kind == Kind::SetLatest {
        let client = daemon.client().await.ok_or("not registered")?;
        let state = {
            let inner = daemon.inner.lock().await;
            inner
                .machine
                .as_ref()
                .map(|m| m.state.clone())
                .ok_or("cannot read the local database")?
        };
        client
            .report_state(&state)
            .await
            .map_err(|e| server_error(e).to_string())?;
        client
            .set_latest(comment)
            .await
            .map_err(|e| server_error(e).to_string())?;
        let machine = daemon.inner.lock().await.machine.clone();
        let archived = match machine {
            Some(m) => archive::upload_missing(&client, &m).await,
            None => Ok(archive::Uploaded::default()),
        };
        let archive_note = match archived {
            Ok(a) if a.unavailable.is_empty() => {
                format!("; {} files uploaded to the archive", a.uploaded.len())
            }
            Ok(a) => format!(
                "; {} files uploaded to the archive; not in this machine's cache either: {}",
                a.uploaded.len(),
                a.unavailable.join(", ")
            ),
            Err(e) => {
                tracing::warn!("uploading to the archive failed: {e}");
                format!("; uploading to the archive failed: {}", server_error(e))
            }
        };
        crate::reporter::report_once(daemon)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(format!(
            "{} packages are the pool's new target{archive_note}",
            state.len()
        ));
    }

    let (plan, machine) = {
        let inner = daemon.inner.lock().await;
        let plan = preview(&inner, kind).map_err(|e| e.to_string())?;
        (
            plan,
            inner
                .machine
                .clone()
                .ok_or("cannot read the local database")?,
        )
    };
    let resolution = resolve_with_archive(daemon, &plan, &machine).await;
    let pacman = Pacman::new(machine.paths.clone(), daemon.config.lock_wait());

    // Progress goes through a channel: pacman's output is read in a plain
    // callback, the signals and server updates are async.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, u32, String)>();
    let forward = {
        let daemon = daemon.clone();
        let op_id = op_id.to_owned();
        tokio::spawn(async move {
            // The server hears at most four times a second: its figure is
            // for people watching, and the result follows anyway.
            let mut last_post: Option<std::time::Instant> = None;
            while let Some((phase, percent, message)) = rx.recv().await {
                let post =
                    on_server && last_post.is_none_or(|t| t.elapsed() >= SERVER_PROGRESS_EVERY);
                if post {
                    last_post = Some(std::time::Instant::now());
                }
                progress(&daemon, &op_id, post, &phase, percent, &message).await;
            }
        })
    };
    let mut on_progress = move |phase: &str, pct: u32, msg: &str| {
        let _ = tx.send((phase.to_owned(), pct, msg.to_owned()));
    };
    let before = machine.state.clone();
    let result = executor::apply(&plan, &resolution, &pacman, &cancel, &mut on_progress).await;
    drop(on_progress);
    let _ = forward.await;
    daemon.rescan().await;
    match result {
        Ok(()) => {
            daemon
                .update(|i| {
                    i.cache.before_last_operation = Some(before);
                    i.cache.last_sync = now();
                })
                .await;
            let s = plan.summary();
            Ok(format!(
                "{} installed, {} upgraded, {} downgraded, {} removed, {} reasons changed",
                s.install,
                s.upgrade,
                s.downgrade + s.reinstall,
                s.remove,
                s.reason_change
            ))
        }
        Err(e @ (ApplyError::Missing(_) | ApplyError::Cancelled | ApplyError::Refused(_))) => {
            Err(e.to_string())
        }
        Err(e) => {
            // pacman changed something before failing: the state before the
            // operation is still the one to revert to.
            daemon
                .update(|i| i.cache.before_last_operation = Some(before))
                .await;
            Err(e.to_string())
        }
    }
}

/// Every file of the plan: sync repositories and the pacman cache first,
/// then what the server's archive has for the rest (into the cache).
async fn resolve_with_archive(
    daemon: &Arc<Daemon>,
    plan: &SyncPlan,
    machine: &MachineSnapshot,
) -> executor::Resolution {
    let first = executor::resolve(plan, machine, &HashMap::new());
    let (Some(client), Some(dir)) = (daemon.client().await, machine.paths.cache_dirs.first())
    else {
        return first;
    };
    if first.wanted.is_empty() {
        return first;
    }
    let fetched = archive::fetch(&client, &first.wanted, dir).await;
    let mut second = executor::resolve(plan, machine, &fetched.files);
    second.explain(&fetched.problems);
    second
}

const SERVER_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

async fn progress(
    daemon: &Arc<Daemon>,
    op_id: &str,
    on_server: bool,
    phase: &str,
    percent: u32,
    message: &str,
) {
    daemon
        .update(|i| {
            i.operation.phase = phase.to_owned();
            i.operation.percent = percent;
            i.operation.message = message.to_owned();
        })
        .await;
    if let Some(conn) = daemon.connection.get()
        && let Ok(emitter) = SignalEmitter::new(conn, pacsync_dbus::OBJECT_PATH)
    {
        let _ = DaemonService::operation_progress(&emitter, op_id, phase, percent, message).await;
    }
    if on_server && let Some(c) = daemon.client().await {
        let _ = c.progress(op_id, "running", percent, message).await;
    }
}

async fn finish(
    daemon: &Arc<Daemon>,
    mut entry: HistoryEntry,
    on_server: bool,
    result: Result<String, String>,
    guard: tokio::sync::OwnedMutexGuard<()>,
) {
    let (outcome, message) = match &result {
        Ok(m) => ("succeeded", m.clone()),
        Err(m) if m.starts_with("cancelled") => ("cancelled", m.clone()),
        Err(m) => ("failed", m.clone()),
    };
    match outcome {
        "failed" => tracing::error!(operation = %entry.id, "{message}"),
        _ => tracing::info!(operation = %entry.id, outcome, "{message}"),
    }
    entry.outcome = outcome.into();
    entry.finished_at = now();
    if !message.is_empty() {
        entry.message = message.clone();
    }
    daemon
        .update(|i| {
            i.operation = OperationInfo::default();
            i.cache.interrupted_operation = None;
            i.cache.last_error = if outcome == "failed" {
                message.clone()
            } else {
                String::new()
            };
            i.cache.push_history(entry.clone());
        })
        .await;
    // Whoever hears OperationFinished may start the next one at once.
    drop(guard);
    if let Some(conn) = daemon.connection.get()
        && let Ok(emitter) = SignalEmitter::new(conn, pacsync_dbus::OBJECT_PATH)
    {
        let _ =
            DaemonService::operation_finished(&emitter, &entry.id, &entry.kind, outcome, &message)
                .await;
    }
    if on_server && let Some(c) = daemon.client().await {
        let status = if outcome == "succeeded" {
            "succeeded"
        } else {
            "failed"
        };
        let _ = c.progress(&entry.id, status, 100, &message).await;
    }
    daemon.report_now.notify_one();
}

pub async fn register(
    daemon: &Arc<Daemon>,
    url: &str,
    token: &str,
    name: &str,
) -> Result<(), DaemonError> {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(DaemonError::InvalidArgument(format!(
            "server URL {url:?} must start with http:// or https://"
        )));
    }
    if token.trim().is_empty() || name.trim().is_empty() {
        return Err(DaemonError::InvalidArgument(
            "enrollment token and machine name must not be empty".into(),
        ));
    }
    let creds = server::register(url, token.trim(), name.trim())
        .await
        .map_err(|e| match e {
            ServerError::Unauthorized(m) => {
                DaemonError::NotAuthorized(format!("the server refused the enrollment token: {m}"))
            }
            other => server_error(other),
        })?;
    daemon
        .use_credentials(creds)
        .await
        .map_err(|e| DaemonError::Internal(format!("{e:#}")))?;
    crate::reporter::report_once(daemon)
        .await
        .map_err(server_error)
}

pub async fn configure(
    daemon: &Arc<Daemon>,
    settings: HashMap<String, String>,
) -> Result<(), DaemonError> {
    let mut creds = daemon
        .inner
        .lock()
        .await
        .credentials
        .clone()
        .ok_or_else(|| {
            DaemonError::NotRegistered("register first: settings belong to a registration".into())
        })?;
    for (key, value) in settings {
        match key.as_str() {
            "server_url" if value.starts_with("http://") || value.starts_with("https://") => {
                creds.server_url = value.trim_end_matches('/').to_owned();
            }
            "machine_name" if !value.trim().is_empty() => {
                creds.machine_name = value.trim().to_owned()
            }
            "server_url" | "machine_name" => {
                return Err(DaemonError::InvalidArgument(format!(
                    "invalid value {value:?} for {key}"
                )));
            }
            other => {
                return Err(DaemonError::InvalidArgument(format!(
                    "unknown setting {other:?}"
                )));
            }
        }
    }
    daemon
        .use_credentials(creds)
        .await
        .map_err(|e| DaemonError::Internal(format!("{e:#}")))
}
