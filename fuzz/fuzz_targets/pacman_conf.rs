//! `pacman.conf` parsing never panics, whatever the main file and its
//! includes contain.
//!
//! The input is split at 0xFF bytes into the main file and two include files
//! (0xFF never occurs in UTF-8 text, so the fuzzer can place the cut anywhere
//! without spending other bytes), which `Include = /etc/pacman.d/*.conf` or
//! their full paths reach, so nesting, loops and globs are exercised.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsync_core::pacman_conf::{self, IncludeSource};

struct Files<'a>([(&'static str, &'a [u8]); 3]);

impl IncludeSource for Files<'_> {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, text)| text.to_vec())
            .ok_or_else(|| "No such file or directory".to_owned())
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, String> {
        Ok(self
            .0
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| matches(pattern, name))
            .map(str::to_owned)
            .collect())
    }
}

/// A `*` matches any run of characters: enough to reach both includes.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0xff);
    let files = Files([
        ("/etc/pacman.conf", parts.next().unwrap_or_default()),
        ("/etc/pacman.d/a.conf", parts.next().unwrap_or_default()),
        ("/etc/pacman.d/b.conf", parts.next().unwrap_or_default()),
    ]);
    match pacman_conf::parse("/etc/pacman.conf", &files, "x86_64") {
        Ok(conf) => {
            for warning in &conf.warnings {
                let _ = warning.to_string();
            }
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
