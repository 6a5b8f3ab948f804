//! The Arch package: `packaging/arch/PKGBUILD` built by the real `makepkg`
//! (as an unprivileged build user), installed by the real `pacman -U` into a
//! sandbox root, and every file checked where the units, the bus and polkit
//! expect it.
//!
//! The PKGBUILD's `PACSYNC_PREBUILT_DIR` makes it package the binaries this
//! test run already built (debug) instead of compiling a release build for
//! ten minutes; what is tested is the packaging, not cargo.
//!
//! namcap is not packaged for Debian; `check_like_namcap` does the checks of
//! it that apply (see docs/packaging.md), and `pacman -Qkk` checks every
//! installed file against the package's mtree.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pacsync_tests::command::run;
use pacsync_tests::system_bus::TestUser;
use pacsync_tests::{ScratchDir, require_binary, require_root};

const BINARIES: [(&str, &str); 5] = [
    ("pacsyncd", "pacsyncd"),
    ("pacsync", "pacsync-cli"),
    ("pacsync-tray", "pacsync-tray"),
    ("pacsync-gtk", "pacsync-gtk"),
    ("pacsync-server", "pacsync-server"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// target/debug, where this run's binaries are (the test binary lives in
/// target/debug/deps). A binary missing (a partial build) is built here.
fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_owned();
    for (bin, package) in BINARIES {
        if !dir.join(bin).exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            run(Command::new(cargo)
                .current_dir(workspace())
                .args(["build", "-p", package, "--bin", bin]))
            .unwrap_or_else(|e| panic!("building {bin}: {e}"));
        }
    }
    dir
}

struct Built {
    _dir: ScratchDir,
    packages: Vec<PathBuf>,
}

/// makepkg as `pacsync-build`, in a scratch directory the user owns.
fn makepkg() -> Built {
    let bins = binaries_dir();
    let user = TestUser::ensure("pacsync-build").expect("build user");
    let dir = ScratchDir::new("makepkg").expect("scratch");
    for sub in ["build", "out", "src"] {
        std::fs::create_dir(dir.path().join(sub)).expect("packaging step");
    }
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid, user.gid))
        .arg(dir.path()))
    .expect("chown");
    // The user must be able to reach the scratch directory and the tree.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("packaging step");

    let out = run(Command::new("setpriv")
        .args([
            &format!("--reuid={}", user.uid),
            &format!("--regid={}", user.gid),
            "--clear-groups",
            "--",
        ])
        .arg("env")
        .arg(format!("HOME={}", dir.path().display()))
        .arg(format!("BUILDDIR={}", dir.path().join("build").display()))
        .arg(format!("PKGDEST={}", dir.path().join("out").display()))
        .arg(format!("SRCDEST={}", dir.path().join("src").display()))
        .arg("PKGEXT=.pkg.tar.zst")
        .arg(format!("PACSYNC_PREBUILT_DIR={}", bins.display()))
        .arg(format!("PACSYNC_SRCDIR={}", workspace().display()))
        .args(["makepkg", "--nodeps", "--noconfirm", "--nocheck"])
        .current_dir(workspace().join("packaging/arch")))
    .unwrap_or_else(|e| panic!("makepkg failed: {e}"));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));

    let mut packages: Vec<PathBuf> = std::fs::read_dir(dir.path().join("out"))
        .expect("packaging step")
        .map(|e| e.expect("packaging step").path())
        // makepkg.conf's `debug` option adds split-off debug symbols.
        .filter(|p| !p.to_string_lossy().contains("-debug-"))
        .collect();
    packages.sort();
    Built {
        _dir: dir,
        packages,
    }
}

fn package_named<'a>(built: &'a Built, name: &str) -> &'a Path {
    let version = env!("CARGO_PKG_VERSION");
    built
        .packages
        .iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}-{version}-1-")))
        })
        .unwrap_or_else(|| panic!("no {name} {version} package among {:?}", built.packages))
}

/// The list of paths a package file holds (`bsdtar -tf`), directories
/// without their trailing slash, metadata files (.PKGINFO …) left out.
fn contents(package: &Path) -> BTreeSet<String> {
    let out = run(Command::new("bsdtar").arg("-tf").arg(package)).expect("bsdtar -tf");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('.'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect()
}

fn pkginfo(package: &Path) -> String {
    let out = run(Command::new("bsdtar")
        .args(["-xOf"])
        .arg(package)
        .arg(".PKGINFO"))
    .expect(".PKGINFO");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What namcap would say that applies here: every file under a directory
/// an Arch package may use, nothing in /usr/local, /usr/sbin, /home, /tmp,
/// /var/run; no world-writable file; binaries executable ELF files;
/// `backup` entries present; a license, an arch and dependencies declared.
fn check_like_namcap(package: &Path, root: &Path) {
    let info = pkginfo(package);
    for key in [
        "pkgname", "pkgver", "pkgdesc", "url", "arch", "license", "depend",
    ] {
        assert!(
            info.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "{}: .PKGINFO lacks {key}:\n{info}",
            package.display()
        );
    }
    let allowed = ["etc", "usr/bin", "usr/lib", "usr/share"];
    for path in contents(package) {
        assert!(
            allowed
                .iter()
                .any(|a| path == *a || path.starts_with(&format!("{a}/")) || a.starts_with(&path)),
            "{}: {path} is outside the directories an Arch package uses",
            package.display()
        );
        let meta = std::fs::symlink_metadata(root.join(&path)).expect("installed file");
        assert_eq!(
            meta.permissions().mode() & 0o002,
            0,
            "{path} is world-writable"
        );
        if path.starts_with("usr/bin/") {
            assert_eq!(
                meta.permissions().mode() & 0o111,
                0o111,
                "{path} not executable"
            );
            let head = std::fs::read(root.join(&path)).expect("packaging step");
            assert_eq!(&head[..4], b"\x7fELF", "{path} is not an ELF binary");
        }
    }
    for backup in info.lines().filter_map(|l| l.strip_prefix("backup = ")) {
        assert!(
            root.join(backup).is_file(),
            "backup entry {backup} is not a file of the package"
        );
    }
}

/// `key=value` of the first line starting with `key=` in a unit/ini file.
fn ini_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_owned())
}

#[test]
fn pkgbuild_builds_and_installs_where_units_and_policies_expect() {
    if !(require_root()
        && ["makepkg", "pacman", "bsdtar", "setpriv"]
            .into_iter()
            .all(require_binary))
    {
        return;
    }
    let built = makepkg();
    assert_eq!(
        built.packages.len(),
        2,
        "two packages: {:?}",
        built.packages
    );
    let client = package_named(&built, "pacsync");
    let server = package_named(&built, "pacsync-server");

    // Install both into an empty root with the real pacman. The
    // dependencies (pacman, dbus, gtk4 …) are Arch packages this root does
    // not have: -dd skips that check only.
    let root = ScratchDir::new("pkgroot").expect("scratch");
    let db = root.path().join("var/lib/pacman");
    std::fs::create_dir_all(&db).expect("packaging step");
    run(Command::new("pacman")
        .arg("--root")
        .arg(root.path())
        .arg("--dbpath")
        .arg(&db)
        .arg("--cachedir")
        .arg(root.path().join("cache"))
        .args([
            "--config",
            "/dev/null",
            "--noconfirm",
            "--noscriptlet",
            "-Udd",
        ])
        .arg(client)
        .arg(server))
    .expect("pacman -U");
    let r = |p: &str| root.path().join(p);

    // pacman's own check of every installed file against the packages' mtree.
    run(Command::new("pacman")
        .arg("--root")
        .arg(root.path())
        .arg("--dbpath")
        .arg(&db)
        .args(["--config", "/dev/null", "-Qkk", "pacsync", "pacsync-server"]))
    .expect("pacman -Qkk: installed files differ from the packages' mtree");

    check_like_namcap(client, root.path());
    check_like_namcap(server, root.path());

    // Binaries.
    for (bin, _) in BINARIES {
        assert!(
            r(&format!("usr/bin/{bin}")).is_file(),
            "usr/bin/{bin} missing"
        );
    }
    let server_files = contents(server);
    assert!(server_files.contains("usr/bin/pacsync-server"));
    assert!(
        !server_files.contains("usr/bin/pacsyncd"),
        "the server package must not carry the daemon"
    );

    // D-Bus: the policy for the bus name, activation into the unit that exists.
    let bus_name = pacsync_dbus::BUS_NAME;
    let policy = std::fs::read_to_string(r(&format!("usr/share/dbus-1/system.d/{bus_name}.conf")))
        .expect("bus policy");
    assert!(policy.contains(&format!("own=\"{bus_name}\"")), "{policy}");
    let activation = std::fs::read_to_string(r(&format!(
        "usr/share/dbus-1/system-services/{bus_name}.service"
    )))
    .expect("activation file");
    assert_eq!(ini_value(&activation, "Name").as_deref(), Some(bus_name));
    let exec = ini_value(&activation, "Exec").expect("Exec=");
    assert!(
        r(exec.trim_start_matches('/')).is_file(),
        "activation Exec {exec} not installed"
    );
    let unit_name = ini_value(&activation, "SystemdService").expect("SystemdService=");
    let unit = std::fs::read_to_string(r(&format!("usr/lib/systemd/system/{unit_name}")))
        .unwrap_or_else(|e| panic!("{unit_name}: {e}"));
    assert_eq!(ini_value(&unit, "BusName").as_deref(), Some(bus_name));
    let exec_start = ini_value(&unit, "ExecStart").expect("ExecStart=");
    let exec_bin = exec_start
        .split_whitespace()
        .next()
        .expect("packaging step");
    assert!(
        r(exec_bin.trim_start_matches('/')).is_file(),
        "{exec_bin} not installed"
    );
    assert!(r(&format!("usr/share/dbus-1/interfaces/{bus_name}.xml")).is_file());

    // polkit: one action per verb, the ids the daemon asks about.
    let actions = std::fs::read_to_string(r("usr/share/polkit-1/actions/org.pacsync.policy"))
        .expect("polkit actions");
    for id in [
        pacsync_dbus::actions::SYNC,
        pacsync_dbus::actions::SET_LATEST,
        pacsync_dbus::actions::REVERT,
        pacsync_dbus::actions::CONFIGURE,
    ] {
        assert!(
            actions.contains(&format!("id=\"{id}\"")),
            "action {id} missing"
        );
    }
    assert!(r("usr/share/doc/pacsync/49-pacsync.rules.example").is_file());
    assert!(
        !r("etc/polkit-1/rules.d").exists() && !r("usr/share/polkit-1/rules.d").exists(),
        "the group rule is an example, never active by default"
    );

    // The pacman hook runs a binary the package installs.
    let hook = std::fs::read_to_string(r("usr/share/libalpm/hooks/pacsync.hook")).expect("hook");
    let hook_exec = ini_value(&hook, "Exec")
        .or_else(|| ini_value(&hook.replace(" = ", "="), "Exec"))
        .expect("hook Exec");
    let hook_bin = hook_exec.split_whitespace().next().expect("hook Exec");
    // busctl comes from systemd, which the package depends on.
    let from_dependency =
        hook_bin == "/usr/bin/busctl" && pkginfo(client).contains("depend = systemd\n");
    assert!(
        from_dependency || r(hook_bin.trim_start_matches('/')).is_file(),
        "hook runs {hook_bin}, which neither the package nor its dependencies install"
    );

    // The server's unit runs the installed server.
    let server_unit = std::fs::read_to_string(r("usr/lib/systemd/system/pacsync-server.service"))
        .expect("packaging step");
    let server_exec = ini_value(&server_unit, "ExecStart").expect("packaging step");
    assert!(
        r(server_exec
            .split_whitespace()
            .next()
            .expect("packaging step")
            .trim_start_matches('/'))
        .is_file()
    );

    // Desktop: launcher and autostart run installed binaries; the user unit too.
    for (file, bin) in [
        (
            "usr/share/applications/org.pacsync.Gtk.desktop",
            "pacsync-gtk",
        ),
        ("etc/xdg/autostart/pacsync-tray.desktop", "pacsync-tray"),
    ] {
        let text = std::fs::read_to_string(r(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let exec = ini_value(&text, "Exec").expect("Exec=");
        assert!(exec.contains(bin), "{file} runs {exec}");
    }
    let tray_unit = std::fs::read_to_string(r("usr/lib/systemd/user/pacsync-tray.service"))
        .expect("tray user unit");
    assert!(
        ini_value(&tray_unit, "ExecStart")
            .expect("packaging step")
            .contains("/usr/bin/pacsync-tray")
    );

    // Configuration is marked as backup (pacman keeps the admin's edits).
    let backups = |p: &Path| -> Vec<String> {
        pkginfo(p)
            .lines()
            .filter_map(|l| l.strip_prefix("backup = ").map(str::to_owned))
            .collect()
    };
    assert_eq!(backups(client), ["etc/pacsync/pacsyncd.toml"]);
    assert_eq!(backups(server), ["etc/pacsync/server.env"]);
    // The shipped daemon configuration is valid for the daemon itself.
    let toml = std::fs::read_to_string(r("etc/pacsync/pacsyncd.toml")).expect("packaging step");
    assert!(toml.contains("[pacman]"));

    // sysusers/tmpfiles, completions and the man page.
    let tmpfiles =
        std::fs::read_to_string(r("usr/lib/tmpfiles.d/pacsync.conf")).expect("packaging step");
    assert!(
        tmpfiles.contains("/var/lib/pacsync 0700 root root"),
        "{tmpfiles}"
    );
    assert!(r("usr/lib/sysusers.d/pacsync.conf").is_file());
    let bash = std::fs::read_to_string(r("usr/share/bash-completion/completions/pacsync"))
        .expect("packaging step");
    assert!(
        bash.contains("set-latest"),
        "bash completion lacks subcommands"
    );
    assert!(r("usr/share/zsh/site-functions/_pacsync").is_file());
    assert!(r("usr/share/fish/vendor_completions.d/pacsync.fish").is_file());
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(r("usr/share/man/man1/pacsync.1.gz")))
    .expect("man page");
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH pacsync"));
}
