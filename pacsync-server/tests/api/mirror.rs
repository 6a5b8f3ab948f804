//! A small upstream mirror over HTTP/1.1 for the archive's fill: serves
//! `/{repo}/os/{arch}/{file}` from repository directories, answers
//! `Range: bytes=N-` with 206, and on request cuts a file's first transfer
//! short (the connection drops half-way) or sends it slowly.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    repos: HashMap<String, PathBuf>,
    /// File name → bytes sent before the connection is dropped, once.
    cut_once: HashMap<String, usize>,
    /// Bytes per write and the pause between writes.
    throttle: Option<(usize, Duration)>,
    /// Every request: path and its `Range` header.
    log: Vec<(String, Option<String>)>,
}

#[derive(Clone)]
pub struct Mirror {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Mirror {
    /// Serves `repos` (name → directory) until the test process ends.
    pub fn start(repos: &[(&str, &std::path::Path)]) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mirror");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            repos: repos
                .iter()
                .map(|(n, d)| ((*n).to_owned(), d.to_path_buf()))
                .collect(),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        Mirror { base, state }
    }

    /// The `Server =` URL of this mirror.
    pub fn server_url(&self) -> String {
        format!("{}/$repo/os/$arch", self.base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("mirror state")
    }

    /// The next full transfer of `file` stops after `bytes`.
    pub fn cut_once(&self, file: &str, bytes: usize) {
        self.lock().cut_once.insert(file.to_owned(), bytes);
    }

    /// Sends `bytes` at a time with `pause` between.
    pub fn throttle(&self, bytes: usize, pause: Duration) {
        self.lock().throttle = Some((bytes, pause));
    }

    /// The requests for paths ending in `suffix`: their `Range` headers.
    pub fn requests_for(&self, suffix: &str) -> Vec<Option<String>> {
        self.lock()
            .log
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    let (file, cut, throttle) = {
        let mut s = state.lock().expect("mirror state");
        s.log.push((path.clone(), range.clone()));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let file = match parts.as_slice() {
            [repo, "os", _arch, name] => s.repos.get(*repo).map(|d| d.join(name)),
            _ => None,
        };
        let name = parts.last().copied().unwrap_or_default().to_owned();
        let cut = if range.is_none() {
            s.cut_once.remove(&name)
        } else {
            None
        };
        (file, cut, s.throttle)
    };
    let mut out = conn;
    let Some(bytes) = file.and_then(|f| std::fs::read(f).ok()) else {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < bytes.len());
    let (head, body) = match start {
        Some(n) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {n}-{}/{}\r\nconnection: close\r\n\r\n",
                bytes.len() - n,
                bytes.len() - 1,
                bytes.len()
            ),
            &bytes[n..],
        ),
        None => (
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\naccept-ranges: bytes\r\nconnection: close\r\n\r\n",
                bytes.len()
            ),
            &bytes[..],
        ),
    };
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let body = match cut {
        Some(n) => &body[..n.min(body.len())],
        None => body,
    };
    match throttle {
        Some((step, pause)) => {
            for chunk in body.chunks(step) {
                if out.write_all(chunk).and_then(|()| out.flush()).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        }
        None => {
            let _ = out.write_all(body);
        }
    }
    let _ = out.flush();
    // Cut short or done: the connection closes either way.
    let _ = out.shutdown(std::net::Shutdown::Both);
}
