//! What an upload worker spends on one full state report (figures in
//! docs/benchmarks.md): reading the JSON into a state, hashing it,
//! compressing it against a base, dropping it — and the whole of
//! [`check_content`] — on the load benchmark's 1,500-package states, one
//! thread, no server. Prints the median and p99 of each step, in µs.
//!
//! cargo bench -p pacsync-server --bench upload -- [--packages 1500]
//!     [--reports 500]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "load/states.rs"]
mod states;

use std::hint::black_box;
use std::time::{Duration, Instant};

use pacsync_server::api::endpoints::check_content;
use pacsync_server::store::bases::Bases;
use pacsync_server::store::content::read_report;
use states::{full_body, make_state};

struct Step {
    name: &'static str,
    times: Vec<Duration>,
}

impl Step {
    fn new(name: &'static str) -> Step {
        Step {
            name,
            times: Vec::new(),
        }
    }

    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.times.push(t.elapsed());
        out
    }

    fn line(&mut self) -> String {
        self.times.sort();
        let at = |p: f64| {
            let i = ((self.times.len() as f64 - 1.0) * p).round() as usize;
            self.times[i].as_secs_f64() * 1e6
        };
        format!(
            "{:<28} p50 {:>8.1} µs   p99 {:>8.1} µs",
            self.name,
            at(0.5),
            at(0.99)
        )
    }
}

fn main() -> anyhow::Result<()> {
    let (mut packages, mut reports) = (1500usize, 500usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--packages" => packages = it.next().unwrap_or_default().parse()?,
            "--reports" => reports = it.next().unwrap_or_default().parse()?,
            _ => {} // cargo bench passes --bench
        }
    }
    let bodies: Vec<(String, _)> = (0..=reports)
        .map(|i| full_body(&make_state(packages, i)))
        .collect();
    println!(
        "{reports} reports of {packages} packages, {} KiB of JSON each",
        bodies[0].1.len() / 1024
    );

    // The first state stored alone becomes every later one's base, as on a
    // server that stored it moments ago.
    let bases = Bases::default();
    let (hash, body) = &bodies[0];
    let (_, first) = read_report(std::str::from_utf8(body)?)?;
    let base = bases
        .compress(hash, &first.unwrap_or_default(), body)?
        .candidate
        .ok_or_else(|| anyhow::anyhow!("the first state offers no base"))?;
    bases.adopt(base);

    let mut steps = [
        Step::new("read the JSON"),
        Step::new("hash"),
        Step::new("compress against the base"),
        Step::new("drop the state"),
        Step::new("check_content, whole"),
    ];
    for (hash, body) in &bodies[1..] {
        let text = std::str::from_utf8(body)?;
        let (_, state) = steps[0].time(|| read_report(black_box(text)))?;
        let state = state.unwrap_or_default();
        let actual = steps[1].time(|| state.content_hash());
        anyhow::ensure!(actual.to_string() == *hash, "hash differs");
        let compressed = steps[2].time(|| bases.compress(hash, &state, body.as_ref()))?;
        anyhow::ensure!(compressed.base.is_some(), "not compressed against the base");
        steps[3].time(|| drop(state));
        let upload = steps[4]
            .time(|| check_content(black_box(body), &bases))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        anyhow::ensure!(upload.hash == *hash, "check_content's hash differs");
    }
    for s in &mut steps {
        println!("{}", s.line());
    }
    Ok(())
}
