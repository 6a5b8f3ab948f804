//! Running the pacman binary.
//!
//! pacsync calls pacman rather than linking libalpm: the binding needs a
//! newer libalpm than many systems have, and pacman's own command is what
//! every Arch user trusts. Everything runs with `LC_ALL=C` and without
//! prompts or progress bars; the only output read is the `(i/n) …` step
//! lines (for progress), which pacman 6 and 7 print alike.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::machine::PacmanPaths;

#[derive(Debug, thiserror::Error)]
pub enum PacmanError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "pacman's database is locked ({}): another pacman is running; waited {}s. \
         If no pacman runs, a crashed one left the lock behind: remove it by hand after checking",
        lock.display(),
        waited.as_secs()
    )]
    Locked { lock: PathBuf, waited: Duration },
}

/// One `(i/n) text` line of pacman's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub index: u32,
    pub total: u32,
    pub text: String,
}

impl Step {
    pub fn parse(line: &str) -> Option<Step> {
        let rest = line.trim_start().strip_prefix('(')?;
        let (counts, text) = rest.split_once(") ")?;
        let (i, n) = counts.split_once('/')?;
        Some(Step {
            index: i.trim().parse().ok()?,
            total: n.trim().parse().ok()?,
            text: text.trim().to_owned(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Pacman {
    paths: PacmanPaths,
    lock_wait: Duration,
}

impl Pacman {
    pub fn new(paths: PacmanPaths, lock_wait: Duration) -> Self {
        Pacman { paths, lock_wait }
    }

    fn args(&self, verb: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--config".into(),
            self.paths.config.clone().into(),
            "--root".into(),
            self.paths.root.clone().into(),
            "--dbpath".into(),
            self.paths.dbpath.clone().into(),
            "--color".into(),
            "never".into(),
        ];
        args.extend(verb.iter().map(OsString::from));
        // -D takes neither flag; the transaction verbs take both.
        if verb.first() != Some(&"-D") {
            args.extend(["--noconfirm".into(), "--noprogressbar".into()]);
        }
        args
    }

    /// Wait, a bounded time, for another pacman's lock to go. A lock is
    /// never removed here: only a person can tell a stale one.
    async fn wait_for_lock(&self) -> Result<(), PacmanError> {
        let lock = self.paths.lock_file();
        let start = Instant::now();
        while lock.exists() {
            if start.elapsed() >= self.lock_wait {
                return Err(PacmanError::Locked {
                    lock,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Run pacman with `verb` and the given operands, feeding each `(i/n)`
    /// line to `on_step`.
    pub async fn run(
        &self,
        verb: &[&str],
        operands: &[String],
        mut on_step: impl FnMut(Step),
    ) -> Result<(), PacmanError> {
        self.wait_for_lock().await?;
        let mut args = self.args(verb);
        args.extend(operands.iter().map(OsString::from));
        let command_line = format!(
            "{} {}",
            self.paths.binary.display(),
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        tracing::info!(command = %command_line, "running pacman");
        let mut child = Command::new(&self.paths.binary)
            .args(&args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| PacmanError::Spawn {
                command: command_line.clone(),
                source,
            })?;
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let err_task = tokio::spawn(async move {
            let mut buf = String::new();
            // Reading to the end is what keeps pacman from blocking on a full pipe.
            let _ = stderr.read_to_string(&mut buf).await;
            buf
        });
        let mut out_lines = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(step) = Step::parse(&line) {
                    on_step(step);
                }
                out_lines.push(line);
            }
        }
        let status = child.wait().await.map_err(|source| PacmanError::Spawn {
            command: command_line.clone(),
            source,
        })?;
        let stderr = err_task.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        if stderr.contains("unable to lock database") {
            return Err(PacmanError::Locked {
                lock: self.paths.lock_file(),
                waited: Duration::ZERO,
            });
        }
        // pacman prints the reason on stderr, the context on stdout: keep both.
        let tail: Vec<&str> = out_lines
            .iter()
            .rev()
            .take(20)
            .rev()
            .map(String::as_str)
            .collect();
        let mut output = stderr.trim().to_owned();
        if !tail.is_empty() {
            output = format!("{output}\n{}", tail.join("\n")).trim().to_owned();
        }
        Err(PacmanError::Failed {
            command: command_line,
            status: status.to_string(),
            output,
        })
    }

    /// Resolve a `-U` transaction without carrying it out: dependencies,
    /// conflicts and the files themselves are checked, nothing is installed.
    pub async fn check_upgrade(&self, files: &[String]) -> Result<(), PacmanError> {
        self.run(&["-U", "--print", "--print-format", "%n"], files, |_| {})
            .await
    }

    pub async fn upgrade(
        &self,
        files: &[String],
        on_step: impl FnMut(Step),
    ) -> Result<(), PacmanError> {
        self.run(&["-U"], files, on_step).await
    }

    pub async fn remove(
        &self,
        names: &[String],
        on_step: impl FnMut(Step),
    ) -> Result<(), PacmanError> {
        self.run(&["-R"], names, on_step).await
    }

    pub async fn mark(&self, names: &[String], dependency: bool) -> Result<(), PacmanError> {
        let flag = if dependency {
            "--asdeps"
        } else {
            "--asexplicit"
        };
        self.run(&["-D", flag], names, |_| {}).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines() {
        assert_eq!(
            Step::parse("(2/5) upgrading bash"),
            Some(Step {
                index: 2,
                total: 5,
                text: "upgrading bash".into()
            })
        );
        assert_eq!(Step::parse(":: Processing package changes..."), None);
        assert_eq!(Step::parse("(x/5) nope"), None);
    }
}
