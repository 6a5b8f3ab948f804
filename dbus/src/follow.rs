//! Following pacsyncd by signals, as the tray, the window and `pacsync
//! waybar` do: `PropertiesChanged`, `OperationProgress` and
//! `OperationFinished` of the daemon, and the bus's `NameOwnerChanged` for
//! the daemon leaving and coming back. After each of them all properties
//! are read again with one `GetAll` into a [`DaemonView`]. Nothing polls;
//! with no bus it retries with backoff (0.5 s doubling to 30 s).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt as _;
use zbus::fdo::{DBusProxy, NameOwnerChangedStream, PropertiesProxy};
use zbus::names::{BusName, InterfaceName};
use zbus::zvariant::OwnedValue;

use crate::{BUS_NAME, DaemonProxy, INTERFACE, OBJECT_PATH, OperationInfo, PlanCounts, TargetInfo};

/// The daemon's published properties, as one reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonView {
    pub status: String,
    pub last_known_status: String,
    pub last_error: String,
    pub pool: String,
    pub target: TargetInfo,
    pub last_sync: i64,
    pub last_report: i64,
    pub operation: OperationInfo,
    pub plan: PlanCounts,
    pub server_url: String,
    pub machine_name: String,
    pub daemon_version: String,
}

impl DaemonView {
    /// From `org.freedesktop.DBus.Properties.GetAll`; a property that is
    /// missing or of another type keeps its default, so an older or newer
    /// daemon still gives a reading.
    pub fn from_properties(props: &HashMap<String, OwnedValue>) -> DaemonView {
        fn get<T: TryFrom<OwnedValue> + Default>(
            props: &HashMap<String, OwnedValue>,
            key: &str,
        ) -> T {
            props
                .get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| T::try_from(v).ok())
                .unwrap_or_default()
        }
        DaemonView {
            status: get(props, "Status"),
            last_known_status: get(props, "LastKnownStatus"),
            last_error: get(props, "LastError"),
            pool: get(props, "Pool"),
            target: get(props, "Target"),
            last_sync: get(props, "LastSync"),
            last_report: get(props, "LastReport"),
            operation: get(props, "Operation"),
            plan: get(props, "PlanSummary"),
            server_url: get(props, "ServerUrl"),
            machine_name: get(props, "MachineName"),
            daemon_version: get(props, "DaemonVersion"),
        }
    }

    pub fn is_busy(&self) -> bool {
        self.status == "syncing" || !self.operation.is_idle()
    }

    /// Whether the plan to the target changes anything, install reasons
    /// included.
    pub fn has_changes(&self) -> bool {
        self.plan.total_changes() + self.plan.reason_change > 0
    }
}

/// Whether the daemon is there, and what it says.
// One reading per D-Bus signal, moved not copied: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// No daemon (or no bus): why, in words.
    Unavailable(String),
    Ready(DaemonView),
}

/// What [`follow`] reports.
// One reading per D-Bus signal, moved not copied: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event {
    /// The daemon's properties, after it appears and after every signal;
    /// or that it is gone, or the bus is.
    Presence(Presence),
    /// The daemon appeared: a proxy for calling it, on the follower's
    /// connection, valid until the next [`Presence::Unavailable`]. Comes
    /// before the first reading.
    Connected(DaemonProxy<'static>),
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

/// The system bus, or the bus at `address`.
pub async fn connect(address: Option<&str>) -> zbus::Result<zbus::Connection> {
    match address {
        Some(a) => zbus::connection::Builder::address(a)?.build().await,
        None => zbus::Connection::system().await,
    }
}

/// Follows the daemon on the system bus (or the bus at `address`), giving
/// every [`Event`] to `sink`, until `sink` answers `false` (nobody listens
/// any more).
pub async fn follow<F, Fut>(address: Option<String>, mut sink: F)
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        let why = match watch(address.as_deref(), &mut sink).await {
            Ok(Watch::Stop) => return,
            Ok(Watch::Closed) => "the bus connection closed".to_owned(),
            Err(e) => format!("no system bus ({e})"),
        };
        if !sink(Event::Presence(Presence::Unavailable(why))).await {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// How following on one connection ended (errors aside).
enum Watch {
    /// The bus connection ended.
    Closed,
    /// The sink is done.
    Stop,
}

/// Follows the daemon on one bus connection.
async fn watch<F, Fut>(address: Option<&str>, sink: &mut F) -> zbus::Result<Watch>
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = bool>,
{
    let conn = connect(address).await?;
    let dbus = DBusProxy::new(&conn).await?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
        .await?;
    let name = BusName::try_from(BUS_NAME)?;
    loop {
        if !dbus.name_has_owner(name.clone()).await? {
            let absent = Presence::Unavailable("pacsyncd is not running".into());
            if !sink(Event::Presence(absent)).await {
                return Ok(Watch::Stop);
            }
            // Wait for the daemon to (re)appear.
            loop {
                let Some(change) = owners.next().await else {
                    return Ok(Watch::Closed);
                };
                if change.args().is_ok_and(|a| a.new_owner().is_some()) {
                    break;
                }
            }
        }
        if let Some(end) = follow_daemon(&conn, sink, &mut owners).await? {
            return Ok(end);
        }
    }
}

/// Reads the daemon's properties now and after every signal, until it
/// leaves (`None`) or following ends.
async fn follow_daemon<F, Fut>(
    conn: &zbus::Connection,
    sink: &mut F,
    owners: &mut NameOwnerChangedStream,
) -> zbus::Result<Option<Watch>>
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = bool>,
{
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
    if !sink(Event::Connected(daemon.clone())).await {
        return Ok(Some(Watch::Stop));
    }
    let interface = InterfaceName::try_from(INTERFACE)?;
    loop {
        let reading = match props.get_all(interface.clone()).await {
            Ok(all) => DaemonView::from_properties(&all),
            // The daemon left between the signal and the reading.
            Err(_) => return Ok(None),
        };
        if !sink(Event::Presence(Presence::Ready(reading))).await {
            return Ok(Some(Watch::Stop));
        }
        // Biased, in this order: the daemon sends an operation's last
        // progress before its end, and one reader fills these streams in
        // the order of the bus, so when both wait the progress goes first
        // (a fair choice could show an operation's end before its last
        // step, and a window would start a new log with that step).
        let event = tokio::select! {
            biased;
            Some(_) = changes.next() => None,
            Some(signal) = progress.next() => signal.args().ok().map(|a| Event::Progress {
                phase: a.phase().to_string(),
                percent: *a.percent(),
                message: a.message().to_string(),
            }),
            Some(signal) = finished.next() => signal.args().ok().map(|a| Event::Finished {
                kind: a.kind().to_string(),
                outcome: a.outcome().to_string(),
                message: a.message().to_string(),
            }),
            change = owners.next() => match change {
                Some(c) if c.args().is_ok_and(|a| a.new_owner().is_none()) => return Ok(None),
                Some(_) => None,
                None => return Ok(Some(Watch::Closed)),
            },
        };
        if let Some(event) = event
            && !sink(event).await
        {
            return Ok(Some(Watch::Stop));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_of_another_daemon_version_still_read() {
        let mut props = HashMap::new();
        props.insert(
            "Status".to_owned(),
            OwnedValue::try_from(zbus::zvariant::Value::from("behind")).expect("value"),
        );
        props.insert(
            "LastSync".to_owned(),
            OwnedValue::try_from(zbus::zvariant::Value::from("not a number")).expect("value"),
        );
        let v = DaemonView::from_properties(&props);
        assert_eq!(v.status, "behind");
        assert_eq!(v.last_sync, 0);
        assert_eq!(v.pool, "");
    }
}
