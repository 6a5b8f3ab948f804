//! The daemon's state and what every interface reads from it.
//!
//! One `Daemon` holds the machine reading, the cache and the server client.
//! Every change goes through [`Daemon::update`], which recomputes the
//! published properties and emits `PropertiesChanged` for those that moved,
//! so D-Bus clients are pushed every change and never need to poll.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use pacsync_core::plan::{Policy, SyncPlan, plan};
use pacsync_core::state::TargetState;
use pacsync_core::status::{EndpointStatus, drift};
use pacsync_dbus::{OperationInfo, PlanCounts, TargetInfo};
use tokio::sync::{Mutex, Notify, RwLock};

use crate::config::Config;
use crate::machine::{MachineSnapshot, read_machine};
use crate::server::ServerClient;
use crate::store::{Cache, Credentials, StateDir};

/// The values of the D-Bus properties that change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub status: String,
    pub last_known_status: String,
    pub last_error: String,
    pub pool: String,
    pub target: TargetInfo,
    pub last_sync: i64,
    pub last_report: i64,
    pub operation: OperationInfo,
    pub plan_summary: PlanCounts,
    pub server_url: String,
    pub machine_name: String,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub cache: Cache,
    pub machine: Option<MachineSnapshot>,
    /// Why the local databases could not be read, if they could not.
    pub read_error: String,
    /// The last exchange with the server succeeded.
    pub online: bool,
    pub operation: OperationInfo,
    pub credentials: Option<Credentials>,
}

impl Inner {
    /// The plan to the pool's target, when there is a state and a target.
    pub fn sync_plan(&self) -> Option<SyncPlan> {
        let machine = self.machine.as_ref()?;
        let target = self.cache.target.as_ref()?;
        Some(plan(&machine.state, &target.state, &target.policy))
    }

    /// The plan back to the state before the last operation.
    pub fn revert_plan(&self) -> Option<SyncPlan> {
        let machine = self.machine.as_ref()?;
        let before = self.cache.before_last_operation.as_ref()?;
        let exclusions = self
            .cache
            .target
            .as_ref()
            .map(|t| t.policy.exclusions.clone())
            .unwrap_or_default();
        let policy = Policy {
            keep_extras: false,
            exclusions,
        };
        let back = TargetState::from_state(before, &policy.exclusions);
        Some(plan(&machine.state, &back, &policy))
    }

    /// The status as if the server were reachable.
    fn known_status(&self) -> String {
        let status = if self.credentials.is_none() {
            "unregistered"
        } else if !self.operation.is_idle() {
            "syncing"
        } else if !self.cache.last_error.is_empty() || !self.read_error.is_empty() {
            "error"
        } else if self.cache.pool.is_empty() {
            "unassigned"
        } else if self.cache.target.is_none() {
            "no_target"
        } else {
            return self
                .sync_plan()
                .map_or("error", |p| EndpointStatus::from(drift(&p)).as_str())
                .to_owned();
        };
        status.to_owned()
    }

    pub fn published(&self) -> Published {
        let known = self.known_status();
        let reachable = self.online || self.credentials.is_none() || !self.operation.is_idle();
        let summary = self.sync_plan().map(|p| p.summary()).unwrap_or_default();
        Published {
            status: if reachable {
                known.clone()
            } else {
                "offline".to_owned()
            },
            last_known_status: known,
            last_error: if self.read_error.is_empty() {
                self.cache.last_error.clone()
            } else {
                self.read_error.clone()
            },
            pool: self.cache.pool.clone(),
            target: self
                .cache
                .target
                .as_ref()
                .map(|t| t.info.clone())
                .unwrap_or_default(),
            last_sync: self.cache.last_sync,
            last_report: self.cache.last_report,
            operation: self.operation.clone(),
            plan_summary: PlanCounts {
                install: summary.install,
                upgrade: summary.upgrade,
                downgrade: summary.downgrade,
                reinstall: summary.reinstall,
                remove: summary.remove,
                reason_change: summary.reason_change,
            },
            server_url: self
                .credentials
                .as_ref()
                .map(|c| c.server_url.clone())
                .unwrap_or_default(),
            machine_name: self
                .credentials
                .as_ref()
                .map(|c| c.machine_name.clone())
                .unwrap_or_default(),
        }
    }
}

pub struct Daemon {
    pub config: Config,
    pub state_dir: StateDir,
    pub inner: Mutex<Inner>,
    published: Mutex<Published>,
    /// The cache as last written, so changes that touch only what is not
    /// kept (progress, reachability) cost no write.
    saved: Mutex<Cache>,
    pub server: RwLock<Option<Arc<ServerClient>>>,
    /// Held for the whole of an operation: a second caller gets Busy.
    /// Its `Arc` is cloned only by `operation::start`, into the guard held
    /// for the operation ([`Daemon::operation_running`] counts on it).
    pub operation_lock: Arc<Mutex<()>>,
    pub cancel: Mutex<Option<crate::executor::CancelFlag>>,
    /// Wakes the reporter.
    pub report_now: Notify,
    /// One report at a time, so an older answer never overwrites a newer.
    pub report_lock: Mutex<()>,
    /// Tells the push channel the credentials changed.
    pub push_reset: Notify,
    pub connection: OnceLock<zbus::Connection>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").finish_non_exhaustive()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

impl Daemon {
    /// Whether an operation holds the operation lock (or is trying for
    /// it), seen without taking the lock: taking it, even for an instant,
    /// could give a caller starting an operation a spurious Busy.
    pub fn operation_running(&self) -> bool {
        Arc::strong_count(&self.operation_lock) > 1
    }

    pub fn new(config: Config) -> anyhow::Result<Arc<Daemon>> {
        let state_dir = StateDir::open(&config.state_dir)?;
        let mut cache = state_dir.load_cache();
        // An operation nobody saw finish: the daemon was killed during it.
        if let Some(mut op) = cache.interrupted_operation.take() {
            op.outcome = "failed".into();
            op.message =
                "the daemon stopped during this operation; the packages are as pacman left them"
                    .into();
            op.finished_at = now();
            // The status comes from the packages as they are now; the
            // history says what happened.
            cache.push_history(op);
        }
        let credentials = state_dir.load_credentials()?;
        let daemon = Arc::new(Daemon {
            config,
            inner: Mutex::new(Inner {
                cache,
                credentials: credentials.clone(),
                ..Inner::default()
            }),
            published: Mutex::new(Published::default()),
            saved: Mutex::new(Cache::default()),
            server: RwLock::new(None),
            operation_lock: Arc::new(Mutex::new(())),
            cancel: Mutex::new(None),
            report_now: Notify::new(),
            report_lock: Mutex::new(()),
            push_reset: Notify::new(),
            connection: OnceLock::new(),
            state_dir,
        });
        if let Some(c) = credentials {
            daemon.use_credentials_blocking(c);
        }
        Ok(daemon)
    }

    fn make_client(self: &Arc<Self>, creds: Credentials) -> Arc<ServerClient> {
        let state_dir = self.state_dir.clone();
        Arc::new(ServerClient::new(creds, move |c| {
            if let Err(e) = state_dir.save_credentials(c) {
                tracing::error!("cannot store the rotated credentials: {e:#}");
            }
        }))
    }

    fn use_credentials_blocking(self: &Arc<Self>, creds: Credentials) {
        let client = self.make_client(creds);
        if let Ok(mut s) = self.server.try_write() {
            *s = Some(client);
        }
    }

    /// Store new credentials (Register) and start reporting with them.
    pub async fn use_credentials(self: &Arc<Self>, creds: Credentials) -> anyhow::Result<()> {
        self.state_dir.save_credentials(&creds)?;
        *self.server.write().await = Some(self.make_client(creds.clone()));
        self.update(|i| {
            i.credentials = Some(creds);
            i.cache.last_error.clear();
        })
        .await;
        self.report_now.notify_one();
        self.push_reset.notify_one();
        Ok(())
    }

    pub async fn client(&self) -> Option<Arc<ServerClient>> {
        self.server.read().await.clone()
    }

    /// Change the state, persist the cache, and push what changed.
    pub async fn update<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (r, new, cache) = {
            let mut inner = self.inner.lock().await;
            let r = f(&mut inner);
            (r, inner.published(), inner.cache.clone())
        };
        {
            let mut saved = self.saved.lock().await;
            if *saved != cache {
                match self.state_dir.save_cache(&cache) {
                    Ok(()) => *saved = cache,
                    Err(e) => tracing::error!("cannot save the cache: {e:#}"),
                }
            }
        }
        let old = {
            let mut p = self.published.lock().await;
            std::mem::replace(&mut *p, new.clone())
        };
        if old != new
            && let Some(conn) = self.connection.get()
        {
            crate::service::emit_changes(conn, &old, &new).await;
        }
        r
    }

    /// Read the pacman databases again. Returns whether the package state
    /// changed.
    pub async fn rescan(&self) -> bool {
        let cfg = self.config.pacman.clone();
        let read = tokio::task::spawn_blocking(move || read_machine(&cfg))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("reading the databases panicked: {e}")));
        self.update(|i| match read {
            Ok(m) => {
                let changed = i.machine.as_ref().is_none_or(|old| old.state != m.state);
                i.machine = Some(m);
                i.read_error.clear();
                changed
            }
            Err(e) => {
                tracing::error!("{e:#}");
                i.read_error = format!("{e:#}");
                false
            }
        })
        .await
    }
}
