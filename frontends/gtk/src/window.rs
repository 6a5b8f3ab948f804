//! The main window: status header, actions, progress, and the plan,
//! history and settings pages. All state comes from [`Event`]s; every
//! button ends in a daemon call whose failure is shown in place.

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

/// What the progress panel has seen of the current (or last) operation.
#[derive(Debug, Default, Clone)]
pub struct ProgressLog {
    pub kind: String,
    pub lines: Vec<String>,
    pub outcome: Option<(String, String)>,
}

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

    let header = gtk::HeaderBar::new();
    let switcher = gtk::StackSwitcher::new();
    header.set_title_widget(Some(&switcher));
    let refresh_button = gtk::Button::from_icon_name("view-refresh-symbolic");
    refresh_button.set_widget_name("refresh");
    refresh_button.set_tooltip_text(Some("Re-read the packages and ask the server (F5)"));
    header.pack_start(&refresh_button);
    window.set_titlebar(Some(&header));

    // Status header.
    let status_icon = gtk::Image::from_icon_name("pacsync-unavailable");
    status_icon.set_pixel_size(48);
    let status_label = gtk::Label::builder()
        .xalign(0.0)
        .css_classes(["title-1", "status"])
        .build();
    status_label.set_widget_name("status");
    let details = gtk::Label::builder().xalign(0.0).wrap(true).build();
    details.set_widget_name("details");
    let text_box = gtk::Box::new(gtk::Orientation::Vertical, 4);
    text_box.append(&status_label);
    text_box.append(&details);
    let status_box = gtk::Box::new(gtk::Orientation::Horizontal, 16);
    status_box.append(&status_icon);
    status_box.append(&text_box);

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

    // Progress.
    let progress_title = gtk::Label::builder()
        .xalign(0.0)
        .css_classes(["heading"])
        .build();
    let progress_bar = gtk::ProgressBar::builder().show_text(true).build();
    let progress_log_label = gtk::Label::builder()
        .xalign(0.0)
        .yalign(0.0)
        .selectable(true)
        .wrap(true)
        .css_classes(["monospace"])
        .build();
    let progress_scroll = gtk::ScrolledWindow::builder()
        .child(&progress_log_label)
        .min_content_height(80)
        .max_content_height(140)
        .propagate_natural_height(true)
        .build();
    let cancel_button = button(
        "_Cancel operation",
        "cancel",
        "Cancel (possible until pacman starts)",
    );
    cancel_button.add_css_class("destructive-action");
    let dismiss_button = button("_Close", "dismiss", "Hide this report");
    dismiss_button.set_sensitive(true);
    let progress_buttons = gtk::Box::new(gtk::Orientation::Horizontal, 8);
    progress_buttons.set_halign(gtk::Align::End);
    progress_buttons.append(&cancel_button);
    progress_buttons.append(&dismiss_button);
    let progress_panel = gtk::Box::new(gtk::Orientation::Vertical, 6);
    progress_panel.set_widget_name("progress");
    progress_panel.add_css_class("card");
    progress_panel.set_visible(false);
    for w in [
        progress_title.upcast_ref::<gtk::Widget>(),
        progress_bar.upcast_ref(),
        progress_scroll.upcast_ref(),
        progress_buttons.upcast_ref(),
    ] {
        progress_panel.append(w);
    }

    // Pages.
    let plan = PlanTable::new();
    let history = gtk::ListBox::new();
    history.set_widget_name("history");
    history.set_selection_mode(gtk::SelectionMode::None);
    history.add_css_class("boxed-list");
    let history_scroll = gtk::ScrolledWindow::builder()
        .child(&history)
        .vexpand(true)
        .build();
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
                {
                    let mut log = self.progress.borrow_mut();
                    if log.outcome.is_some() {
                        *log = ProgressLog::default();
                    }
                    let line = if message.is_empty() {
                        format!("{percent:>3}%  {phase}")
                    } else {
                        format!("{percent:>3}%  {phase}: {message}")
                    };
                    if log.lines.last() != Some(&line) {
                        log.lines.push(line);
                    }
                }
                self.show_progress();
            }
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
                *self.plan_key.borrow_mut() = None;
                self.load_plan_if_moved();
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

    fn show_presence(&self) {
        let presence = self.presence.borrow().clone();
        self.status_icon
            .set_icon_name(Some(model::icon_name(&presence)));
        for class in self.status_label.css_classes() {
            if class.starts_with("status-") {
                self.status_label.remove_css_class(&class);
            }
        }
        match &presence {
            Presence::Unavailable(why) => {
                self.status_label.set_text("pacsyncd is not available");
                self.details.set_text(&format!(
                    "{why}. The window follows it again as soon as it starts."
                ));
                self.status_label.add_css_class("status-unavailable");
            }
            Presence::Ready(v) => {
                let mut title = pacsync_dbus::status_word(&v.status);
                if v.status == "offline" && !v.last_known_status.is_empty() {
                    title.push_str(&format!(
                        " (last known: {})",
                        pacsync_dbus::status_word(&v.last_known_status).to_lowercase()
                    ));
                } else if matches!(v.status.as_str(), "behind" | "ahead" | "diverged") {
                    title.push_str(&format!(" — {}", v.plan.summary()));
                }
                self.status_label.set_text(&title);
                self.status_label
                    .add_css_class(&format!("status-{}", v.status));
                let mut lines = vec![format!(
                    "Pool: {}    Machine: {}",
                    if v.pool.is_empty() { "—" } else { &v.pool },
                    if v.machine_name.is_empty() {
                        "—"
                    } else {
                        &v.machine_name
                    }
                )];
                if v.target.hash.is_empty() {
                    lines.push("Target: none yet".into());
                } else {
                    let mut t = format!(
                        "Target: {} set {} on {}",
                        &v.target.hash[..v.target.hash.len().min(12)],
                        v.target.origin(),
                        format_time(v.target.set_at)
                    );
                    if !v.target.comment.is_empty() {
                        t.push_str(&format!(" — “{}”", v.target.comment));
                    }
                    lines.push(t);
                }
                lines.push(format!(
                    "Last sync: {}    Last report: {}",
                    format_time(v.last_sync),
                    format_time(v.last_report)
                ));
                self.details.set_text(&lines.join("\n"));
                if !v.last_error.is_empty() && v.status == "error" {
                    self.error_label.set_text(&v.last_error);
                    self.error_bar.set_revealed(true);
                }
                self.settings.show(v);
            }
        }
        let b = self.buttons();
        self.sync_button.set_sensitive(b.sync);
        self.set_latest_button.set_sensitive(b.set_latest);
        self.revert_button.set_sensitive(b.revert);
        self.refresh_button.set_sensitive(b.refresh);
        self.show_progress();
    }

    fn show_progress(&self) {
        let presence = self.presence.borrow().clone();
        let log = self.progress.borrow().clone();
        let running = match &presence {
            Presence::Ready(v) if v.is_busy() => Some(v.operation.clone()),
            _ => None,
        };
        self.cancel_button
            .set_sensitive(running.is_some() && self.buttons().cancel);
        self.cancel_button.set_visible(running.is_some());
        self.dismiss_button
            .set_visible(running.is_none() && log.outcome.is_some());
        if let Some(op) = &running {
            self.progress_title.set_text(&format!(
                "{} running — {}",
                model::operation_word(&op.kind),
                if op.phase.is_empty() {
                    "starting"
                } else {
                    &op.phase
                }
            ));
            self.progress_bar
                .set_fraction(f64::from(op.percent.min(100)) / 100.0);
            self.progress_bar
                .set_text(Some(&format!("{}%", op.percent)));
        } else if let Some((outcome, message)) = &log.outcome {
            self.progress_title.set_text(&format!(
                "{} {}: {}",
                model::operation_word(&log.kind),
                outcome,
                message
            ));
            if outcome == "succeeded" {
                self.progress_bar.set_fraction(1.0);
                self.progress_bar.set_text(Some("100%"));
            }
        }
        self.progress_log_label.set_text(&log.lines.join("\n"));
        self.progress_panel
            .set_visible(running.is_some() || log.outcome.is_some());
    }

    pub fn refresh(self: &Rc<Self>) {
        let ui = self.clone();
        glib::spawn_future_local(async move {
            if let Err(e) = ui.daemon.call(|d| async move { d.refresh().await }).await {
                ui.show_error(&e);
            }
            *ui.plan_key.borrow_mut() = None;
            ui.load_plan_if_moved();
            ui.load_history();
        });
    }

    fn load_plan_if_moved(self: &Rc<Self>) {
        let key = match &*self.presence.borrow() {
            Presence::Ready(v) if !v.is_busy() => (
                v.status.clone(),
                v.target.hash.clone(),
                format!("{:?}", v.plan),
            ),
            _ => return,
        };
        if self.plan_key.borrow().as_ref() == Some(&key) {
            return;
        }
        *self.plan_key.borrow_mut() = Some(key.clone());
        let ui = self.clone();
        glib::spawn_future_local(async move {
            let result = ui
                .daemon
                .call(|d| async move { d.preview("sync").await })
                .await;
            // A newer reading may have asked again meanwhile.
            if ui.plan_key.borrow().as_ref() != Some(&key) {
                return;
            }
            match result {
                Ok(steps) => ui.plan.set_steps(&steps),
                Err(e) => ui.plan.show_placeholder(&e.to_string()),
            }
        });
    }

    pub fn load_history(self: &Rc<Self>) {
        let ui = self.clone();
        glib::spawn_future_local(async move {
            match ui.daemon.call(|d| async move { d.history(50).await }).await {
                Ok(entries) => ui.show_history(entries),
                Err(e) => ui.show_error(&e),
            }
        });
    }

    fn show_history(&self, entries: Vec<HistoryEntry>) {
        while let Some(row) = self.history.first_child() {
            self.history.remove(&row);
        }
        if entries.is_empty() {
            let l = gtk::Label::new(Some("No operations yet."));
            l.add_css_class("dim-label");
            l.set_margin_top(12);
            l.set_margin_bottom(12);
            self.history.append(&l);
        }
        for e in &entries {
            let row = gtk::Box::new(gtk::Orientation::Horizontal, 12);
            row.set_margin_top(6);
            row.set_margin_bottom(6);
            row.set_margin_start(8);
            row.set_margin_end(8);
            let cells = [
                format_time(e.finished_at),
                if e.kind == "target" {
                    "new target".into()
                } else {
                    model::operation_word(&e.kind)
                },
                e.outcome.clone(),
                e.caller.clone(),
                e.message.clone(),
            ];
            for (i, text) in cells.iter().enumerate() {
                let l = gtk::Label::builder()
                    .label(text.as_str())
                    .xalign(0.0)
                    .wrap(i == 4)
                    .hexpand(i == 4)
                    .width_chars(if i == 4 { 20 } else { 12 })
                    .build();
                if i == 2 {
                    l.add_css_class(&format!("outcome-{}", e.outcome));
                }
                row.append(&l);
            }
            self.history.append(&row);
        }
        *self.history_rows.borrow_mut() = entries;
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
