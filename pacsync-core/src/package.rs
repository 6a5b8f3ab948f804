//! The package model shared by every part of pacsync.

use serde::{Deserialize, Serialize};

use crate::version::Version;

/// Why a package is installed (`%REASON%` in the local database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallReason {
    /// Installed on request (no `%REASON%`, or `0`).
    Explicit,
    /// Pulled in as a dependency (`%REASON%` = `1`).
    Dependency,
}

impl InstallReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallReason::Explicit => "explicit",
            InstallReason::Dependency => "dependency",
        }
    }
}

/// Where an installed package comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "repo")]
pub enum Origin {
    /// The first configured repository that carries this name.
    Repo(String),
    /// No configured repository has it (AUR, local builds).
    Foreign,
}

/// One installed package, as a machine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: Version,
    pub arch: String,
    pub reason: InstallReason,
    /// `None` when the origin was not computed (no sync databases read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Installed size in bytes.
    #[serde(default)]
    pub installed_size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends: Vec<String>,
}
