//! The server's push channel as an admin's browser holds it: a WebSocket
//! on `/api/ws`, its JSON messages read on a thread.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

/// The messages of one push session.
#[derive(Debug)]
pub struct PushSession {
    messages: mpsc::Receiver<Value>,
}

impl PushSession {
    /// Connect to `base` (`http://host:port`) with `token` and wait for the
    /// server's `hello`.
    pub fn connect(base: &str, token: &str) -> anyhow::Result<PushSession> {
        let url = format!("{}/api/ws", base.replacen("http", "ws", 1));
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        let (mut socket, _) = tungstenite::connect(request).context("WebSocket to /api/ws")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(message) = socket.read() {
                if let tungstenite::Message::Text(text) = message {
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        break;
                    };
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let session = PushSession { messages: rx };
        session.wait_for(Duration::from_secs(10), |m| m["type"] == "hello")?;
        Ok(session)
    }

    /// The next message `accept` takes within `within`; the others are
    /// passed over.
    pub fn wait_for(
        &self,
        within: Duration,
        mut accept: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if accept(&m) => return Ok(m),
                Ok(_) => {}
                Err(_) => bail!("no such push message within {within:?}"),
            }
        }
    }
}
