//! One simulated machine: it enrolls, holds the push channel open as
//! pacsyncd does, reports its state on a jittered period (hash first, the
//! packages when the server asks), changes its state now and then, and
//! carries out the operations the server pushes to it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::profiles::{Report, Rng, Universe};
use crate::stats::{Fleet, Kind};

/// What the run learns of a machine at the end.
#[derive(Debug, Default)]
pub struct Outcome {
    pub id: String,
    /// The hash of the last report the server acknowledged.
    pub acked: Option<String>,
}

struct Session {
    id: String,
    access: String,
    refresh: String,
}

async fn register(fleet: &Fleet, name: &str) -> Option<Session> {
    let t = Instant::now();
    let r = fleet
        .client
        .post(format!("{}/api/endpoints/register", fleet.base))
        .json(&json!({ "enrollment_token": fleet.enrollment, "name": name }))
        .send()
        .await;
    let v: Value = match r {
        Ok(r) if r.status() == StatusCode::CREATED => r.json().await.ok()?,
        Ok(r) => {
            fleet.error(Kind::Register, &format!("register {}", r.status()));
            return None;
        }
        Err(e) => {
            fleet.error(Kind::Register, &format!("register: {}", short(&e)));
            return None;
        }
    };
    fleet.latency(Kind::Register, t.elapsed());
    Some(Session {
        id: v["endpoint"]["id"].as_str()?.to_owned(),
        access: v["access_token"].as_str()?.to_owned(),
        refresh: v["refresh_token"].as_str()?.to_owned(),
    })
}

fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s.chars().take(160).collect()
}

impl Session {
    /// A new access token with the rotating refresh token.
    async fn renew(&mut self, fleet: &Fleet) -> bool {
        let r = fleet
            .client
            .post(format!("{}/api/auth/refresh", fleet.base))
            .json(&json!({ "refresh_token": self.refresh }))
            .send()
            .await;
        let Ok(r) = r.and_then(reqwest::Response::error_for_status) else {
            return false;
        };
        let Ok(v) = r.json::<Value>().await else {
            return false;
        };
        match (v["access_token"].as_str(), v["refresh_token"].as_str()) {
            (Some(a), Some(r)) => {
                self.access = a.to_owned();
                self.refresh = r.to_owned();
                fleet.renewals.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// One report: the hash, then the packages if the server lacks them.
    /// Returns whether the server acknowledged it.
    async fn report(&mut self, fleet: &Fleet, state: &Report) -> bool {
        let url = format!("{}/api/endpoints/{}/state", fleet.base, self.id);
        let t = Instant::now();
        let mut kind = Kind::ReportHash;
        for attempt in 0..3 {
            let r = fleet
                .client
                .put(&url)
                .bearer_auth(&self.access)
                .json(&json!({ "hash": state.hash }))
                .send()
                .await;
            let status = match r {
                Ok(r) => r.status(),
                Err(e) => {
                    fleet.error(kind, &format!("report: {}", short(&e)));
                    return false;
                }
            };
            let status = if status == StatusCode::CONFLICT {
                kind = Kind::ReportUpload;
                match fleet
                    .client
                    .put(&url)
                    .bearer_auth(&self.access)
                    .header("content-type", "application/json")
                    .body(state.body.clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status(),
                    Err(e) => {
                        fleet.error(kind, &format!("upload: {}", short(&e)));
                        return false;
                    }
                }
            } else {
                status
            };
            match status {
                StatusCode::NO_CONTENT => {
                    fleet.latency(kind, t.elapsed());
                    return true;
                }
                StatusCode::UNAUTHORIZED if attempt == 0 && self.renew(fleet).await => {}
                other => {
                    fleet.error(kind, &format!("report {other}"));
                    return false;
                }
            }
        }
        false
    }

    /// Carry out an operation the server pushed: running, then done.
    async fn operate(&self, fleet: &Fleet, op: &Value) {
        let Some(op_id) = op["id"].as_str() else {
            return;
        };
        let url = format!("{}/api/operations/{op_id}/progress", fleet.base);
        for body in [
            json!({ "status": "running", "progress": 50, "message": "simulated pacman" }),
            json!({ "status": "succeeded", "progress": 100 }),
        ] {
            let t = Instant::now();
            match fleet
                .client
                .post(&url)
                .bearer_auth(&self.access)
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => fleet.latency(Kind::Progress, t.elapsed()),
                // Cancelled meanwhile: the machine stops, as pacsyncd does.
                Ok(r) if r.status() == StatusCode::CONFLICT => return,
                Ok(r) => fleet.error(Kind::Progress, &format!("progress {}", r.status())),
                Err(e) => fleet.error(Kind::Progress, &format!("progress: {}", short(&e))),
            }
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(fleet: &Fleet, token: &str) -> Option<Socket> {
    let t = Instant::now();
    let mut request = format!("{}/api/ws", fleet.ws_base)
        .into_client_request()
        .ok()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => {
            fleet.latency(Kind::Connect, t.elapsed());
            fleet.connected.fetch_add(1, Ordering::Relaxed);
            Some(socket)
        }
        Err(e) => {
            fleet.error(Kind::Connect, &format!("connect: {e}"));
            None
        }
    }
}

/// Reads the push channel on a task of its own, as pacsyncd does: pings
/// are answered and pushes timed while the machine is busy with a report.
/// Operations to carry out come out of the returned channel, which closes
/// when the connection is lost.
fn listen(fleet: Arc<Fleet>, mut socket: Socket) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stop = fleet.stop.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = socket.next() => match m {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                        match v["type"].as_str() {
                            Some("target_changed") => {
                                if let Some(t) = v["target"]["id"].as_str() {
                                    fleet.target_arrived(t);
                                }
                            }
                            Some("operation_requested") => {
                                let _ = tx.send(v);
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        fleet.connected.fetch_sub(1, Ordering::Relaxed);
                        fleet.disconnects.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                _ = stop.changed() => {
                    let _ = socket.close(None).await;
                    let _ = socket.flush().await;
                    fleet.connected.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    rx
}

/// The machine's life until the fleet stops.
pub async fn run(fleet: Arc<Fleet>, universe: Arc<Universe>, i: usize) -> Outcome {
    let mut rng = Rng::new(i as u64 * 7919 + 17);
    let Some(mut session) = register(&fleet, &format!("sim-{i:05}")).await else {
        return Outcome::default();
    };
    if let Ok(mut ids) = fleet.ids.lock() {
        ids.push(session.id.clone());
    }
    let mut outcome = Outcome {
        id: session.id.clone(),
        acked: None,
    };
    let mut profile = rng.below(fleet.profiles.len());
    let mut state = fleet.profiles[profile].clone();
    let mut channel = connect(&fleet, &session.access)
        .await
        .map(|s| listen(fleet.clone(), s));
    let mut next_report = tokio::time::Instant::now();
    let mut stop = fleet.stop.subscribe();
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(operations) = channel.as_mut() else {
            // Reconnect after a pause, as pacsyncd backs off.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
            if !session.renew(&fleet).await {
                fleet.error(Kind::Connect, "refresh before reconnecting failed");
            }
            channel = connect(&fleet, &session.access)
                .await
                .map(|s| listen(fleet.clone(), s));
            if channel.is_some() {
                fleet.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        tokio::select! {
            op = operations.recv() => match op {
                Some(v) => session.operate(&fleet, &v["operation"]).await,
                None => channel = None,
            },
            () = tokio::time::sleep_until(next_report) => {
                // Now and then the machine changes: mostly to a state
                // others have (an upgrade the fleet shares), sometimes to
                // one nobody reported.
                if outcome.acked.is_some() && rng.chance(fleet.change) {
                    if rng.chance(0.2) {
                        state = Report::of(&Universe::variant(
                            &universe.profile(profile as u64),
                            rng.next(),
                        ));
                    } else {
                        profile = rng.below(fleet.profiles.len());
                        state = fleet.profiles[profile].clone();
                    }
                }
                if session.report(&fleet, &state).await {
                    outcome.acked = Some(state.hash.clone());
                }
                let period = fleet.report_every.as_secs_f64();
                let jitter = 0.5 + (rng.next() % 1000) as f64 / 1000.0;
                next_report += Duration::from_secs_f64(period * jitter);
            }
            _ = stop.changed() => break,
        }
    }
    outcome
}
