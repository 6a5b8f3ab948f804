//! The main window: status header, actions, progress, and the plan,
//! history and settings pages. All state comes from [`Event`]s; every
//! button ends in a daemon call whose failure is shown in place. This
//! module builds the window and handles the events; the parts that show
//! something have a module each.

mod header;
mod history;
mod plan;
mod progress;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use gtk::glib;
use gtk::prelude::*;
use pacsync_dbus::{HistoryEntry, PlanStepInfo};

use crate::confirm;
use crate::daemon::{CallError, Daemon, Event};
use crate::model::{self, Buttons, Presence, Verb};
use crate::plan_table::PlanTable;
use crate::settings::SettingsPage;

pub use progress::ProgressLog;

#[derive(Debug)]
pub struct Ui {
    pub window: gtk::ApplicationWindow,
    pub daemon: Daemon,
    pub status_icon: gtk::Image,
    pub status_label: gtk::Label,
    pub details: gtk::Label,
    pub error_bar: gtk::InfoBar,
    pub error_label: gtk::Label,
    pub progress_panel: gtk::Box,
    pub progress_title: gtk::Label,
    pub progress_bar: gtk::ProgressBar,
    pub progress_log_label: gtk::Label,
    pub cancel_button: gtk::Button,
    pub dismiss_button: gtk::Button,
    pub sync_button: gtk::Button,
    pub set_latest_button: gtk::Button,
    pub revert_button: gtk::Button,
    pub refresh_button: gtk::Button,
    pub stack: gtk::Stack,
    pub plan: PlanTable,
    pub history: gtk::ListBox,
    pub settings: SettingsPage,
    pub presence: RefCell<Presence>,
    pub progress: RefCell<ProgressLog>,
    pub history_rows: RefCell<Vec<HistoryEntry>>,
    pub dialog: RefCell<Option<confirm::Confirmation>>,
    /// What the plan was last loaded for: (status, target hash, counts).
    plan_key: RefCell<Option<(String, String, String)>>,
}

fn button(mnemonic: &str, name: &str, tooltip: &str) -> gtk::Button {
    let b = gtk::Button::with_mnemonic(mnemonic);
    b.set_widget_name(name);
    b.set_tooltip_text(Some(tooltip));
    b.set_sensitive(false);
    b
}

pub fn format_time(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    glib::DateTime::from_unix_local(unix)
        .and_then(|d| d.format("%Y-%m-%d %H:%M"))
        .map(|s| s.to_string())
        .unwrap_or_else(|_| unix.to_string())
}

pub fn build(app: &gtk::Application, daemon: Daemon) -> Rc<Ui> {
    let window = gtk::ApplicationWindow::builder()
        .application(app)
        .title("pacsync")
        .default_width(900)
        .default_height(620)
        .icon_name("pacsync")
        .build();

    let header_bar = gtk::HeaderBar::new();
    let switcher = gtk::StackSwitcher::new();
    header_bar.set_title_widget(Some(&switcher));
    let refresh_button = gtk::Button::from_icon_name("view-refresh-symbolic");
    refresh_button.set_widget_name("refresh");
    refresh_button.set_tooltip_text(Some("Re-read the packages and ask the server (F5)"));
    header_bar.pack_start(&refresh_button);
    window.set_titlebar(Some(&header_bar));

    let header::Header {
        root: status_box,
        status_icon,
        status_label,
        details,
    } = header::build();

    // Actions.
    let sync_button = button(
        "_Sync…",
        "sync",
        "Make this machine equal to the pool's target",
    );
    sync_button.add_css_class("suggested-action");
    let set_latest_button = button(
        "Set as _latest…",
        "set-latest",
        "Make this machine's packages the pool's new target",
    );
    let revert_button = button(
        "_Revert…",
        "revert",
        "Go back to the state before the last operation",
    );
    let actions = gtk::Box::new(gtk::Orientation::Horizontal, 8);
    actions.append(&sync_button);
    actions.append(&set_latest_button);
    actions.append(&revert_button);

    // Errors, in place.
    let error_label = gtk::Label::builder().xalign(0.0).wrap(true).build();
    error_label.set_widget_name("error");
    let error_bar = gtk::InfoBar::builder()
        .message_type(gtk::MessageType::Error)
        .show_close_button(true)
        .revealed(false)
        .build();
    error_bar.add_child(&error_label);
    error_bar.connect_response(|bar, _| bar.set_revealed(false));

    let progress::Panel {
        root: progress_panel,
        title: progress_title,
        bar: progress_bar,
        log_label: progress_log_label,
        cancel_button,
        dismiss_button,
    } = progress::build();

    // Pages.
    let plan = PlanTable::new();
    let (history, history_scroll) = history::build();
    let settings = SettingsPage::new();
    let stack = gtk::Stack::new();
    stack.add_titled(&plan.root, Some("plan"), "_Plan");
    stack.add_titled(&history_scroll, Some("history"), "_History");
    stack.add_titled(&settings.root, Some("settings"), "Se_ttings");
    for page in ["plan", "history", "settings"] {
        if let Some(p) = stack.child_by_name(page) {
            stack.page(&p).set_use_underline(true);
        }
    }
    switcher.set_stack(Some(&stack));

    let content = gtk::Box::new(gtk::Orientation::Vertical, 12);
    content.set_margin_top(12);
    content.set_margin_bottom(12);
    content.set_margin_start(18);
    content.set_margin_end(18);
    let outer = gtk::Box::new(gtk::Orientation::Vertical, 0);
    outer.append(&error_bar);
    content.append(&status_box);
    content.append(&actions);
    content.append(&progress_panel);
    content.append(&stack);
    outer.append(&content);
    window.set_child(Some(&outer));

    let ui = Rc::new(Ui {
        window,
        daemon,
        status_icon,
        status_label,
        details,
        error_bar,
        error_label,
        progress_panel,
        progress_title,
        progress_bar,
        progress_log_label,
        cancel_button,
        dismiss_button,
        sync_button,
        set_latest_button,
        revert_button,
        refresh_button,
        stack,
        plan,
        history,
        settings,
        presence: RefCell::new(Presence::Unavailable("connecting to pacsyncd".into())),
        progress: RefCell::new(ProgressLog::default()),
        history_rows: RefCell::new(Vec::new()),
        dialog: RefCell::new(None),
        plan_key: RefCell::new(None),
    });
    connect_buttons(&ui);
    crate::settings::connect(&ui);
    ui.show_presence();
    ui
}

fn connect_buttons(ui: &Rc<Ui>) {
    for (b, verb) in [
        (&ui.sync_button, Verb::Sync),
        (&ui.set_latest_button, Verb::SetLatest),
        (&ui.revert_button, Verb::Revert),
    ] {
        let weak = Rc::downgrade(ui);
        b.connect_clicked(move |_| {
            if let Some(ui) = weak.upgrade() {
                confirm::ask(&ui, verb);
            }
        });
    }
    let weak = Rc::downgrade(ui);
    ui.refresh_button.connect_clicked(move |_| {
        if let Some(ui) = weak.upgrade() {
            ui.refresh();
        }
    });
    let weak = Rc::downgrade(ui);
    ui.cancel_button.connect_clicked(move |b| {
        let Some(ui) = weak.upgrade() else { return };
        b.set_sensitive(false);
        glib::spawn_future_local(async move {
            let result = ui.daemon.call(|d| async move { d.cancel().await }).await;
            if let Err(e) = result {
                ui.show_error(&e);
            }
        });
    });
    let weak = Rc::downgrade(ui);
    ui.dismiss_button.connect_clicked(move |_| {
        if let Some(ui) = weak.upgrade() {
            *ui.progress.borrow_mut() = ProgressLog::default();
            ui.show_progress();
        }
    });
}

impl Ui {
    pub fn handle(self: &Rc<Self>, event: Event) {
        match event {
            Event::Presence(p) => {
                let was_ready = matches!(*self.presence.borrow(), Presence::Ready(_));
                *self.presence.borrow_mut() = p;
                self.show_presence();
                if !was_ready && matches!(*self.presence.borrow(), Presence::Ready(_)) {
                    self.load_history();
                }
                self.load_plan_if_moved();
            }
            Event::Progress {
                phase,
                percent,
                message,
            } => {
                self.progress.borrow_mut().record(&phase, percent, &message);
                self.show_progress();
            }
            // Kept by the follower (daemon.rs) for calls; never sent here.
            Event::Connected(_) => {}
            Event::Finished {
                kind,
                outcome,
                message,
            } => {
                {
                    let mut log = self.progress.borrow_mut();
                    log.kind = kind;
                    log.outcome = Some((outcome.clone(), message.clone()));
                }
                self.show_progress();
                if outcome == "failed" {
                    self.error_label.set_text(&message);
                    self.error_bar.set_revealed(true);
                }
                self.load_history();
                // The plan may stay the same size and still have changed.
                self.reload_plan();
            }
        }
    }

    pub fn show_error(&self, e: &CallError) {
        self.error_label.set_text(&e.to_string());
        self.error_bar.set_revealed(true);
    }

    pub fn buttons(&self) -> Buttons {
        model::buttons(&self.presence.borrow())
    }

    pub fn refresh(self: &Rc<Self>) {
        let ui = self.clone();
        glib::spawn_future_local(async move {
            if let Err(e) = ui.daemon.call(|d| async move { d.refresh().await }).await {
                ui.show_error(&e);
            }
            ui.reload_plan();
            ui.load_history();
        });
    }

    /// Run `verb` after the user confirmed it.
    pub fn start(self: &Rc<Self>, verb: Verb, comment: String) {
        *self.progress.borrow_mut() = ProgressLog {
            kind: verb.preview_kind().into(),
            ..ProgressLog::default()
        };
        self.error_bar.set_revealed(false);
        let ui = self.clone();
        glib::spawn_future_local(async move {
            let result = ui
                .daemon
                .call(move |d| async move {
                    match verb {
                        Verb::Sync => d.sync().await,
                        Verb::SetLatest => d.set_latest(&comment).await,
                        Verb::Revert => d.revert().await,
                    }
                })
                .await;
            if let Err(e) = result {
                ui.show_error(&e);
            }
        });
    }

    /// Load the preview of `verb` for the confirmation dialog.
    pub async fn preview(&self, verb: Verb) -> Result<Vec<PlanStepInfo>, CallError> {
        let kind = verb.preview_kind();
        self.daemon
            .call(move |d| async move { d.preview(kind).await })
            .await
    }

    /// The settings' changed values, sent with Configure.
    pub fn configure(self: &Rc<Self>, settings: HashMap<String, String>) {
        let ui = self.clone();
        glib::spawn_future_local(async move {
            let result = ui
                .daemon
                .call(move |d| async move { d.configure(settings).await })
                .await;
            ui.settings
                .report(result.map_err(|e| e.to_string()), "Saved.");
        });
    }

    pub fn register(self: &Rc<Self>, server: String, token: String, name: String) {
        let ui = self.clone();
        glib::spawn_future_local(async move {
            let result = ui
                .daemon
                .call(move |d| async move { d.register(&server, &token, &name).await })
                .await;
            ui.settings.report(
                result.map_err(|e| e.to_string()),
                "Registered: the machine now reports to the server.",
            );
        });
    }
}
