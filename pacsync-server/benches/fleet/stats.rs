//! What the fleet shares while it runs (the server's address, the
//! profiles, the stop signal) and what it measures.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use crate::profiles::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Register,
    Connect,
    ReportHash,
    ReportUpload,
    Progress,
    SetLatest,
    RequestSync,
    OperationDone,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Register => "enrollment (`POST /api/endpoints/register`)",
            Kind::Connect => "push channel connect (`GET /api/ws` upgrade)",
            Kind::ReportHash => "state report, hash only",
            Kind::ReportUpload => "state report with upload (hash, 409, packages)",
            Kind::Progress => "operation progress (`POST /api/operations/{id}/progress`)",
            Kind::SetLatest => "admin set-latest (all members recomputed)",
            Kind::RequestSync => "admin sync request",
            Kind::OperationDone => {
                "requested sync until succeeded (via the machine's push channel)"
            }
        }
    }
}

/// One new target on its way to the connected machines. A push may
/// arrive before the admin's answer does, so arrivals are kept as instants.
#[derive(Debug, Default)]
pub struct TargetRun {
    pub sent: Option<Instant>,
    /// Machines connected when it was set.
    pub connected: usize,
    pub arrivals: Vec<Instant>,
}

impl TargetRun {
    /// Arrival delays, sorted.
    pub fn delays(&self) -> Vec<Duration> {
        let Some(sent) = self.sent else {
            return Vec::new();
        };
        let mut d: Vec<Duration> = self
            .arrivals
            .iter()
            .map(|a| a.saturating_duration_since(sent))
            .collect();
        d.sort();
        d
    }
}

#[derive(Debug)]
pub struct Fleet {
    pub base: String,
    pub ws_base: String,
    pub client: reqwest::Client,
    pub enrollment: String,
    pub profiles: Vec<Report>,
    pub report_every: Duration,
    /// Chance that a machine's state changed since its last report.
    pub change: f64,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub connected: AtomicUsize,
    pub disconnects: AtomicUsize,
    pub reconnects: AtomicUsize,
    pub renewals: AtomicUsize,
    /// Enrolled machines' ids, for the admin's requests.
    pub ids: Mutex<Vec<String>>,
    latencies: Mutex<BTreeMap<Kind, Vec<Duration>>>,
    errors: Mutex<BTreeMap<Kind, BTreeMap<String, usize>>>,
    targets: Mutex<HashMap<String, TargetRun>>,
}

impl Fleet {
    pub fn new(
        base: String,
        client: reqwest::Client,
        enrollment: String,
        profiles: Vec<Report>,
        report_every: Duration,
        change: f64,
    ) -> Fleet {
        Fleet {
            ws_base: base.replacen("http", "ws", 1),
            base,
            client,
            enrollment,
            profiles,
            report_every,
            change,
            stop: tokio::sync::watch::channel(false).0,
            connected: AtomicUsize::new(0),
            disconnects: AtomicUsize::new(0),
            reconnects: AtomicUsize::new(0),
            renewals: AtomicUsize::new(0),
            ids: Mutex::default(),
            latencies: Mutex::default(),
            errors: Mutex::default(),
            targets: Mutex::default(),
        }
    }

    pub fn latency(&self, kind: Kind, d: Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            l.entry(kind).or_default().push(d);
        }
    }

    pub fn error(&self, kind: Kind, what: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind)
                .or_default()
                .entry(what.to_owned())
                .or_default() += 1;
        }
    }

    pub fn errors(&self) -> usize {
        self.errors
            .lock()
            .map(|e| e.values().flat_map(|m| m.values()).sum())
            .unwrap_or(0)
    }

    pub fn requests(&self) -> usize {
        self.latencies
            .lock()
            .map(|l| l.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    pub fn target_set(&self, id: &str, sent: Instant, connected: usize) {
        if let Ok(mut t) = self.targets.lock() {
            let run = t.entry(id.to_owned()).or_default();
            run.sent = Some(sent);
            run.connected = connected;
        }
    }

    pub fn target_arrived(&self, id: &str) {
        let now = Instant::now();
        if let Ok(mut t) = self.targets.lock() {
            t.entry(id.to_owned()).or_default().arrivals.push(now);
        }
    }

    pub fn take_targets(&self) -> Vec<TargetRun> {
        let mut runs: Vec<TargetRun> = self
            .targets
            .lock()
            .map(|mut t| t.drain().map(|(_, r)| r).collect())
            .unwrap_or_default();
        runs.sort_by_key(|r| r.sent);
        runs
    }

    /// The latency table, one row per kind of request.
    pub fn table(&self) -> Vec<String> {
        let mut lines = vec![
            "| request | count | p50 | p99 | max | errors |".to_owned(),
            "|---|---:|---:|---:|---:|---:|".to_owned(),
        ];
        let latencies = self.latencies.lock().map(|l| l.clone()).unwrap_or_default();
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        for (kind, mut l) in latencies {
            l.sort();
            let failed: usize = errors.get(&kind).map_or(0, |m| m.values().sum());
            lines.push(format!(
                "| {} | {} | {} | {} | {} | {failed} |",
                kind.label(),
                l.len(),
                ms(pct(&l, 0.50)),
                ms(pct(&l, 0.99)),
                ms(l.last().copied().unwrap_or_default()),
            ));
        }
        for (kind, m) in errors {
            for (what, n) in m {
                lines.push(format!("\nerror ({}): {what} × {n}", kind.label()));
            }
        }
        lines
    }
}

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
