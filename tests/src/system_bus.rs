//! A private system bus with a real polkitd, for testing pacsyncd as it
//! runs on a machine: its bus policy, polkit's verdicts about real callers
//! (root, unprivileged users, members of a granted group).
//!
//! The bus is a `dbus-daemon` with a system-bus configuration listening in a
//! temporary directory; polkitd runs on it. polkit's action and rule files
//! are global (`/usr/share/polkit-1/actions`, `/etc/polkit-1/rules.d`), so
//! pacsync's policy is installed there, and each test uses its own group in
//! its own rules file.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::command;
use crate::scratch::ScratchDir;

/// Where the project's files live (dbus/, polkit/).
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the project")
        .to_owned()
}

#[derive(Debug)]
pub struct SystemBus {
    dir: ScratchDir,
    address: String,
    bus: Child,
    polkit: Child,
}

const POLKITD: &str = "/usr/lib/polkit-1/polkitd";

impl SystemBus {
    /// Whether the parts exist (dbus-daemon, polkitd, gdbus, root). Missing:
    /// fails under CI, skips elsewhere (see [`crate::require`]).
    pub fn available() -> bool {
        crate::require_binary("dbus-daemon")
            && crate::require_binary("gdbus")
            && crate::require::require_path(POLKITD)
            && crate::require_root()
    }

    /// Start the bus and polkitd on it, with pacsync's bus policy and polkit
    /// actions installed. Returns once polkitd owns its name.
    pub fn start() -> anyhow::Result<SystemBus> {
        install_polkit_actions()?;
        let dir = ScratchDir::new("pacsync-bus")?;
        // Unprivileged callers must reach the socket inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let policy_dir = dir.path().join("system.d");
        std::fs::create_dir(&policy_dir)?;
        std::fs::copy(
            project_dir().join("dbus/org.pacsync.Daemon1.conf"),
            policy_dir.join("org.pacsync.Daemon1.conf"),
        )?;
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&socket, &policy_dir))?;

        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start dbus-daemon")?;
        // The address is printed once the bus accepts connections.
        let mut line = String::new();
        BufReader::new(bus.stdout.take().context("dbus-daemon stdout")?).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = bus.kill();
            bail!("dbus-daemon printed no address");
        }
        let address = format!("unix:path={}", socket.display());

        let polkit = Command::new(POLKITD)
            .arg("--no-debug")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start polkitd")?;
        let me = SystemBus {
            dir,
            address,
            bus,
            polkit,
        };
        me.wait_for_name("org.freedesktop.PolicyKit1", Duration::from_secs(20))?;
        Ok(me)
    }

    /// `unix:path=…` of the bus, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Block until `name` has an owner on the bus (gdbus waits on the
    /// NameOwnerChanged signal; no polling).
    pub fn wait_for_name(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let mut cmd = Command::new("gdbus");
        cmd.args(["wait", "--address", &self.address, "--timeout"])
            .arg(timeout.as_secs().max(1).to_string())
            .arg(name);
        command::run(&mut cmd).with_context(|| format!("{name} did not appear on the bus"))?;
        Ok(())
    }

    /// A `gdbus` command on this bus, run as `user` (root when `None`).
    pub fn gdbus(&self, user: Option<&TestUser>) -> Command {
        let mut cmd = Command::new("gdbus");
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &self.address);
        if let Some(u) = user {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd
    }

    /// Call `org.pacsync.Daemon1.METHOD ARGS…` as `user`; the output is
    /// returned whether the call succeeded or not (gdbus prints the D-Bus
    /// error name on failure).
    pub fn call_daemon(
        &self,
        user: Option<&TestUser>,
        method: &str,
        args: &[&str],
    ) -> anyhow::Result<Output> {
        let mut cmd = self.gdbus(user);
        cmd.args([
            "call",
            "--address",
            &self.address,
            "--dest",
            "org.pacsync.Daemon1",
            "--object-path",
            "/org/pacsync/Daemon1",
            "--method",
        ])
        .arg(format!("org.pacsync.Daemon1.{method}"))
        .args(args);
        Ok(command::run_unchecked(&mut cmd)?)
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.polkit.kill();
        let _ = self.polkit.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

fn bus_config(socket: &Path, policy_dir: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
  <includedir>{policy}</includedir>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy_dir.display()
    )
}

/// Put pacsync's polkit actions where polkitd reads them.
fn install_polkit_actions() -> anyhow::Result<()> {
    let src = project_dir().join("polkit/org.pacsync.policy");
    let dst = Path::new("/usr/share/polkit-1/actions/org.pacsync.policy");
    let want = std::fs::read(&src)?;
    if std::fs::read(dst).ok().as_deref() != Some(&want[..]) {
        // Write then rename: polkitd must never read half a file.
        let tmp = dst.with_extension("policy.tmp");
        std::fs::write(&tmp, &want)?;
        std::fs::rename(&tmp, dst)?;
    }
    Ok(())
}

/// An unprivileged local user, and a group polkit rules can name.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// Create (once) user `name` whose primary group is `name`.
    pub fn ensure(name: &str) -> anyhow::Result<TestUser> {
        if command::run_unchecked(Command::new("id").arg(name))?
            .status
            .code()
            != Some(0)
        {
            // Another test may create it at the same moment; a lost race
            // shows as "already exists" and is fine.
            let out = command::run_unchecked(Command::new("useradd").args([
                "--system",
                "--user-group",
                "--no-create-home",
                name,
            ]))?;
            if !out.status.success()
                && !String::from_utf8_lossy(&out.stderr).contains("already exists")
            {
                bail!("useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let id = |flag: &str| -> anyhow::Result<u32> {
            let out = command::run(Command::new("id").args([flag, name]))?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        Ok(TestUser {
            name: name.to_owned(),
            uid: id("-u")?,
            gid: id("-g")?,
        })
    }
}

/// A polkit rules file that grants every `org.pacsync.*` action to one
/// group; removed on drop.
#[derive(Debug)]
pub struct PolkitGrant {
    path: PathBuf,
}

impl PolkitGrant {
    pub fn for_group(group: &str) -> anyhow::Result<PolkitGrant> {
        let dir = Path::new("/etc/polkit-1/rules.d");
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("49-pacsync-test-{group}.rules"));
        let example =
            std::fs::read_to_string(project_dir().join("polkit/49-pacsync.rules.example"))?;
        // The shipped example, with the test's group in place of "pacsync".
        let rule = example.replace("isInGroup(\"pacsync\")", &format!("isInGroup(\"{group}\")"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, rule)?;
        std::fs::rename(&tmp, &path)?;
        Ok(PolkitGrant { path })
    }
}

impl Drop for PolkitGrant {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Retry `f` until it returns `Some`, for at most `timeout`: for changes
/// another process applies in its own time (polkitd reloading its rules).
pub fn eventually<T>(
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("condition not reached within {timeout:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
