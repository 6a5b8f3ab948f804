//! The status header: the status's icon and words, and the machine's
//! pool, target and last sync; the action buttons follow the same reading.

use gtk::prelude::*;

use super::{Ui, format_time};
use crate::model::{self, Presence};

pub(super) struct Header {
    pub root: gtk::Box,
    pub status_icon: gtk::Image,
    pub status_label: gtk::Label,
    pub details: gtk::Label,
}

pub(super) fn build() -> Header {
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

    Header {
        root: status_box,
        status_icon,
        status_label,
        details,
    }
}

impl Ui {
    pub(super) fn show_presence(&self) {
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
}
