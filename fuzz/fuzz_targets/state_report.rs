//! Any text given as a state report: the fast reader gives up or reads
//! exactly what serde reads, and never accepts what serde refuses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsync_core::report::{fast, read_report, read_report_serde};
use pacsync_core::state::PackageState;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let by_serde = read_report_serde(json);
    if let Some((hash, packages)) = fast::read(json) {
        let fast = (hash.to_owned(), packages.map(PackageState::from));
        match &by_serde {
            Ok(read) => assert_eq!(&fast, read, "the readers differ"),
            Err(e) => panic!("fast read what serde refuses: {e}"),
        }
    }
    assert_eq!(read_report(json).ok(), by_serde.ok());
});
