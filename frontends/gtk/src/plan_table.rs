//! The plan as a table: package, installed, target, action; every column
//! sorts (click its header), a search entry filters by package or action.

use std::cell::RefCell;
use std::rc::Rc;

use gtk::prelude::*;
use gtk::{gio, glib};
use pacsync_dbus::PlanStepInfo;

use crate::model::{self, Column};

#[derive(Debug, Clone)]
pub struct PlanTable {
    pub root: gtk::Box,
    pub search: gtk::SearchEntry,
    pub view: gtk::ColumnView,
    store: gio::ListStore,
    sorted: gtk::SortListModel,
    filter_text: Rc<RefCell<String>>,
    placeholder: gtk::Label,
    stack: gtk::Stack,
    columns: Vec<(Column, gtk::ColumnViewColumn)>,
}

fn step_of(obj: &glib::Object) -> Option<PlanStepInfo> {
    obj.downcast_ref::<glib::BoxedAnyObject>()
        .map(|b| b.borrow::<PlanStepInfo>().clone())
}

impl PlanTable {
    pub fn new() -> PlanTable {
        let store = gio::ListStore::new::<glib::BoxedAnyObject>();
        let filter_text = Rc::new(RefCell::new(String::new()));
        let filter = {
            let text = filter_text.clone();
            gtk::CustomFilter::new(move |obj| {
                step_of(obj).is_some_and(|s| model::matches(&s, &text.borrow()))
            })
        };
        let filtered = gtk::FilterListModel::new(Some(store.clone()), Some(filter.clone()));
        let sorted = gtk::SortListModel::new(Some(filtered), None::<gtk::Sorter>);
        let selection = gtk::SingleSelection::new(Some(sorted.clone()));
        selection.set_autoselect(false);
        let view = gtk::ColumnView::new(Some(selection));
        view.set_widget_name("plan-table");
        view.set_show_column_separators(true);
        view.set_reorderable(false);
        let mut columns = Vec::new();
        for column in Column::ALL {
            let factory = gtk::SignalListItemFactory::new();
            factory.connect_setup(|_, item| {
                if let Some(item) = item.downcast_ref::<gtk::ListItem>() {
                    let label = gtk::Label::builder().xalign(0.0).selectable(false).build();
                    item.set_child(Some(&label));
                }
            });
            factory.connect_bind(move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                let text = item
                    .item()
                    .and_then(|o| step_of(&o))
                    .map(|s| column.text(&s))
                    .unwrap_or_default();
                if let Some(label) = item.child().and_downcast::<gtk::Label>() {
                    label.set_text(&text);
                    if column == Column::Action {
                        for class in ["plan-install", "plan-remove", "plan-other"] {
                            label.remove_css_class(class);
                        }
                        label.add_css_class(match text.split(' ').next() {
                            Some("install" | "upgrade") => "plan-install",
                            Some("remove" | "downgrade") => "plan-remove",
                            _ => "plan-other",
                        });
                    }
                }
            });
            let col = gtk::ColumnViewColumn::new(Some(column.title()), Some(factory));
            col.set_expand(true);
            col.set_resizable(true);
            col.set_sorter(Some(&gtk::CustomSorter::new(move |a, b| {
                match (step_of(a), step_of(b)) {
                    (Some(a), Some(b)) => column.compare(&a, &b).into(),
                    _ => gtk::Ordering::Equal,
                }
            })));
            view.append_column(&col);
            columns.push((column, col));
        }
        sorted.set_sorter(view.sorter().as_ref());

        let search = gtk::SearchEntry::builder()
            .placeholder_text("Filter by package or action")
            .build();
        search.set_widget_name("plan-filter");
        {
            let text = filter_text.clone();
            let filter = filter.clone();
            search.connect_search_changed(move |e| {
                *text.borrow_mut() = e.text().to_string();
                filter.changed(gtk::FilterChange::Different);
            });
        }
        let placeholder = gtk::Label::builder()
            .wrap(true)
            .css_classes(["dim-label"])
            .build();
        let scroller = gtk::ScrolledWindow::builder()
            .child(&view)
            .vexpand(true)
            .hexpand(true)
            .build();
        let stack = gtk::Stack::new();
        stack.add_named(&scroller, Some("table"));
        stack.add_named(&placeholder, Some("placeholder"));
        let root = gtk::Box::new(gtk::Orientation::Vertical, 6);
        root.append(&search);
        root.append(&stack);
        PlanTable {
            root,
            search,
            view,
            store,
            sorted,
            filter_text,
            placeholder,
            stack,
            columns,
        }
    }

    pub fn set_steps(&self, steps: &[PlanStepInfo]) {
        let objects: Vec<glib::BoxedAnyObject> = steps
            .iter()
            .cloned()
            .map(glib::BoxedAnyObject::new)
            .collect();
        self.store.splice(0, self.store.n_items(), &objects);
        if steps.is_empty() {
            self.show_placeholder("Nothing to change: this machine is what its pool wants.");
        } else {
            self.stack.set_visible_child_name("table");
        }
    }

    /// Empty the table and say why.
    pub fn show_placeholder(&self, text: &str) {
        self.store.remove_all();
        self.placeholder.set_text(text);
        self.stack.set_visible_child_name("placeholder");
    }

    /// The rows as shown (filtered and sorted), as cell texts.
    pub fn visible_rows(&self) -> Vec<Vec<String>> {
        (0..self.sorted.n_items())
            .filter_map(|i| self.sorted.item(i))
            .filter_map(|o| step_of(&o))
            .map(|s| Column::ALL.iter().map(|c| c.text(&s)).collect())
            .collect()
    }

    pub fn placeholder_text(&self) -> Option<String> {
        (self.stack.visible_child_name().as_deref() == Some("placeholder"))
            .then(|| self.placeholder.text().to_string())
    }

    pub fn filter_text(&self) -> String {
        self.filter_text.borrow().clone()
    }

    /// Sort by `title`'s column, as a click on its header does.
    pub fn sort_by(&self, title: &str, descending: bool) -> bool {
        let Some((_, col)) = self.columns.iter().find(|(c, _)| c.title() == title) else {
            return false;
        };
        let order = if descending {
            gtk::SortType::Descending
        } else {
            gtk::SortType::Ascending
        };
        self.view.sort_by_column(Some(col), order);
        true
    }
}
