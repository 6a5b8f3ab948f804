//! Any bytes given to the sync database reader return entries or a typed
//! error, never a panic; what it returns is sorted by name without repeats.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsync_core::syncdb::{SyncDbLimits, parse_sync_db_with_limits};

fuzz_target!(|data: &[u8]| {
    // Small caps keep decompression bombs from exhausting the fuzzer's memory.
    let limits = SyncDbLimits {
        max_decompressed: 16 << 20,
        max_desc: 256 << 10,
        max_files: 1 << 20,
    };
    if let Ok(entries) = parse_sync_db_with_limits(data, &limits) {
        assert!(entries.windows(2).all(|pair| pair[0].name < pair[1].name));
    }
});
