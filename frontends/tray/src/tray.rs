//! The StatusNotifierItem: icon, tooltip and menu drawn from the latest
//! [`Presence`]; menu entries turn into [`Command`]s for the main loop.

use tokio::sync::mpsc::UnboundedSender;

use crate::icons;
use crate::view::{self, Presence};

/// What the user asked for from the tray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Sync,
    SetLatest,
    Revert,
    Cancel,
    OpenWindow,
    Quit,
}

#[derive(Debug)]
pub struct PacsyncTray {
    pub presence: Presence,
    commands: UnboundedSender<Command>,
    icon_dir: String,
}

impl PacsyncTray {
    pub fn new(commands: UnboundedSender<Command>, icon_dir: String) -> PacsyncTray {
        PacsyncTray {
            presence: Presence::Unavailable("connecting to pacsyncd".into()),
            commands,
            icon_dir,
        }
    }

    fn send(&self, c: Command) {
        // The main loop outlives the tray service; a failed send means it is
        // shutting down anyway.
        let _ = self.commands.send(c);
    }
}

fn item(label: &str, enabled: bool, icon: &str, command: Command) -> ksni::MenuItem<PacsyncTray> {
    ksni::menu::StandardItem {
        label: label.into(),
        enabled,
        icon_name: icon.into(),
        activate: Box::new(move |t: &mut PacsyncTray| t.send(command)),
        ..Default::default()
    }
    .into()
}

impl ksni::Tray for PacsyncTray {
    fn id(&self) -> String {
        "pacsync".into()
    }

    fn title(&self) -> String {
        format!("pacsync — {}", view::status_line(&self.presence))
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::SystemServices
    }

    fn status(&self) -> ksni::Status {
        match view::icon_kind(&self.presence) {
            view::IconKind::Error | view::IconKind::Diverged => ksni::Status::NeedsAttention,
            _ => ksni::Status::Active,
        }
    }

    fn icon_theme_path(&self) -> String {
        self.icon_dir.clone()
    }

    fn icon_name(&self) -> String {
        view::icon_kind(&self.presence).icon_name().into()
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        let kind = view::icon_kind(&self.presence);
        [22, 32, 48]
            .into_iter()
            .map(|s| icons::pixmap(kind, s))
            .collect()
    }

    fn attention_icon_name(&self) -> String {
        self.icon_name()
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            icon_name: self.icon_name(),
            icon_pixmap: Vec::new(),
            title: view::status_line(&self.presence),
            description: view::tooltip_body(&self.presence, view::now()),
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        self.send(Command::OpenWindow);
    }

    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        let a = view::actions(&self.presence);
        let mut menu = vec![
            item(
                &view::status_line(&self.presence),
                true,
                view::icon_kind(&self.presence).icon_name(),
                Command::OpenWindow,
            ),
            ksni::MenuItem::Separator,
            item("Sync now", a.sync, "view-refresh", Command::Sync),
            item(
                "Set as latest",
                a.set_latest,
                "document-save",
                Command::SetLatest,
            ),
            item("Revert", a.revert, "edit-undo", Command::Revert),
        ];
        if a.cancel {
            menu.push(item(
                "Cancel operation",
                true,
                "process-stop",
                Command::Cancel,
            ));
        }
        menu.extend([
            ksni::MenuItem::Separator,
            item("Open pacsync", true, "pacsync", Command::OpenWindow),
            item("Quit", true, "application-exit", Command::Quit),
        ]);
        menu
    }

    fn watcher_online(&self) {
        tracing::info!("a StatusNotifierWatcher appeared: the icon is registered");
    }

    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        tracing::warn!(
            "no StatusNotifierWatcher on the session bus ({reason:?}): waiting for one \
             (a panel with a tray, e.g. WayBar's \"tray\" module, KDE Plasma, or GNOME's \
             AppIndicator extension)"
        );
        true
    }
}
