//! The window's link to pacsyncd. zbus runs on a tokio runtime of its own
//! thread; the GTK main loop gets [`Event`]s through a channel and awaits
//! calls made with [`Daemon::call`].
//!
//! The daemon is followed by signals only: `PropertiesChanged`,
//! `OperationProgress` and `OperationFinished`, and the bus's
//! `NameOwnerChanged` for the daemon leaving and coming back.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use pacsync_dbus::{BUS_NAME, DaemonError, DaemonProxy, INTERFACE, OBJECT_PATH};
use zbus::fdo::{DBusProxy, NameOwnerChangedStream, PropertiesProxy};
use zbus::names::{BusName, InterfaceName};

use crate::model::{DaemonView, Presence};

// One reading per D-Bus signal, moved not copied: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event {
    Presence(Presence),
    Progress {
        phase: String,
        percent: u32,
        message: String,
    },
    Finished {
        kind: String,
        outcome: String,
        message: String,
    },
}

/// A failed call: the daemon's typed error, or no daemon at all.
#[derive(Debug)]
pub enum CallError {
    NotRunning,
    Daemon(DaemonError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotRunning => write!(f, "pacsyncd is not running"),
            CallError::Daemon(DaemonError::NotAuthorized(_)) => write!(
                f,
                "Not authorized: polkit refused. An administrator can grant the pacsync actions \
                 (see 49-pacsync.rules.example)."
            ),
            CallError::Daemon(DaemonError::ZBus(e)) => write!(f, "{e}"),
            CallError::Daemon(
                DaemonError::Busy(m)
                | DaemonError::NotRegistered(m)
                | DaemonError::NotInPool(m)
                | DaemonError::NoTarget(m)
                | DaemonError::ServerUnreachable(m)
                | DaemonError::MissingPackages(m)
                | DaemonError::PacmanFailed(m)
                | DaemonError::Cancelled(m)
                | DaemonError::InvalidArgument(m)
                | DaemonError::Internal(m),
            ) => write!(f, "{m}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Daemon {
    runtime: tokio::runtime::Handle,
    proxy: Arc<Mutex<Option<DaemonProxy<'static>>>>,
}

impl Daemon {
    /// Start following the daemon on `runtime`; events arrive on the
    /// returned channel.
    pub fn start(
        runtime: tokio::runtime::Handle,
        bus: Option<String>,
    ) -> (Daemon, async_channel::Receiver<Event>) {
        let (tx, rx) = async_channel::unbounded();
        let me = Daemon {
            runtime,
            proxy: Arc::new(Mutex::new(None)),
        };
        me.runtime.spawn(follow(bus, tx, me.proxy.clone()));
        (me, rx)
    }

    /// Run `f` with the daemon's proxy on the zbus runtime; await the
    /// result from any executor (the GTK main loop).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(DaemonProxy<'static>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DaemonError>> + Send + 'static,
    {
        let proxy = self
            .proxy
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .ok_or(CallError::NotRunning)?;
        match self.runtime.spawn(f(proxy)).await {
            Ok(r) => r.map_err(CallError::Daemon),
            Err(_) => Err(CallError::NotRunning),
        }
    }
}

async fn connect(bus: Option<&str>) -> zbus::Result<zbus::Connection> {
    match bus {
        Some(a) => zbus::connection::Builder::address(a)?.build().await,
        None => zbus::Connection::system().await,
    }
}

type Slot = Arc<Mutex<Option<DaemonProxy<'static>>>>;

fn set(slot: &Slot, proxy: Option<DaemonProxy<'static>>) {
    if let Ok(mut s) = slot.lock() {
        *s = proxy;
    }
}

async fn follow(bus: Option<String>, tx: async_channel::Sender<Event>, slot: Slot) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let result = watch(bus.as_deref(), &tx, &slot).await;
        set(&slot, None);
        if tx.is_closed() {
            return;
        }
        let why = match result {
            Ok(()) => "the bus connection closed".to_owned(),
            Err(e) => format!("no system bus ({e})"),
        };
        let _ = tx.send(Event::Presence(Presence::Unavailable(why))).await;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn watch(
    bus: Option<&str>,
    tx: &async_channel::Sender<Event>,
    slot: &Slot,
) -> zbus::Result<()> {
    let conn = connect(bus).await?;
    let dbus = DBusProxy::new(&conn).await?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
        .await?;
    let name = BusName::try_from(BUS_NAME)?;
    loop {
        if !dbus.name_has_owner(name.clone()).await? {
            set(slot, None);
            let _ = tx
                .send(Event::Presence(Presence::Unavailable(
                    "pacsyncd is not running".into(),
                )))
                .await;
            loop {
                let Some(change) = owners.next().await else {
                    return Ok(());
                };
                if change.args().is_ok_and(|a| a.new_owner().is_some()) {
                    break;
                }
            }
        }
        if !follow_daemon(&conn, tx, slot, &mut owners).await? {
            return Ok(());
        }
    }
}

/// Send the properties now and after every change, until the daemon
/// leaves (`Ok(true)`) or the connection ends (`Ok(false)`).
async fn follow_daemon(
    conn: &zbus::Connection,
    tx: &async_channel::Sender<Event>,
    slot: &Slot,
    owners: &mut NameOwnerChangedStream,
) -> zbus::Result<bool> {
    let daemon = DaemonProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let props = PropertiesProxy::builder(conn)
        .destination(BUS_NAME)?
        .path(OBJECT_PATH)?
        .build()
        .await?;
    let mut changes = props.receive_properties_changed().await?;
    let mut progress = daemon.receive_operation_progress().await?;
    let mut finished = daemon.receive_operation_finished().await?;
    set(slot, Some(daemon.clone()));
    let interface = InterfaceName::try_from(INTERFACE)?;
    loop {
        match props.get_all(interface.clone()).await {
            Ok(all) => {
                let view = DaemonView::from_properties(&all);
                if tx
                    .send(Event::Presence(Presence::Ready(view)))
                    .await
                    .is_err()
                {
                    return Ok(false);
                }
            }
            Err(_) => return Ok(true),
        }
        tokio::select! {
            Some(_) = changes.next() => {}
            Some(signal) = progress.next() => {
                if let Ok(a) = signal.args() {
                    let _ = tx.send(Event::Progress {
                        phase: a.phase().to_string(),
                        percent: *a.percent(),
                        message: a.message().to_string(),
                    }).await;
                }
            }
            Some(signal) = finished.next() => {
                if let Ok(a) = signal.args() {
                    let _ = tx.send(Event::Finished {
                        kind: a.kind().to_string(),
                        outcome: a.outcome().to_string(),
                        message: a.message().to_string(),
                    }).await;
                }
            }
            change = owners.next() => match change {
                Some(c) if c.args().is_ok_and(|a| a.new_owner().is_none()) => return Ok(true),
                Some(_) => {}
                None => return Ok(false),
            },
        }
    }
}
