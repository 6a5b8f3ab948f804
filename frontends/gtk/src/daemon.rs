//! The window's link to pacsyncd. zbus runs on a tokio runtime of its own
//! thread; the GTK main loop gets [`Event`]s through a channel and awaits
//! calls made with [`Daemon::call`].
//!
//! The daemon is followed by signals only, by [`pacsync_dbus::follow`].

use std::future::Future;
use std::sync::{Arc, Mutex};

pub use pacsync_dbus::follow::Event;
use pacsync_dbus::{DaemonError, DaemonProxy};

use crate::model::Presence;

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

type Slot = Arc<Mutex<Option<DaemonProxy<'static>>>>;

fn set(slot: &Slot, proxy: Option<DaemonProxy<'static>>) {
    if let Ok(mut s) = slot.lock() {
        *s = proxy;
    }
}

/// Follows the daemon: keeps the proxy for [`Daemon::call`] in `slot`
/// while the daemon is there and passes the rest on to the main loop.
async fn follow(bus: Option<String>, tx: async_channel::Sender<Event>, slot: Slot) {
    pacsync_dbus::follow::follow(bus, |event| {
        let tx = tx.clone();
        let slot = slot.clone();
        async move {
            let event = match event {
                // Kept here for calls; the main loop never sees it.
                Event::Connected(proxy) => {
                    set(&slot, Some(proxy));
                    return true;
                }
                other => other,
            };
            if matches!(event, Event::Presence(Presence::Unavailable(_))) {
                set(&slot, None);
            }
            tx.send(event).await.is_ok()
        }
    })
    .await;
    set(&slot, None);
}
