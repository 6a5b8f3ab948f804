//! `pacsync-scan`: prints what pacsync reads from pacman's databases, in
//! pacman's own output formats, to compare with pacman and to time against it.
//!
//! ```text
//! pacsync-scan local --dbpath DIR [--names-only] [--json]   # like pacman -Q
//! pacsync-scan sync FILE.db [--json]                         # like pacman -Sl
//! ```

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use pacsync_pacman::db::{read_local_db, read_local_names, read_sync_db};
use serde::Serialize;

const USAGE: &str = "usage: pacsync-scan local --dbpath DIR [--names-only] [--json]
       pacsync-scan sync FILE.db [--json]";

enum Command {
    Local {
        dbpath: PathBuf,
        names_only: bool,
        json: bool,
    },
    Sync {
        file: PathBuf,
        json: bool,
    },
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Command> {
    let (mut dbpath, mut file) = (None, None);
    let (mut names_only, mut json) = (false, false);
    let mode = args.next().context("missing command (local or sync)")?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dbpath" if mode == "local" => {
                dbpath = Some(args.next().context("--dbpath needs a directory")?);
            }
            "--names-only" if mode == "local" => names_only = true,
            "--json" => json = true,
            path if mode == "sync" && !path.starts_with("--") && file.is_none() => {
                file = Some(path.to_owned());
            }
            other => bail!("unexpected argument {other:?}"),
        }
    }
    Ok(match mode.as_str() {
        "local" => Command::Local {
            dbpath: dbpath.context("local needs --dbpath DIR")?.into(),
            names_only,
            json,
        },
        "sync" => Command::Sync {
            file: file.context("sync needs a database file")?.into(),
            json,
        },
        other => bail!("unknown command {other:?}"),
    })
}

fn run(command: Command, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        Command::Local {
            dbpath,
            names_only: true,
            json,
        } => {
            let names = read_local_names(&dbpath)?;
            if json {
                #[derive(Serialize)]
                struct Name<'a> {
                    name: &'a str,
                    version: &'a str,
                }
                let names: Vec<_> = names
                    .iter()
                    .map(|(name, version)| Name {
                        name,
                        version: version.as_str(),
                    })
                    .collect();
                write_json(out, &names)?;
            } else {
                for (name, version) in &names {
                    line(out, &[name, version.as_str()])?;
                }
            }
            exit_without_freeing(names);
        }
        Command::Local { dbpath, json, .. } => {
            let packages = read_local_db(&dbpath)?;
            if json {
                write_json(out, &packages)?;
            } else {
                for package in &packages {
                    line(out, &[&package.name, package.version.as_str()])?;
                }
            }
            exit_without_freeing(packages);
        }
        Command::Sync { file, json } => {
            let entries = read_sync_db(&file)?;
            if json {
                write_json(out, &entries)?;
            } else {
                let repo = repo_name(&file);
                for entry in &entries {
                    line(out, &[&repo, &entry.name, entry.version.as_str()])?;
                }
            }
            exit_without_freeing(entries);
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes `words` separated by spaces and a newline, without the
/// formatting machinery: for 15,000 lines that is measurably faster.
fn line(out: &mut impl Write, words: &[&str]) -> io::Result<()> {
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.write_all(b" ")?;
        }
        out.write_all(word.as_bytes())?;
    }
    out.write_all(b"\n")
}

/// The process ends right after printing: freeing hundreds of thousands of
/// small strings one by one would only delay its exit (by about 5% of a
/// sync database read), the kernel takes the memory back at once.
fn exit_without_freeing<T>(value: T) {
    std::mem::forget(value);
}

fn write_json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// pacman names a repository after its database file: `core.db` is `core`.
fn repo_name(file: &Path) -> String {
    file.file_stem()
        .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if matches!(args.peek().map(String::as_str), Some("-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let command = match parse_args(args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("pacsync-scan: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(command, &mut BufWriter::new(io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e)
            if e.downcast_ref::<io::Error>().map(io::Error::kind)
                == Some(io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pacsync-scan: {e:#}");
            ExitCode::FAILURE
        }
    }
}
