//! What can go wrong in a `pacman.conf`, worded after pacman's own messages so
//! a user can match ours with what `pacman` prints.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A configuration pacman would refuse, with the file and line to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("config file {file} could not be read: {message}")]
    Read { file: String, message: String },

    #[error("config file {file}, line {line}: All directives must belong to a section.")]
    OutsideSection { file: String, line: usize },

    #[error("config file {file}, line {line}: directive '{directive}' needs a value")]
    MissingValue {
        file: String,
        line: usize,
        directive: String,
    },

    #[error("config file {file}, line {line}: invalid value for '{directive}' : '{value}'")]
    InvalidValue {
        file: String,
        line: usize,
        directive: String,
        value: String,
    },

    #[error(
        "config file {file}, line {line}: value for '{directive}' must be between 1 and {} : '{value}'",
        i32::MAX
    )]
    OutOfRange {
        file: String,
        line: usize,
        directive: String,
        value: String,
    },

    #[error(
        "config file {file}, line {line}: Include nested deeper than pacman's limit of {max} levels"
    )]
    IncludeTooDeep {
        file: String,
        line: usize,
        max: usize,
    },

    /// pacman itself has no loop check and stops at its depth limit instead;
    /// both refuse the file, this names the cause.
    #[error(
        "config file {file}, line {line}: Include of '{target}' loops back to a file being read"
    )]
    IncludeLoop {
        file: String,
        line: usize,
        target: String,
    },

    #[error("config file {file}, line {line}: Include pattern '{pattern}' failed: {message}")]
    Glob {
        file: String,
        line: usize,
        pattern: String,
        message: String,
    },

    #[error(
        "config file {file}, line {line}: mirror '{server}' contains the '$arch' variable, but no 'Architecture' is defined"
    )]
    ArchUndefined {
        file: String,
        line: usize,
        server: String,
    },
}

/// Something pacman warns about and then ignores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfWarning {
    pub file: String,
    pub line: usize,
    pub kind: WarningKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WarningKind {
    /// A directive pacman does not know in that section, or a flag given a
    /// value, or a valued directive given none.
    UnknownDirective { section: String, directive: String },
    /// The line is not UTF-8; invalid bytes were read as U+FFFD, so a value
    /// on it may not be the one pacman sees.
    NotUtf8,
}

impl fmt::Display for ConfWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfWarning { file, line, kind } = self;
        match kind {
            WarningKind::UnknownDirective { section, directive } => write!(
                f,
                "config file {file}, line {line}: directive '{directive}' in section '{section}' not recognized."
            ),
            WarningKind::NotUtf8 => write!(
                f,
                "config file {file}, line {line}: not valid UTF-8, invalid bytes replaced"
            ),
        }
    }
}
