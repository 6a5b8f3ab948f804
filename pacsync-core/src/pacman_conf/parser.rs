//! The directive handling of pacman's `src/pacman/conf.c`: sections,
//! `Include`, `[options]` and repository directives, then `setdefaults()`.

use super::lines::{self, Entry, Line};
use super::options::OptionsBuilder;
use super::siglevel::{SigBits, SigLevel};
use super::{
    ConfError, ConfWarning, IncludeSource, MAX_INCLUDE_DEPTH, Options, PacmanConf, Repo, Usage,
    WarningKind,
};

/// Where a value was written, for errors found after parsing.
#[derive(Debug, Clone)]
struct Origin {
    file: String,
    line: usize,
}

#[derive(Debug)]
struct RepoBuilder {
    name: String,
    servers: Vec<(String, Origin)>,
    cache_servers: Vec<(String, Origin)>,
    sig_level: SigBits,
    sig_level_raw: Vec<String>,
    usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy)]
enum Section {
    None,
    Options,
    Repo(usize),
}

pub(super) struct Parser<'a> {
    source: &'a dyn IncludeSource,
    machine_arch: &'a str,
    options: OptionsBuilder,
    repos: Vec<RepoBuilder>,
    /// Shared by all files, as in pacman: a section header in an included
    /// file stays in force in the including file after the `Include`.
    section: Section,
    /// The files being read, outermost first; its length minus one is the
    /// include depth.
    reading: Vec<String>,
    warnings: Vec<ConfWarning>,
}

type Step = Result<(), ConfError>;

impl<'a> Parser<'a> {
    pub(super) fn new(source: &'a dyn IncludeSource, machine_arch: &'a str) -> Self {
        Parser {
            source,
            machine_arch,
            options: OptionsBuilder::default(),
            repos: Vec::new(),
            section: Section::None,
            reading: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn run(mut self, path: &str) -> Result<PacmanConf, ConfError> {
        self.file(path)?;
        let sig = self
            .options
            .sig_level
            .unwrap_or(SigBits::OPTIONS_DEFAULT)
            .bits();
        let options = std::mem::take(&mut self.options).finish();
        let mut repos = Vec::with_capacity(self.repos.len());
        for repo in self.repos {
            let servers = repo
                .servers
                .into_iter()
                .map(|(url, origin)| expand_server(&url, &repo.name, &options, origin))
                .collect::<Result<_, _>>()?;
            // pacman 6 ignores CacheServer, so `$arch` without an Architecture
            // there must not fail the file; the URL keeps `$arch` instead.
            let cache_servers = repo
                .cache_servers
                .into_iter()
                .map(|(url, _)| match options.architecture() {
                    Some(arch) => url.replace("$arch", arch).replace("$repo", &repo.name),
                    None => url.replace("$repo", &repo.name),
                })
                .collect();
            repos.push(Repo {
                sig_level: SigLevel::from_bits(repo.sig_level.over(sig)),
                sig_level_raw: repo.sig_level_raw,
                usage: repo.usage.unwrap_or_default(),
                name: repo.name,
                servers,
                cache_servers,
            });
        }
        Ok(PacmanConf {
            options,
            repos,
            warnings: self.warnings,
        })
    }

    fn file(&mut self, path: &str) -> Step {
        let content = self.source.read(path).map_err(|message| ConfError::Read {
            file: path.to_owned(),
            message,
        })?;
        self.reading.push(path.to_owned());
        for line in lines::lines(&content) {
            self.line(path, line)?;
        }
        self.reading.pop();
        Ok(())
    }

    fn line(&mut self, file: &str, line: Line) -> Step {
        let here = Origin {
            file: file.to_owned(),
            line: line.number,
        };
        if line.lossy {
            self.warn(&here, WarningKind::NotUtf8);
        }
        match line.entry {
            Entry::Section(name) => {
                self.section = if name == "options" {
                    Section::Options
                } else {
                    self.repos.push(RepoBuilder {
                        name,
                        servers: Vec::new(),
                        cache_servers: Vec::new(),
                        sig_level: SigBits::INHERIT,
                        sig_level_raw: Vec::new(),
                        usage: None,
                    });
                    Section::Repo(self.repos.len() - 1)
                };
                Ok(())
            }
            // Include is honoured even before the first section, as in pacman.
            Entry::Directive { key, value } if key == "Include" => self.include(&here, value),
            Entry::Directive { key, value } => match self.section {
                Section::None => Err(ConfError::OutsideSection {
                    file: here.file,
                    line: here.line,
                }),
                Section::Options => self.option(&here, key, value),
                Section::Repo(index) => self.repo(index, &here, key, value),
            },
        }
    }

    fn include(&mut self, here: &Origin, pattern: Option<String>) -> Step {
        let pattern = pattern.ok_or_else(|| missing_value(here, "Include"))?;
        if self.reading.len() > MAX_INCLUDE_DEPTH {
            return Err(ConfError::IncludeTooDeep {
                file: here.file.clone(),
                line: here.line,
                max: MAX_INCLUDE_DEPTH,
            });
        }
        let mut paths = self
            .source
            .glob(&pattern)
            .map_err(|message| ConfError::Glob {
                file: here.file.clone(),
                line: here.line,
                pattern: pattern.clone(),
                message,
            })?;
        // glob(3) sorts with strcoll, which is strcmp in pacman's C locale.
        paths.sort_unstable();
        if paths.is_empty() {
            // GLOB_NOCHECK: no match hands back the pattern, which pacman then
            // fails to open.
            paths.push(pattern);
        }
        for path in paths {
            // A file that includes itself, directly or not, would recurse
            // until the depth limit; say what actually happens.
            if self.reading.contains(&path) {
                return Err(ConfError::IncludeLoop {
                    file: here.file.clone(),
                    line: here.line,
                    target: path,
                });
            }
            self.file(&path)?;
        }
        Ok(())
    }

    fn option(&mut self, here: &Origin, key: String, value: Option<String>) -> Step {
        let o = &mut self.options;
        let Some(value) = value else {
            let flag = match key.as_str() {
                "UseSyslog" => &mut o.use_syslog,
                "ILoveCandy" => &mut o.i_love_candy,
                "VerbosePkgLists" => &mut o.verbose_pkg_lists,
                "CheckSpace" => &mut o.check_space,
                "Color" => &mut o.color,
                "NoProgressBar" => &mut o.no_progress_bar,
                "DisableDownloadTimeout" => &mut o.disable_download_timeout,
                "DisableSandbox" => &mut o.disable_sandbox,
                "DisableSandboxFilesystem" => &mut o.disable_sandbox_filesystem,
                "DisableSandboxSyscalls" => &mut o.disable_sandbox_syscalls,
                _ => return self.unknown(here, "options", key),
            };
            *flag = true;
            return Ok(());
        };
        let list = match key.as_str() {
            "NoUpgrade" => Some(&mut o.no_upgrade),
            "NoExtract" => Some(&mut o.no_extract),
            "IgnorePkg" => Some(&mut o.ignore_pkg),
            "IgnoreGroup" => Some(&mut o.ignore_group),
            "HoldPkg" => Some(&mut o.hold_pkg),
            "CacheDir" => Some(&mut o.cache_dirs),
            "HookDir" => Some(&mut o.hook_dirs),
            _ => None,
        };
        if let Some(list) = list {
            list.extend(lines::words(&value).map(str::to_owned));
            return Ok(());
        }
        // The paths keep their first value: pacman must not let the file
        // override the same option given on its command line.
        let first_wins = match key.as_str() {
            "DBPath" => Some(&mut o.db_path),
            "RootDir" => Some(&mut o.root_dir),
            "GPGDir" => Some(&mut o.gpg_dir),
            "LogFile" => Some(&mut o.log_file),
            _ => None,
        };
        if let Some(slot) = first_wins {
            slot.get_or_insert(value);
            return Ok(());
        }
        match key.as_str() {
            "Architecture" => {
                let machine = self.machine_arch;
                o.architectures.extend(
                    lines::words(&value)
                        .map(|arch| if arch == "auto" { machine } else { arch }.to_owned()),
                );
            }
            "XferCommand" => {
                if lines::has_unbalanced_quote(&value) {
                    return Err(invalid_value(here, &key, &value));
                }
                o.xfer_command = Some(value);
            }
            // Not checkable against Debian's pacman 6; the last one wins.
            "DownloadUser" => o.download_user = Some(value),
            "CleanMethod" => {
                for word in lines::words(&value) {
                    match word {
                        "KeepInstalled" => o.keep_installed = true,
                        "KeepCurrent" => o.keep_current = true,
                        _ => return Err(invalid_value(here, &key, word)),
                    }
                }
            }
            "SigLevel" | "LocalFileSigLevel" | "RemoteFileSigLevel" => {
                let (bits, raw, start) = match key.as_str() {
                    "SigLevel" => (
                        &mut o.sig_level,
                        &mut o.sig_level_raw,
                        SigBits::OPTIONS_DEFAULT,
                    ),
                    "LocalFileSigLevel" => (
                        &mut o.local_file_sig_level,
                        &mut o.local_file_sig_level_raw,
                        SigBits::INHERIT,
                    ),
                    _ => (
                        &mut o.remote_file_sig_level,
                        &mut o.remote_file_sig_level_raw,
                        SigBits::INHERIT,
                    ),
                };
                let words: Vec<&str> = lines::words(&value).collect();
                bits.get_or_insert(start)
                    .apply(&words)
                    .map_err(|word| invalid_value(here, &key, word))?;
                raw.extend(words.into_iter().map(str::to_owned));
            }
            "ParallelDownloads" => {
                o.parallel_downloads = Some(parallel_downloads(here, &key, &value)?);
            }
            _ => return self.unknown(here, "options", key),
        }
        Ok(())
    }

    fn repo(&mut self, index: usize, here: &Origin, key: String, value: Option<String>) -> Step {
        let Some(repo) = self.repos.get_mut(index) else {
            return Ok(());
        };
        // pacman 6 does not know CacheServer and only warns about it, even
        // without a value; refusing what pacman 6 accepts is never right.
        let known = match key.as_str() {
            "Server" | "SigLevel" | "Usage" => true,
            "CacheServer" => value.is_some(),
            _ => false,
        };
        if !known {
            let section = repo.name.clone();
            return self.unknown(here, &section, key);
        }
        let value = value.ok_or_else(|| missing_value(here, &key))?;
        match key.as_str() {
            "Server" => repo.servers.push((value, here.clone())),
            "CacheServer" => repo.cache_servers.push((value, here.clone())),
            "SigLevel" => {
                let words: Vec<&str> = lines::words(&value).collect();
                repo.sig_level
                    .apply(&words)
                    .map_err(|word| invalid_value(here, &key, word))?;
                repo.sig_level_raw
                    .extend(words.into_iter().map(str::to_owned));
            }
            _ => {
                let mut words = lines::words(&value).peekable();
                if words.peek().is_none() {
                    return Ok(());
                }
                let usage = repo.usage.get_or_insert(Usage {
                    sync: false,
                    search: false,
                    install: false,
                    upgrade: false,
                });
                for word in words {
                    match word {
                        "Sync" => usage.sync = true,
                        "Search" => usage.search = true,
                        "Install" => usage.install = true,
                        "Upgrade" => usage.upgrade = true,
                        "All" => *usage = Usage::ALL,
                        _ => return Err(invalid_value(here, &key, word)),
                    }
                }
            }
        }
        Ok(())
    }

    fn unknown(&mut self, here: &Origin, section: &str, directive: String) -> Step {
        self.warn(
            here,
            WarningKind::UnknownDirective {
                section: section.to_owned(),
                directive,
            },
        );
        Ok(())
    }

    fn warn(&mut self, here: &Origin, kind: WarningKind) {
        self.warnings.push(ConfWarning {
            file: here.file.clone(),
            line: here.line,
            kind,
        });
    }
}

fn missing_value(here: &Origin, directive: &str) -> ConfError {
    ConfError::MissingValue {
        file: here.file.clone(),
        line: here.line,
        directive: directive.to_owned(),
    }
}

fn invalid_value(here: &Origin, directive: &str, value: &str) -> ConfError {
    ConfError::InvalidValue {
        file: here.file.clone(),
        line: here.line,
        directive: directive.to_owned(),
        value: value.to_owned(),
    }
}

/// strtol(3) in base 10 over the whole value, then pacman's range check.
fn parallel_downloads(here: &Origin, key: &str, value: &str) -> Result<u32, ConfError> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    let negative = value.starts_with('-');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_value(here, key, value));
    }
    // Beyond a C long strtol reports ERANGE, which pacman calls invalid.
    let magnitude: i128 = match digits.trim_start_matches('0') {
        "" => 0,
        significant if significant.len() > 19 => return Err(invalid_value(here, key, value)),
        significant => significant
            .parse()
            .map_err(|_| invalid_value(here, key, value))?,
    };
    let number = if negative { -magnitude } else { magnitude };
    if number < i128::from(i64::MIN) || number > i128::from(i64::MAX) {
        return Err(invalid_value(here, key, value));
    }
    match u32::try_from(number) {
        Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(n),
        _ => Err(ConfError::OutOfRange {
            file: here.file.clone(),
            line: here.line,
            directive: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

/// pacman's `replace_server_vars`: `$arch` first, then `$repo`.
fn expand_server(
    url: &str,
    repo: &str,
    options: &Options,
    origin: Origin,
) -> Result<String, ConfError> {
    match options.architecture() {
        Some(arch) => Ok(url.replace("$arch", arch).replace("$repo", repo)),
        None if url.contains("$arch") => Err(ConfError::ArchUndefined {
            file: origin.file,
            line: origin.line,
            server: url.to_owned(),
        }),
        None => Ok(url.replace("$repo", repo)),
    }
}
