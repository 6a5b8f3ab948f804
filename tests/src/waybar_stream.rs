//! The JSON lines of `pacsync waybar`, read on a thread so a test can wait
//! on them with a deadline.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// A running `pacsync waybar`; killed when dropped.
#[derive(Debug)]
pub struct WaybarStream {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl WaybarStream {
    /// Start `cli --bus ADDRESS waybar`.
    pub fn start(cli: &Path, bus_address: &str) -> anyhow::Result<WaybarStream> {
        let mut child = Command::new(cli)
            .args(["--bus", bus_address, "waybar"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} waybar", cli.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|e| Value::String(format!("not JSON ({e}): {line}")));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Ok(WaybarStream { child, lines })
    }

    /// The next line, waiting at most `within`.
    pub fn next(&self, within: Duration) -> anyhow::Result<Value> {
        let v = self
            .lines
            .recv_timeout(within)
            .with_context(|| format!("no line within {within:?}"))?;
        if let Value::String(s) = &v {
            bail!("{s}");
        }
        Ok(v)
    }

    /// Wait for a line whose class is `class`; returns it.
    pub fn wait_class(&self, class: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Ok(v) if v["class"] == class => return Ok(v),
                Ok(v) => seen.push(v["class"].to_string()),
                Err(_) => bail!(
                    "no line with class {class} within {within:?}; classes seen: {}",
                    seen.join(", ")
                ),
            }
        }
    }
}

impl Drop for WaybarStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
