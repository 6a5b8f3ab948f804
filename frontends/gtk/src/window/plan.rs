//! Keeping the plan page current: the preview is asked for again only
//! when the reading it was made for has moved.

use std::rc::Rc;

use gtk::glib;

use super::Ui;
use crate::model::Presence;

impl Ui {
    pub(super) fn load_plan_if_moved(self: &Rc<Self>) {
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

    /// Load the plan again even if the reading looks the same.
    pub(super) fn reload_plan(self: &Rc<Self>) {
        *self.plan_key.borrow_mut() = None;
        self.load_plan_if_moved();
    }
}
