//! Desktop notifications through `org.freedesktop.Notifications` on the
//! session bus. A missing notification server is logged, never fatal: the
//! icon and its tooltip carry the same news.

use std::collections::HashMap;

use zbus::zvariant::Value;

use crate::view::Note;

#[zbus::proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: &str,
        replaces_id: u32,
        app_icon: &str,
        summary: &str,
        body: &str,
        actions: &[&str],
        hints: HashMap<&str, Value<'_>>,
        expire_timeout: i32,
    ) -> zbus::Result<u32>;
}

/// Sends notifications; status notes replace the previous status note so a
/// flapping status does not pile them up.
#[derive(Debug)]
pub struct Notifier {
    conn: Option<zbus::Connection>,
    last_status_note: u32,
}

/// Which slot a note goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Status,
    Event,
}

impl Notifier {
    pub fn new(conn: Option<zbus::Connection>) -> Notifier {
        Notifier {
            conn,
            last_status_note: 0,
        }
    }

    pub async fn send(&mut self, note: &Note, slot: Slot) {
        let Some(conn) = &self.conn else {
            tracing::info!(summary = %note.summary, "no session bus for notifications");
            return;
        };
        let replaces = match slot {
            Slot::Status => self.last_status_note,
            Slot::Event => 0,
        };
        let result = async {
            let proxy = NotificationsProxy::new(conn).await?;
            let mut hints = HashMap::new();
            hints.insert("desktop-entry", Value::from("org.pacsync.Gtk"));
            proxy
                .notify(
                    "pacsync",
                    replaces,
                    note.icon.icon_name(),
                    &note.summary,
                    &note.body,
                    &[],
                    hints,
                    -1,
                )
                .await
        }
        .await;
        match result {
            Ok(id) => {
                if slot == Slot::Status {
                    self.last_status_note = id;
                }
            }
            Err(e) => tracing::warn!(summary = %note.summary, "notification not shown: {e}"),
        }
    }
}
