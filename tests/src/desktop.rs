//! Real parts for the desktop frontends' tests: a registered machine (a
//! sandbox managed by a real pacsyncd, reporting to a real server whose pool
//! has a target), an X server (Xvfb), and a Wayland session (headless sway
//! with WayBar's tray as the StatusNotifierWatcher and mako as the
//! notification server) run as an unprivileged user on a private session
//! bus.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::daemon_process::{DaemonHome, DaemonProcess};
use crate::repo::Repo;
use crate::sandbox::Sandbox;
use crate::scratch::ScratchDir;
use crate::server_process::{ApiClient, ServerProcess};
use crate::system_bus::{SystemBus, TestUser, eventually};
use crate::{PackageSpec, command};

fn spec(name: &str, version: &str) -> PackageSpec {
    PackageSpec::new(name, version).file(format!("usr/share/{name}/version"), version.as_bytes())
}

/// A machine "bravo" in pool "office": alpha 1.0 and delta 1.0 installed;
/// the pool's target is alpha 2.0, delta 1.0 and gamma 1.0, all explicit and
/// in the sandbox's repository — so the machine is `behind` with one upgrade
/// and one install.
#[derive(Debug)]
pub struct ManagedMachine {
    pub bus: SystemBus,
    pub server: ServerProcess,
    pub admin: ApiClient,
    pub sandbox: Sandbox,
    pub home: DaemonHome,
    daemon: Option<DaemonProcess>,
    daemon_binary: PathBuf,
    _repo: Repo,
    _files: ScratchDir,
}

impl ManagedMachine {
    /// Whether the parts exist (pacman, the bus, polkitd, root).
    pub fn available() -> bool {
        crate::require_pacman_sandbox() && SystemBus::available()
    }

    pub fn start(daemon_binary: &Path, server_binary: &Path) -> anyhow::Result<ManagedMachine> {
        let repo = Repo::new("test")?;
        repo.add(&[
            spec("alpha", "2.0-1"),
            spec("gamma", "1.0-1"),
            spec("delta", "1.0-1"),
        ])?;
        let files = ScratchDir::new("old-packages")?;
        let alpha1 = spec("alpha", "1.0-1").build(files.path())?;
        let sandbox = Sandbox::new(&[&repo])?;
        sandbox.sync_dbs()?;
        sandbox.install_files(&[&alpha1])?;
        sandbox.install(&["delta"])?;
        std::fs::copy(
            &alpha1,
            sandbox
                .cache_dir()
                .join(alpha1.file_name().context("file name")?),
        )?;

        let bus = SystemBus::start()?;
        let server = ServerProcess::start(server_binary)?;
        let admin = server.admin_client()?;
        let (_pool, token) = admin.pool_with_token("office")?;
        let home = DaemonHome::new(&sandbox)?;
        let daemon = DaemonProcess::start(daemon_binary, &bus, &home)?;
        let me = ManagedMachine {
            bus,
            server,
            admin,
            sandbox,
            home,
            daemon: Some(daemon),
            daemon_binary: daemon_binary.to_owned(),
            _repo: repo,
            _files: files,
        };
        let out = me.bus.call_daemon(
            None,
            "Register",
            &[
                &format!("'{}'", me.server.url()),
                &format!("'{token}'"),
                "'bravo'",
            ],
        )?;
        if !out.status.success() {
            bail!(
                "Register: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                me.home.log()
            );
        }
        let reference = me.admin.register_machine(&token, "reference")?;
        reference.report(&[
            ("alpha", "2.0-1", true),
            ("delta", "1.0-1", true),
            ("gamma", "1.0-1", true),
        ])?;
        reference.set_latest("the office baseline")?;
        let out = me.bus.call_daemon(None, "Refresh", &[])?;
        if !out.status.success() {
            bail!("Refresh: {}", String::from_utf8_lossy(&out.stderr));
        }
        me.wait_status("behind", Duration::from_secs(20))?;
        Ok(me)
    }

    /// The daemon's `Status` property.
    pub fn status(&self) -> anyhow::Result<String> {
        let mut cmd = self.bus.gdbus(None);
        cmd.args([
            "call",
            "--address",
            self.bus.address(),
            "--dest",
            "org.pacsync.Daemon1",
            "--object-path",
            "/org/pacsync/Daemon1",
            "--method",
            "org.freedesktop.DBus.Properties.Get",
            "org.pacsync.Daemon1",
            "Status",
        ]);
        let out = command::run(&mut cmd)?;
        // (<'behind'>,)
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split('\'')
            .nth(1)
            .context("a quoted status")?
            .to_owned())
    }

    pub fn wait_status(&self, want: &str, within: Duration) -> anyhow::Result<()> {
        let mut last = String::new();
        eventually(within, || {
            last = self.status()?;
            Ok((last == want).then_some(()))
        })
        .with_context(|| format!("status {last:?}, not {want:?}; log:\n{}", self.home.log()))
    }

    pub fn query(&self) -> anyhow::Result<BTreeMap<String, String>> {
        Ok(self.sandbox.query()?)
    }

    /// SIGKILL the daemon.
    pub fn kill_daemon(&mut self) -> anyhow::Result<()> {
        if let Some(d) = self.daemon.take() {
            d.kill()?;
        }
        Ok(())
    }

    pub fn restart_daemon(&mut self) -> anyhow::Result<()> {
        self.kill_daemon()?;
        self.daemon = Some(DaemonProcess::start(
            &self.daemon_binary,
            &self.bus,
            &self.home,
        )?);
        Ok(())
    }

    /// Hold pacman's lock, as a pacman running from a shell would; the
    /// daemon waits for it (a bounded time) before its transactions.
    pub fn hold_pacman_lock(&self) -> anyhow::Result<PacmanLock> {
        let path = self.sandbox.dbpath().join("db.lck");
        std::fs::write(&path, b"")?;
        Ok(PacmanLock { path })
    }
}

/// pacman's `db.lck`, removed on drop.
#[derive(Debug)]
pub struct PacmanLock {
    path: PathBuf,
}

impl Drop for PacmanLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Children killed (and reaped) on drop, last started first.
#[derive(Debug, Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        while let Some(mut c) = self.0.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `Xvfb` on a free display number.
#[derive(Debug)]
pub struct Xvfb {
    display: String,
    _children: Children,
}

impl Xvfb {
    pub fn available() -> bool {
        crate::require_binary("Xvfb")
    }

    pub fn start() -> anyhow::Result<Xvfb> {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start Xvfb")?;
        // Xvfb writes the display number once it accepts clients.
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("Xvfb stdout")?).read_line(&mut line)?;
        let n: u32 = match line.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                let _ = child.kill();
                bail!("Xvfb printed no display: {line:?}");
            }
        };
        Ok(Xvfb {
            display: format!(":{n}"),
            _children: Children(vec![child]),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }
}

/// A private session bus (any local user may connect, so root can watch
/// what an unprivileged user's programs publish).
#[derive(Debug)]
pub struct SessionBus {
    address: String,
    _children: Children,
}

impl SessionBus {
    /// Start as `user` (root when `None`) with its socket in `dir`.
    pub fn start(dir: &Path, user: Option<&TestUser>) -> anyhow::Result<SessionBus> {
        let config = dir.join("session.conf");
        let socket = dir.join("bus");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )?;
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(u) = user {
            cmd.uid(u.uid).gid(u.gid);
        }
        let mut child = cmd.spawn().context("cannot start dbus-daemon")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = child.kill();
            bail!("the session bus printed no address");
        }
        Ok(SessionBus {
            address: format!("unix:path={}", socket.display()),
            _children: Children(vec![child]),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }
}

/// A Wayland desktop of `user`: headless sway, mako, and (when asked)
/// WayBar with its tray; all on a private session bus.
#[derive(Debug)]
pub struct WaylandSession {
    pub user: TestUser,
    runtime: ScratchDir,
    bus: SessionBus,
    children: Children,
}

impl WaylandSession {
    pub fn available() -> bool {
        ["sway", "waybar", "mako", "grim", "dbus-daemon"]
            .into_iter()
            .all(crate::require_binary)
            && crate::require_root()
    }

    /// Start sway and mako as `user` (sway refuses root).
    pub fn start(user: TestUser) -> anyhow::Result<WaylandSession> {
        let runtime = ScratchDir::new("pacsync-session")?;
        std::os::unix::fs::chown(runtime.path(), Some(user.uid), Some(user.gid))?;
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700))?;
        let bus = SessionBus::start(runtime.path(), Some(&user))?;
        let mut me = WaylandSession {
            user,
            runtime,
            bus,
            children: Children::default(),
        };
        let sway_conf = me.runtime.path().join("sway.conf");
        std::fs::write(&sway_conf, "output HEADLESS-1 resolution 1280x720\n")?;
        let sway = me
            .command("sway")
            .arg("-c")
            .arg(&sway_conf)
            .env("WLR_BACKENDS", "headless")
            .env("WLR_LIBINPUT_NO_DEVICES", "1")
            .env("WLR_RENDERER", "pixman")
            .stdout(Stdio::null())
            .stderr(me.log_file("sway.log")?)
            .spawn()
            .context("cannot start sway")?;
        me.children.0.push(sway);
        let socket = me.runtime.path().join("wayland-1");
        eventually(Duration::from_secs(20), || {
            Ok(socket.exists().then_some(()))
        })
        .context("sway made no wayland-1 socket")?;
        let mako = me
            .command("mako")
            .stdout(Stdio::null())
            .stderr(me.log_file("mako.log")?)
            .spawn()
            .context("cannot start mako")?;
        me.children.0.push(mako);
        Ok(me)
    }

    /// Start WayBar with a tray (it owns org.kde.StatusNotifierWatcher).
    pub fn start_waybar(&mut self) -> anyhow::Result<()> {
        let dir = self.runtime.path();
        std::fs::write(
            dir.join("waybar.json"),
            r#"{"layer": "top", "height": 30, "modules-left": ["clock"],
                "modules-right": ["tray"], "tray": {"icon-size": 20, "spacing": 8},
                "clock": {"format": "pacsync"}}"#,
        )?;
        std::fs::write(
            dir.join("waybar.css"),
            "* { font-family: DejaVu Sans; font-size: 13px; }\n\
             window#waybar { background: #303030; color: #ffffff; }\n",
        )?;
        let waybar = self
            .command("waybar")
            .arg("-c")
            .arg(dir.join("waybar.json"))
            .arg("-s")
            .arg(dir.join("waybar.css"))
            .stdout(Stdio::null())
            .stderr(self.log_file("waybar.log")?)
            .spawn()
            .context("cannot start waybar")?;
        self.children.0.push(waybar);
        Ok(())
    }

    /// A command run as the session's user, in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let dir = self.runtime.path();
        cmd.uid(self.user.uid)
            .gid(self.user.gid)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus.address())
            .env("WAYLAND_DISPLAY", "wayland-1")
            .env("LC_ALL", "C.UTF-8");
        cmd
    }

    /// A file in the session's directory for a child's output (readable
    /// by the test afterwards).
    pub fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::File::create(self.runtime.path().join(name))?)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.runtime.path().join(name)).unwrap_or_default()
    }

    pub fn bus_address(&self) -> &str {
        self.bus.address()
    }

    /// A screenshot of the output (or of `geometry`, "x,y wxh") by grim,
    /// copied to `to`.
    pub fn screenshot(&self, geometry: Option<&str>, to: &Path) -> anyhow::Result<()> {
        let inside = self.runtime.path().join("shot.png");
        let mut cmd = self.command("grim");
        if let Some(g) = geometry {
            cmd.args(["-g", g]);
        }
        command::run(cmd.arg(&inside))?;
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&inside, to)?;
        Ok(())
    }
}

/// `target/artifacts/` of the build a test binary belongs to.
pub fn artifacts_dir(test_binary: &str) -> PathBuf {
    // target/<profile>/<binary>
    let dir = Path::new(test_binary)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/artifacts"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}
