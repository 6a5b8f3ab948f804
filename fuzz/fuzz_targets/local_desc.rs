//! Any bytes given to the `desc` reader and the local `desc` parser return
//! a value or a typed error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsync_core::desc::DescReader;
use pacsync_core::localdb::{parse_local_desc, split_entry_name};

fuzz_target!(|data: &[u8]| {
    if let Ok(reader) = DescReader::new(data) {
        for field in reader.flatten() {
            let values = field.values().count();
            assert_eq!(values, field.len(), "value count of %{}%", field.key);
            let _ = field.single("FUZZ");
            let _ = field.number::<u64>("FUZZ");
        }
    }
    if let Ok(package) = parse_local_desc(data) {
        assert!(!package.name.is_empty() && !package.version.as_str().is_empty());
    }
    if let Ok(name) = std::str::from_utf8(data) {
        if let Some((name, version)) = split_entry_name(name) {
            assert!(!name.is_empty() && !version.is_empty());
        }
    }
});
