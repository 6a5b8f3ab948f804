//! Driving requests from a fixed number of tasks, and what came of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Outcome {
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    failures: usize,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1].as_secs_f64() * 1000.0
    }

    pub fn line(&mut self, what: &str) -> String {
        format!(
            "| {what} | {:.0}/s | {:.1} ms | {:.1} ms | {} | {} |",
            self.rate(),
            self.pct(0.50),
            self.pct(0.99),
            self.done,
            self.failures
        )
    }
}

/// Runs `op(i)` from `concurrency` tasks for `seconds`, or until every
/// `i < limit` has run (the rate is then over the time that took); `op`
/// returns whether the request succeeded.
pub async fn drive<F, Fut>(concurrency: usize, seconds: u64, limit: usize, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let t = Instant::now();
                if op(i).await {
                    lat.push(t.elapsed());
                } else {
                    failures += 1;
                }
            }
            (lat, failures)
        }));
    }
    let mut out = Outcome::default();
    for t in tasks {
        if let Ok((lat, f)) = t.await {
            out.latencies.extend(lat);
            out.failures += f;
        }
    }
    out.elapsed = start.elapsed();
    out.done = out.latencies.len();
    if out.elapsed < Duration::from_secs(seconds) {
        eprintln!(
            "all {limit} requests made in {:.1?}, before the {seconds} s were over",
            out.elapsed
        );
    }
    out
}

/// Runs `op(i)` for every `i < n` from `concurrency` tasks; returns how
/// many failed.
pub async fn run_all<F, Fut>(concurrency: usize, n: usize, op: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return failed;
                }
                if !op(i).await {
                    failed += 1;
                }
            }
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap_or(1);
    }
    failed
}
