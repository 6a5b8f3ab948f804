//! The real WayBar, under headless sway, running `pacsync waybar` as a
//! custom module against a real daemon: the screenshot shows our module,
//! coloured by its status class, with text in it, and follows the daemon
//! leaving.
//!
//! Each status class gets a distinctive background in the test's CSS, so
//! the picture is checked by pixel colours (grim writes PPM, read here)
//! rather than by reading glyphs: the module's box must be there in the
//! class's colour, and hold pixels of the text colour (our text).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pacsync_tests::daemon_process::{DaemonHome, DaemonProcess};
use pacsync_tests::desktop::WaylandSession;
use pacsync_tests::system_bus::{SystemBus, TestUser, eventually};
use pacsync_tests::{Sandbox, ScratchDir, require_pacman_sandbox};

const CLI: &str = env!("CARGO_BIN_EXE_pacsync");
const BAR: &str = "0,0 1280x30";
const MAGENTA: [u8; 3] = [0xff, 0x00, 0xff];
const CYAN: [u8; 3] = [0x00, 0xff, 0xff];
const WHITE: [u8; 3] = [0xff, 0xff, 0xff];
const BLACK: [u8; 3] = [0x00, 0x00, 0x00];

/// A binary PPM (P6) as grim writes it.
struct Picture {
    width: usize,
    pixels: Vec<[u8; 3]>,
}

impl Picture {
    fn parse(bytes: &[u8]) -> anyhow::Result<Picture> {
        // Header: "P6", width, height, maxval, each after whitespace, then
        // one whitespace byte and the pixels.
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            let start = i;
            while bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                i += 1;
            }
            fields.push(std::str::from_utf8(&bytes[start..i])?.to_owned());
        }
        anyhow::ensure!(
            fields[0] == "P6" && fields[3] == "255",
            "not a P6 PPM: {fields:?}"
        );
        let width: usize = fields[1].parse()?;
        let height: usize = fields[2].parse()?;
        let data = &bytes[i + 1..];
        anyhow::ensure!(data.len() >= width * height * 3, "short PPM");
        Ok(Picture {
            width,
            pixels: data
                .chunks_exact(3)
                .take(width * height)
                .map(|p| [p[0], p[1], p[2]])
                .collect(),
        })
    }

    /// The columns where `colour` fills most of the column (the module's
    /// box), and how many pixels of `ink` lie within those columns.
    fn module(&self, colour: [u8; 3], ink: [u8; 3]) -> (usize, usize) {
        let height = self.pixels.len() / self.width;
        let mut columns = 0;
        let mut inked = 0;
        for x in 0..self.width {
            let column: Vec<[u8; 3]> = (0..height)
                .map(|y| self.pixels[y * self.width + x])
                .collect();
            if column.iter().filter(|p| **p == colour).count() * 2 > height {
                columns += 1;
                inked += column.iter().filter(|p| **p == ink).count();
            }
        }
        (columns, inked)
    }
}

fn shoot(session: &WaylandSession, dir: &Path) -> anyhow::Result<Picture> {
    let path = dir.join("bar.ppm");
    let out = session
        .command("grim")
        .args(["-t", "ppm", "-g", BAR])
        .arg(&path)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "grim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Picture::parse(&std::fs::read(&path)?)
}

#[test]
fn waybar_shows_the_module_in_its_status_colour() {
    if !require_pacman_sandbox() || !SystemBus::available() || !WaylandSession::available() {
        return;
    }
    let bus = SystemBus::start().expect("bus");
    let sandbox = Sandbox::new(&[]).expect("sandbox");
    let home = DaemonHome::new(&sandbox).expect("home");
    let daemon_binary = Path::new(CLI).with_file_name("pacsyncd");
    let daemon = DaemonProcess::start(&daemon_binary, &bus, &home).expect("daemon");
    let user = TestUser::ensure("pacsynct-bar").expect("test user");
    let session = WaylandSession::start(user.clone()).expect("sway session");

    let dir = ScratchDir::new("waybar-module").expect("dir");
    std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // waybar leaves its modules' processes running: the module records
    // its pid so the test can end it.
    let pid_file = dir.path().join("module.pid");
    let exec = format!(
        "sh -c 'echo $$ > {pid}; exec {cli} --bus {bus} waybar'",
        pid = pid_file.display(),
        cli = CLI,
        bus = bus.address()
    );
    let config = serde_json::json!({
        "layer": "top", "position": "top", "height": 30,
        "modules-left": ["custom/pacsync"],
        "custom/pacsync": { "exec": exec, "return-type": "json", "format": "{}" }
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    std::fs::write(
        dir.path().join("style.css"),
        "* { font-family: DejaVu Sans; font-size: 13px; min-height: 0; }\n\
         window#waybar { background: #000000; }\n\
         #custom-pacsync { padding: 0 12px; }\n\
         #custom-pacsync.unregistered { background: #ff00ff; color: #ffffff; }\n\
         #custom-pacsync.unavailable { background: #00ffff; color: #000000; }\n",
    )
    .expect("style");
    let mut waybar = session
        .command("waybar")
        .arg("-c")
        .arg(dir.path().join("config.json"))
        .arg("-s")
        .arg(dir.path().join("style.css"))
        .stdout(std::process::Stdio::null())
        .stderr(session.log_file("waybar-module.log").expect("log"))
        .spawn()
        .expect("waybar");

    let result = (|| -> anyhow::Result<()> {
        // The daemon is up and not enrolled: class `unregistered`.
        eventually(Duration::from_secs(30), || {
            let (columns, ink) = shoot(&session, dir.path())?.module(MAGENTA, WHITE);
            Ok((columns >= 20 && ink > 0).then_some(()))
        })?;
        // The daemon leaves: the module turns `unavailable`.
        daemon.kill()?;
        eventually(Duration::from_secs(15), || {
            let picture = shoot(&session, dir.path())?;
            let (gone, _) = picture.module(MAGENTA, WHITE);
            let (columns, ink) = picture.module(CYAN, BLACK);
            Ok((gone == 0 && columns >= 20 && ink > 0).then_some(()))
        })?;
        Ok(())
    })();
    let _ = waybar.kill();
    let _ = waybar.wait();
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    if let Err(e) = result {
        panic!("{e:#}\nwaybar: {}", session.log("waybar-module.log"));
    }
}
