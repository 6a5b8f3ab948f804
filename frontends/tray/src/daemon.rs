//! Following pacsyncd by signals: `PropertiesChanged`, `OperationProgress`
//! and `OperationFinished` of the daemon, `NameOwnerChanged` of the bus for
//! the daemon leaving and coming back. Never polls; with no bus it retries
//! with backoff.

use std::time::Duration;

use futures_util::StreamExt;
use pacsync_dbus::{BUS_NAME, DaemonProxy, INTERFACE, OBJECT_PATH};
use tokio::sync::mpsc::UnboundedSender;
use zbus::fdo::{DBusProxy, NameOwnerChangedStream, PropertiesProxy};
use zbus::names::{BusName, InterfaceName};

use crate::view::{DaemonView, Presence};

/// What the follower reports to the tray.
// One reading per D-Bus signal, moved not copied: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    Presence(Presence),
    /// A proxy for calling the daemon, on the follower's connection.
    Connected(DaemonProxy<'static>),
    Finished {
        kind: String,
        outcome: String,
        message: String,
    },
}

/// The system bus, or the bus at `address`.
pub async fn connect(address: Option<&str>) -> zbus::Result<zbus::Connection> {
    match address {
        Some(a) => zbus::connection::Builder::address(a)?.build().await,
        None => zbus::Connection::system().await,
    }
}

/// Runs until the receiver is gone.
pub async fn follow(address: Option<String>, events: UnboundedSender<Event>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let result = watch(address.as_deref(), &events).await;
        if events.is_closed() {
            return;
        }
        let why = match result {
            Ok(()) => "the bus connection closed".to_owned(),
            Err(e) => format!("no system bus ({e})"),
        };
        let _ = events.send(Event::Presence(Presence::Unavailable(why)));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn watch(address: Option<&str>, events: &UnboundedSender<Event>) -> zbus::Result<()> {
    let conn = connect(address).await?;
    let dbus = DBusProxy::new(&conn).await?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
        .await?;
    let name = BusName::try_from(BUS_NAME)?;
    loop {
        if !dbus.name_has_owner(name.clone()).await? {
            let _ = events.send(Event::Presence(Presence::Unavailable(
                "pacsyncd is not running".into(),
            )));
            loop {
                let Some(change) = owners.next().await else {
                    return Ok(());
                };
                if change.args().is_ok_and(|a| a.new_owner().is_some()) {
                    break;
                }
            }
        }
        if !follow_daemon(&conn, events, &mut owners).await? {
            return Ok(());
        }
    }
}

/// Report the daemon's properties now and after every change, until it
/// leaves (`Ok(true)`) or the bus connection ends (`Ok(false)`).
async fn follow_daemon(
    conn: &zbus::Connection,
    events: &UnboundedSender<Event>,
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
    let _ = events.send(Event::Connected(daemon.clone()));
    let interface = InterfaceName::try_from(INTERFACE)?;
    loop {
        match props.get_all(interface.clone()).await {
            Ok(all) => {
                let _ = events.send(Event::Presence(Presence::Ready(
                    DaemonView::from_properties(&all),
                )));
            }
            // The daemon left between the signal and the reading.
            Err(_) => return Ok(true),
        }
        tokio::select! {
            Some(_) = changes.next() => {}
            Some(_) = progress.next() => {}
            Some(signal) = finished.next() => {
                if let Ok(a) = signal.args() {
                    let _ = events.send(Event::Finished {
                        kind: a.kind().to_string(),
                        outcome: a.outcome().to_string(),
                        message: a.message().to_string(),
                    });
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
