//! Settings: the server and machine name (Configure), the pool (assigned on
//! the server, shown here), and registration with an enrollment token.

use std::collections::HashMap;
use std::rc::Rc;

use gtk::prelude::*;

use crate::model::DaemonView;
use crate::window::Ui;

#[derive(Debug, Clone)]
pub struct SettingsPage {
    pub root: gtk::Box,
    pub server: gtk::Entry,
    pub machine: gtk::Entry,
    pub pool: gtk::Label,
    pub save: gtk::Button,
    pub reg_server: gtk::Entry,
    pub reg_token: gtk::PasswordEntry,
    pub reg_name: gtk::Entry,
    pub register: gtk::Button,
    pub result: gtk::Label,
    pub version: gtk::Label,
}

fn row(grid: &gtk::Grid, r: i32, mnemonic: &str, widget: &impl IsA<gtk::Widget>) {
    let label = gtk::Label::with_mnemonic(mnemonic);
    label.set_xalign(1.0);
    label.set_mnemonic_widget(Some(widget));
    grid.attach(&label, 0, r, 1, 1);
    grid.attach(widget, 1, r, 1, 1);
}

fn section(title: &str) -> gtk::Label {
    gtk::Label::builder()
        .label(title)
        .xalign(0.0)
        .css_classes(["heading"])
        .margin_top(12)
        .build()
}

impl SettingsPage {
    pub fn new() -> SettingsPage {
        let server = gtk::Entry::builder().hexpand(true).build();
        server.set_widget_name("settings-server");
        let machine = gtk::Entry::new();
        machine.set_widget_name("settings-machine");
        let pool = gtk::Label::builder().xalign(0.0).selectable(true).build();
        let save = gtk::Button::with_mnemonic("_Save");
        save.set_widget_name("settings-save");
        save.set_halign(gtk::Align::End);
        let reg_server = gtk::Entry::builder()
            .placeholder_text("https://pacsync.example.org")
            .hexpand(true)
            .build();
        let reg_token = gtk::PasswordEntry::builder().show_peek_icon(true).build();
        let reg_name = gtk::Entry::new();
        let register = gtk::Button::with_mnemonic("_Register");
        register.set_widget_name("settings-register");
        register.set_halign(gtk::Align::End);
        let result = gtk::Label::builder().xalign(0.0).wrap(true).build();
        result.set_widget_name("settings-result");
        let version = gtk::Label::builder()
            .xalign(0.0)
            .css_classes(["dim-label"])
            .build();

        let grid = gtk::Grid::builder()
            .column_spacing(12)
            .row_spacing(8)
            .build();
        row(&grid, 0, "_Server URL", &server);
        row(&grid, 1, "_Machine name", &machine);
        row(&grid, 2, "Pool", &pool);
        grid.attach(&save, 1, 3, 1, 1);
        let reg = gtk::Grid::builder()
            .column_spacing(12)
            .row_spacing(8)
            .build();
        row(&reg, 0, "Ser_ver URL", &reg_server);
        row(&reg, 1, "Enrollment _token", &reg_token);
        row(&reg, 2, "Mach_ine name", &reg_name);
        reg.attach(&register, 1, 3, 1, 1);

        let root = gtk::Box::new(gtk::Orientation::Vertical, 8);
        root.append(&section("This machine"));
        root.append(&grid);
        let hint = gtk::Label::builder()
            .label("The pool is assigned by an administrator on the server.")
            .xalign(0.0)
            .css_classes(["dim-label"])
            .build();
        root.append(&hint);
        root.append(&section("Register with a server"));
        root.append(&reg);
        root.append(&result);
        root.append(&version);
        SettingsPage {
            root,
            server,
            machine,
            pool,
            save,
            reg_server,
            reg_token,
            reg_name,
            register,
            result,
            version,
        }
    }

    /// Show the daemon's values, leaving fields the user is editing alone.
    pub fn show(&self, v: &DaemonView) {
        for (entry, value) in [
            (&self.server, &v.server_url),
            (&self.machine, &v.machine_name),
        ] {
            if !entry.has_focus() && entry.text() != value.as_str() {
                entry.set_text(value);
            }
        }
        self.pool.set_text(if v.pool.is_empty() {
            "— (none yet)"
        } else {
            &v.pool
        });
        if self.reg_server.text().is_empty() && !v.server_url.is_empty() {
            self.reg_server.set_text(&v.server_url);
        }
        if self.reg_name.text().is_empty() && !v.machine_name.is_empty() {
            self.reg_name.set_text(&v.machine_name);
        }
        self.version
            .set_text(&format!("pacsyncd {}", v.daemon_version));
    }

    pub fn report(&self, result: Result<(), String>, ok: &str) {
        for c in ["error", "success"] {
            self.result.remove_css_class(c);
        }
        match result {
            Ok(()) => {
                self.result.set_text(ok);
                self.result.add_css_class("success");
            }
            Err(e) => {
                self.result.set_text(&e);
                self.result.add_css_class("error");
            }
        }
    }
}

pub fn connect(ui: &Rc<Ui>) {
    let weak = Rc::downgrade(ui);
    ui.settings.save.connect_clicked(move |_| {
        let Some(ui) = weak.upgrade() else { return };
        let mut changes = HashMap::new();
        if let crate::model::Presence::Ready(v) = &*ui.presence.borrow() {
            let server = ui.settings.server.text().to_string();
            if server != v.server_url {
                changes.insert("server_url".to_owned(), server);
            }
            let machine = ui.settings.machine.text().to_string();
            if machine != v.machine_name {
                changes.insert("machine_name".to_owned(), machine);
            }
        }
        if changes.is_empty() {
            ui.settings.report(Ok(()), "Nothing changed.");
        } else {
            ui.configure(changes);
        }
    });
    let weak = Rc::downgrade(ui);
    ui.settings.register.connect_clicked(move |_| {
        let Some(ui) = weak.upgrade() else { return };
        let s = &ui.settings;
        let (server, token, name) = (
            s.reg_server.text().to_string(),
            s.reg_token.text().to_string(),
            s.reg_name.text().to_string(),
        );
        if server.trim().is_empty() || token.trim().is_empty() {
            s.report(
                Err("A server URL and an enrollment token are needed.".into()),
                "",
            );
            return;
        }
        ui.register(server, token, name);
    });
}
