//! Running external tools (pacman, repo-add) so that a failure explains itself:
//! the full command line, the exit status and everything the tool printed.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::process::{Command, ExitStatus, Output};

/// A command that could not be started, failed, or printed something we could
/// not read.
#[derive(Debug)]
pub enum CommandError {
    Spawn {
        command_line: String,
        source: io::Error,
    },
    Failed {
        command_line: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    UnexpectedOutput {
        command_line: String,
        detail: String,
    },
}

impl CommandError {
    pub fn command_line(&self) -> &str {
        match self {
            CommandError::Spawn { command_line, .. }
            | CommandError::Failed { command_line, .. }
            | CommandError::UnexpectedOutput { command_line, .. } => command_line,
        }
    }

    /// The exit code, when the command ran and exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }

    /// What the failed command printed on stderr (empty for other failures).
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// What the failed command printed on stdout. pacman prints some of its
    /// reasons here, e.g. ":: removing foo breaks dependency …".
    pub fn stdout(&self) -> &str {
        match self {
            CommandError::Failed { stdout, .. } => stdout,
            _ => "",
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Spawn {
                command_line,
                source,
            } => write!(f, "could not run `{command_line}`: {source}"),
            CommandError::Failed {
                command_line,
                status,
                stdout,
                stderr,
            } => write!(
                f,
                "`{command_line}` failed ({status})\n--- stderr ---\n{stderr}--- stdout ---\n{stdout}"
            ),
            CommandError::UnexpectedOutput {
                command_line,
                detail,
            } => write!(f, "unexpected output from `{command_line}`: {detail}"),
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Run `cmd` to completion; a non-zero exit is an error carrying its output.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let output = run_unchecked(cmd)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(failed(cmd, output))
    }
}

/// Run `cmd` to completion and return its output whatever the exit status,
/// for callers to whom some non-zero exits are answers (`pacman -Qd` exits 1
/// when nothing matches).
pub fn run_unchecked(cmd: &mut Command) -> Result<Output, CommandError> {
    cmd.output().map_err(|source| CommandError::Spawn {
        command_line: command_line(cmd),
        source,
    })
}

/// The error for a command that exited with `output.status`.
pub fn failed(cmd: &Command, output: Output) -> CommandError {
    CommandError::Failed {
        command_line: command_line(cmd),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The command as one could paste it into a shell.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@%,".contains(&b));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_what_a_shell_would_split() {
        let mut cmd = Command::new("pacman");
        cmd.args(["-S", "foo bar", "it's", "", "a>=1"]);
        assert_eq!(
            command_line(&cmd),
            r"pacman -S 'foo bar' 'it'\''s' '' 'a>=1'"
        );
    }
}
