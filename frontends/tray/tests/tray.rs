//! pacsync-tray in a real desktop session: headless sway with WayBar's tray
//! as the StatusNotifierWatcher and mako as the notification server, all as
//! an unprivileged user on a private session bus; a real pacsyncd on a
//! private system bus with polkitd manages a sandboxed machine that reports
//! to a real server.
//!
//! The test reads what the tray publishes the way WayBar does — the
//! watcher's registered items, the item's properties, its dbusmenu — and
//! clicks menu entries with dbusmenu `Event`s, as WayBar does on a click.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use pacsync_tests::desktop::{ManagedMachine, WaylandSession, artifacts_dir};
use pacsync_tests::server_process::sibling_binary;
use pacsync_tests::system_bus::{PolkitGrant, TestUser};
use zbus::zvariant::{OwnedValue, Structure, Value};

const TRAY: &str = env!("CARGO_BIN_EXE_pacsync-tray");

struct TrayProcess(Child);

impl Drop for TrayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking view of the session bus, from the test (root may connect:
/// the session bus's policy allows any local user).
struct Observer {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

#[derive(Debug, Clone)]
struct MenuEntry {
    id: i32,
    label: String,
    enabled: bool,
    visible: bool,
}

impl Observer {
    fn new(address: &str) -> Observer {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let conn = rt
            .block_on(async { zbus::connection::Builder::address(address)?.build().await })
            .expect("session bus");
        Observer { rt, conn }
    }

    fn call<R>(
        &self,
        dest: &str,
        path: &str,
        iface: &str,
        method: &str,
        body: &R,
    ) -> zbus::Result<zbus::Message>
    where
        R: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.rt.block_on(
            self.conn
                .call_method(Some(dest), path, Some(iface), method, body),
        )
    }

    fn has_owner(&self, name: &str) -> bool {
        self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            &(name,),
        )
        .and_then(|m| m.body().deserialize::<bool>())
        .unwrap_or(false)
    }

    /// The items the watcher knows, as (bus name, object path).
    fn registered_items(&self) -> Vec<(String, String)> {
        let Ok(reply) = self.call(
            "org.kde.StatusNotifierWatcher",
            "/StatusNotifierWatcher",
            "org.freedesktop.DBus.Properties",
            "Get",
            &(
                "org.kde.StatusNotifierWatcher",
                "RegisteredStatusNotifierItems",
            ),
        ) else {
            return Vec::new();
        };
        let Ok(v) = reply.body().deserialize::<OwnedValue>() else {
            return Vec::new();
        };
        let items: Vec<String> = v.try_into().unwrap_or_default();
        items
            .into_iter()
            .map(|i| match i.find('/') {
                Some(p) => (i[..p].to_owned(), i[p..].to_owned()),
                None => (i, "/StatusNotifierItem".to_owned()),
            })
            .collect()
    }

    fn item_properties(&self, item: &(String, String)) -> HashMap<String, OwnedValue> {
        self.call(
            &item.0,
            &item.1,
            "org.freedesktop.DBus.Properties",
            "GetAll",
            &("org.kde.StatusNotifierItem",),
        )
        .and_then(|m| m.body().deserialize::<HashMap<String, OwnedValue>>())
        .unwrap_or_default()
    }

    fn string_property(&self, item: &(String, String), name: &str) -> String {
        self.item_properties(item)
            .remove(name)
            .and_then(|v| String::try_from(v).ok())
            .unwrap_or_default()
    }

    /// The tooltip's (title, description).
    fn tooltip(&self, item: &(String, String)) -> (String, String) {
        let Some(v) = self.item_properties(item).remove("ToolTip") else {
            return Default::default();
        };
        let Ok(s) = Structure::try_from(v) else {
            return Default::default();
        };
        let f = s.fields();
        let text = |i: usize| {
            f.get(i)
                .and_then(|v| <&str>::try_from(v).ok())
                .unwrap_or_default()
                .to_owned()
        };
        (text(2), text(3))
    }

    fn menu(&self, item: &(String, String)) -> Vec<MenuEntry> {
        let menu_path = self
            .item_properties(item)
            .remove("Menu")
            .and_then(|v| zbus::zvariant::OwnedObjectPath::try_from(v).ok())
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/MenuBar".into());
        let Ok(reply) = self.call(
            &item.0,
            &menu_path,
            "com.canonical.dbusmenu",
            "GetLayout",
            &(0i32, -1i32, Vec::<String>::new()),
        ) else {
            return Vec::new();
        };
        let body = reply.body();
        type Layout = (u32, (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>));
        let Ok((_revision, (_root, _props, children))) = body.deserialize::<Layout>() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for child in &children {
            flatten(child, &mut out);
        }
        out
    }

    fn click(&self, item: &(String, String), id: i32) -> zbus::Result<()> {
        self.call(
            &item.0,
            "/MenuBar",
            "com.canonical.dbusmenu",
            "Event",
            &(id, "clicked", Value::from(0i32), 0u32),
        )
        .map(drop)
    }

    /// mako's notifications: (summary, body).
    fn notifications(&self) -> Vec<(String, String)> {
        let Ok(reply) = self.call(
            "org.freedesktop.Notifications",
            "/fr/emersion/Mako",
            "fr.emersion.Mako",
            "ListNotifications",
            &(),
        ) else {
            return Vec::new();
        };
        let Ok(list) = reply
            .body()
            .deserialize::<Vec<HashMap<String, OwnedValue>>>()
        else {
            return Vec::new();
        };
        list.into_iter()
            .map(|mut n| {
                let mut text = |k: &str| {
                    n.remove(k)
                        .and_then(|v| String::try_from(v).ok())
                        .unwrap_or_default()
                };
                (text("summary"), text("body"))
            })
            .collect()
    }
}

/// Walk a dbusmenu layout `(id, props, children)`.
fn flatten(node: &Value<'_>, out: &mut Vec<MenuEntry>) {
    let node = match node {
        Value::Value(inner) => inner.as_ref(),
        other => other,
    };
    let Value::Structure(s) = node else { return };
    let f = s.fields();
    let id = f.first().and_then(|v| i32::try_from(v).ok()).unwrap_or(-1);
    let props: HashMap<String, OwnedValue> = f
        .get(1)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| HashMap::<String, OwnedValue>::try_from(v).ok())
        .unwrap_or_default();
    let flag = |k: &str| {
        props
            .get(k)
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(true)
    };
    if id != 0 {
        out.push(MenuEntry {
            id,
            label: props
                .get("label")
                .and_then(|v| <&str>::try_from(v).ok())
                .unwrap_or_default()
                .replace('_', ""),
            enabled: flag("enabled"),
            visible: flag("visible"),
        });
    }
    if let Some(Value::Array(children)) = f.get(2) {
        for c in children.iter() {
            flatten(c, out);
        }
    }
}

/// Poll `f` until it returns `Some`, for at most `within`.
fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entry(menu: &[MenuEntry], label: &str) -> MenuEntry {
    menu.iter()
        .find(|e| e.label == label)
        .cloned()
        .unwrap_or_else(|| panic!("no menu entry {label:?} in {menu:?}"))
}

#[test]
fn the_tray_follows_the_daemon_and_syncs_from_its_menu() {
    if !ManagedMachine::available() || !WaylandSession::available() {
        return;
    }
    let mut machine = ManagedMachine::start(
        &sibling_binary(TRAY, "pacsyncd"),
        &sibling_binary(TRAY, "pacsync-server"),
    )
    .expect("a registered machine");
    let user = TestUser::ensure("pacsynct-tray").expect("test user");
    let mut session = WaylandSession::start(user.clone()).expect("sway session");
    let bus = Observer::new(session.bus_address());
    let artifacts = artifacts_dir(TRAY);

    // The tray starts before any StatusNotifierWatcher: it says so and waits.
    let icons = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/icons");
    let tray = TrayProcess(
        session
            .command(TRAY)
            .arg("--bus")
            .arg(machine.bus.address())
            .arg("--icon-dir")
            .arg(&icons)
            .env("PACSYNC_LOG", "pacsync_tray=debug")
            .stdout(Stdio::null())
            .stderr(session.log_file("tray.log").expect("log"))
            .spawn()
            .expect("start pacsync-tray"),
    );
    wait_for(Duration::from_secs(20), "the tray says it waits", || {
        session
            .log("tray.log")
            .contains("no StatusNotifierWatcher")
            .then_some(())
    });

    session.start_waybar().expect("waybar");
    let item = wait_for(Duration::from_secs(20), "the item registers", || {
        bus.registered_items()
            .into_iter()
            .find(|(name, _)| name.starts_with("org.kde.StatusNotifierItem-"))
    });
    assert!(bus.has_owner(&item.0));
    // The machine is behind: one upgrade, one install.
    wait_for(Duration::from_secs(10), "the behind icon", || {
        (bus.string_property(&item, "IconName") == "pacsync-behind").then_some(())
    });
    let props = bus.item_properties(&item);
    assert_eq!(
        props
            .get("IconThemePath")
            .and_then(|v| <&str>::try_from(v).ok()),
        Some(icons.display().to_string().as_str())
    );
    let pixmaps = props.get("IconPixmap").map(|v| format!("{v:?}").len());
    assert!(pixmaps.unwrap_or(0) > 1000, "embedded fallback pixmaps");
    let (title, body) = bus.tooltip(&item);
    assert_eq!(title, "Behind: 1 to install, 1 to upgrade");
    assert!(body.contains("Pool: office"), "{body}");
    assert!(body.contains(" from reference, "), "{body}");

    let menu = bus.menu(&item);
    assert_eq!(menu[0].label, "Behind: 1 to install, 1 to upgrade");
    let sync = entry(&menu, "Sync now");
    assert!(sync.enabled && sync.visible);
    assert!(entry(&menu, "Set as latest").enabled);
    assert!(!entry(&menu, "Revert").enabled, "nothing to revert yet");
    assert!(entry(&menu, "Open pacsync").enabled);
    assert!(entry(&menu, "Quit").enabled);
    session
        .screenshot(None, &artifacts.join("tray-behind.png"))
        .expect("grim");

    // Without a polkit grant the user is refused: a notification, no crash.
    bus.click(&item, sync.id).expect("click Sync now");
    wait_for(
        Duration::from_secs(10),
        "the refusal's notification",
        || {
            bus.notifications()
                .iter()
                .any(|(s, b)| s == "Sync: not authorized" && b.contains("org.pacsync.sync"))
                .then_some(())
        },
    );
    assert_eq!(machine.status().expect("status"), "behind");
    session
        .screenshot(None, &artifacts.join("tray-refused.png"))
        .expect("grim");

    // With the grant (polkitd reloads its rules in its own time), the same
    // click starts the sync.
    let _grant = PolkitGrant::for_group(&user.name).expect("grant");
    wait_for(
        Duration::from_secs(20),
        "a sync started from the menu",
        || {
            let running = |m: &ManagedMachine| {
                let status = m.status().unwrap_or_default();
                status == "syncing" || status == "in_sync"
            };
            if running(&machine) {
                return Some(());
            }
            let refusals = bus
                .notifications()
                .iter()
                .filter(|(s, _)| s == "Sync: not authorized")
                .count();
            let sync = entry(&bus.menu(&item), "Sync now");
            if sync.enabled {
                bus.click(&item, sync.id).ok()?;
            }
            // Either the sync starts or polkit (not reloaded yet) refuses again.
            wait_until(Duration::from_secs(3), || {
                running(&machine)
                    || bus
                        .notifications()
                        .iter()
                        .filter(|(s, _)| s == "Sync: not authorized")
                        .count()
                        > refusals
            });
            running(&machine).then_some(())
        },
    );
    machine
        .wait_status("in_sync", Duration::from_secs(30))
        .expect("in sync");
    assert_eq!(
        machine
            .query()
            .expect("pacman -Q")
            .get("alpha")
            .map(String::as_str),
        Some("2.0-1")
    );
    wait_for(Duration::from_secs(10), "the in-sync icon", || {
        (bus.string_property(&item, "IconName") == "pacsync-in-sync").then_some(())
    });
    assert_eq!(bus.tooltip(&item).0, "In sync");
    let menu = bus.menu(&item);
    assert!(!entry(&menu, "Sync now").enabled, "nothing left to sync");
    assert!(entry(&menu, "Revert").enabled, "the sync can be reverted");
    wait_for(Duration::from_secs(10), "the finished notification", || {
        bus.notifications()
            .iter()
            .any(|(s, _)| s == "Sync finished")
            .then_some(())
    });
    session
        .screenshot(None, &artifacts.join("tray-in-sync.png"))
        .expect("grim");

    // The daemon goes away and comes back: the tray follows.
    machine.kill_daemon().expect("kill");
    wait_for(Duration::from_secs(10), "the unavailable icon", || {
        (bus.string_property(&item, "IconName") == "pacsync-unavailable").then_some(())
    });
    assert!(!entry(&bus.menu(&item), "Revert").enabled);
    machine.restart_daemon().expect("restart");
    wait_for(
        Duration::from_secs(20),
        "the icon after the restart",
        || (bus.string_property(&item, "IconName") == "pacsync-in-sync").then_some(()),
    );

    // Quit ends the process and takes the item off the watcher.
    let quit = entry(&bus.menu(&item), "Quit");
    bus.click(&item, quit.id).expect("click Quit");
    let mut tray = tray;
    wait_for(Duration::from_secs(10), "the tray exits", || {
        tray.0.try_wait().ok().flatten()
    });
    drop(session);
}

/// Whether `f` holds within `within` (polled).
fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
