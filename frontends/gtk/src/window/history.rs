//! The history page: the daemon's last operations, newest first.

use std::rc::Rc;

use gtk::glib;
use gtk::prelude::*;
use pacsync_dbus::HistoryEntry;

use super::{Ui, format_time};
use crate::model;

/// The list and the scrolled page that holds it.
pub(super) fn build() -> (gtk::ListBox, gtk::ScrolledWindow) {
    let history = gtk::ListBox::new();
    history.set_widget_name("history");
    history.set_selection_mode(gtk::SelectionMode::None);
    history.add_css_class("boxed-list");
    let history_scroll = gtk::ScrolledWindow::builder()
        .child(&history)
        .vexpand(true)
        .build();
    (history, history_scroll)
}

impl Ui {
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
}
