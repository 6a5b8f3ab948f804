//! The whole system as an office lives with it (issue 6): one server, three
//! machines — each a sandboxed pacman root with its own pacsyncd on its own
//! system bus with a real polkitd — and the `pacsync` command run by a user
//! whom polkit grants the pacsync actions. One story in eight steps, on
//! SQLite and again on a throwaway PostgreSQL; the machines carry over from
//! step to step as they would in an office.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pacsync_tests::admin_watch::PushSession;
use pacsync_tests::machine::{Binaries, Machine};
use pacsync_tests::office::{ALPHA, Office, drop_repository};
use pacsync_tests::server_process::{ApiClient, ServerProcess};
use pacsync_tests::system_bus::{PolkitGrant, SystemBus, TestUser};
use pacsync_tests::{postgres, require_pacman_sandbox};
use serde_json::{Value, json};

/// How long a status may take to follow a change made elsewhere.
const FOLLOW: Duration = Duration::from_secs(10);

struct Story {
    alpha: Machine,
    bravo: Machine,
    charlie: Machine,
    server: ServerProcess,
    admin: ApiClient,
    pool: String,
    office: Office,
    user: TestUser,
    _grant: PolkitGrant,
    _pg: Option<postgres::Postgres>,
}

fn binaries() -> Binaries {
    Binaries::beside(Path::new(env!("CARGO_BIN_EXE_pacsync-demo")))
}

fn start(backend: &str) -> Option<Story> {
    if !require_pacman_sandbox() || !SystemBus::available() {
        return None;
    }
    let pg = match backend {
        "postgresql" => Some(postgres::start()?),
        _ => None,
    };
    let bins = binaries();
    // One group per backend: both stories run at once, and each removes
    // its rules file at the end.
    let user = TestUser::ensure(&format!("pacsynct-{backend}")).expect("test user");
    let grant = PolkitGrant::for_group(&user.name).expect("polkit rule");
    let office = Office::new().expect("repositories");
    let env: Vec<(&str, &str)> = match &pg {
        Some(pg) => vec![("DATABASE_TYPE", "postgresql"), ("DATABASE_URL", &pg.url)],
        None => Vec::new(),
    };
    let server = ServerProcess::start_with_env(&bins.server, &env).expect("server");
    let admin = server.admin_client().expect("admin");
    let (pool, token) = admin.pool_with_token("office").expect("pool");
    let machine = |name: &str, sandbox| {
        let m = Machine::start(name, sandbox, &bins, Some(user.clone())).expect(name);
        m.register(&server.url(), &token).expect("register");
        m
    };
    Some(Story {
        alpha: machine("alpha", office.alpha().expect("alpha")),
        bravo: machine("bravo", office.bravo().expect("bravo")),
        charlie: machine("charlie", office.charlie().expect("charlie")),
        server,
        admin,
        pool,
        office,
        user,
        _grant: grant,
        _pg: pg,
    })
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Assert `m`'s status, with the daemon's log on failure.
fn assert_status(m: &Machine, want: &str) {
    if let Err(e) = m.wait_status(want, FOLLOW) {
        panic!("{e:#}");
    }
}

impl Story {
    fn machines(&self) -> [&Machine; 3] {
        [&self.alpha, &self.bravo, &self.charlie]
    }

    /// The machine's row on the server.
    fn endpoint(&self, name: &str) -> Value {
        let list = self
            .admin
            .call("GET", "/api/endpoints?per_page=500", None)
            .expect("endpoints");
        list["items"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not on the server: {list}"))
    }

    /// Wait until the server shows `want` for the machine.
    fn server_status(&self, name: &str, want: &str) {
        let deadline = Instant::now() + FOLLOW;
        loop {
            let e = self.endpoint(name);
            if e["status"] == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server shows {name} as {}, not {want}: {e}",
                e["status"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A change made elsewhere (another machine, an admin) reaches `m`:
    /// the server has recomputed its status at once, and pushes the change
    /// to the daemon, whose status follows without a Refresh.
    fn follows(&self, m: &Machine, want: &str) {
        self.server_status(&m.name, want);
        assert_status(m, want);
    }

    /// The pool's target history, newest first.
    fn targets(&self) -> Vec<Value> {
        let v = self
            .admin
            .call("GET", &format!("/api/pools/{}/targets", self.pool), None)
            .expect("targets");
        v["items"]
            .as_array()
            .or(v.as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// `pacsync set-latest -m COMMENT --yes --json` on `m`.
    fn set_latest(m: &Machine, comment: &str) -> (Option<i32>, Value) {
        m.json(&["set-latest", "-m", comment, "--yes"])
            .expect("set-latest")
    }

    /// Step 1: Three machines enroll; alpha's state becomes the target.
    fn step1_set_latest(&self) {
        for m in self.machines() {
            assert_status(m, "no_target");
        }
        let (code, done) = Story::set_latest(&self.alpha, "office baseline");
        assert_eq!(code, Some(0), "{done}\n{}", self.alpha.log_tail());
        assert_eq!(done["outcome"], "succeeded", "{done}");
        assert_status(&self.alpha, "in_sync");
        // bravo's plan downgrades and removes as well as upgrading and
        // installing: that is diverged, not only behind.
        self.follows(&self.bravo, "diverged");
        self.follows(&self.charlie, "behind");

        let history = self.targets();
        assert_eq!(history.len(), 1, "{history:?}");
        let t = &history[0];
        assert_eq!(t["from_endpoint_name"], "alpha", "{t}");
        assert_eq!(t["comment"], "office baseline", "{t}");
        assert_eq!(t["kind"], "set_latest", "{t}");
        // Who asked, as the daemon recorded it: the user, by uid.
        let (_, local) = self.alpha.json(&["history"]).expect("history");
        assert_eq!(local[0]["kind"], "set_latest", "{local}");
        assert_eq!(
            local[0]["caller"],
            format!("uid {}", self.user.uid),
            "{local}"
        );
        let (_, s) = self.alpha.json(&["status"]).expect("status");
        assert_eq!(s["target"]["hash"], t["hash"], "{s}");
    }

    /// Step 2: bravo syncs: every kind of step, then exactly the target.
    fn step2_sync(&self) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let before = self.bravo.packages().expect("-Q");
        let before_deps = self.bravo.sandbox.query_dependencies().expect("-Qd");
        let (code, plan) = self.bravo.json(&["plan"]).expect("plan");
        assert_eq!(code, Some(0), "{plan}");
        let steps: BTreeMap<String, String> = plan["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["package"].as_str().unwrap_or_default().to_owned(),
                    s["action"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            map(&[
                ("bash", "upgrade"),
                ("firefox", "install"),
                ("htop", "change_reason"),
                ("nano", "remove"),
                ("openssl", "downgrade"),
                ("vim", "install"),
            ]),
            "{plan}"
        );

        let (code, done) = self.bravo.json(&["sync", "--yes"]).expect("sync");
        assert_eq!(code, Some(0), "{done}\n{}", self.bravo.log_tail());
        assert_eq!(done["outcome"], "succeeded", "{done}");
        assert_eq!(self.bravo.packages().expect("-Q"), map(&ALPHA));
        assert_eq!(
            self.bravo.sandbox.query_dependencies().expect("-Qd"),
            map(&[("openssl", "3.2-1")])
        );
        assert_status(&self.bravo, "in_sync");
        self.server_status("bravo", "in_sync");
        (before, before_deps)
    }

    /// Step 3 and 6: alpha installs by hand (pushed to WayBar within a second);
    /// the server goes away while charlie upgrades by hand; machines show
    /// offline, keep working, and converge when it is back.
    fn step3_and_6_by_hand_and_offline(&mut self) {
        let bar = self.alpha.waybar().expect("waybar");
        bar.wait_class("in_sync", Duration::from_secs(5))
            .expect("in_sync line");
        self.alpha
            .sandbox
            .install(&["rsync"])
            .expect("pacman -S rsync");
        bar.wait_class("ahead", Duration::from_secs(1))
            .expect("ahead within a second");
        self.server_status("alpha", "ahead");

        self.server.kill().expect("stop the server");
        self.charlie
            .sandbox
            .install_files(&[self.office.loose_file("vim", "9.2-1")])
            .expect("pacman -U vim 9.2");
        let s = self
            .charlie
            .wait_status("offline", FOLLOW)
            .expect("charlie offline");
        assert_eq!(s["last_known_status"], "diverged", "{s}");
        for (m, known) in [(&self.alpha, "ahead"), (&self.bravo, "in_sync")] {
            m.refresh().expect("refresh");
            let s = m.wait_status("offline", FOLLOW).expect("offline");
            assert_eq!(s["last_known_status"], known, "{}: {s}", m.name);
        }
        bar.wait_class("offline", Duration::from_secs(5))
            .expect("offline line");
        // Working locally: the plan needs no server.
        let (code, plan) = self.charlie.json(&["plan"]).expect("plan");
        assert_eq!(code, Some(0), "{plan}");
        assert_eq!(plan["summary"]["downgrade"], 1, "{plan}");

        self.server.restart().expect("restart the server");
        for (m, want) in [
            (&self.alpha, "ahead"),
            (&self.bravo, "in_sync"),
            (&self.charlie, "diverged"),
        ] {
            // The daemons' own retries bring them back; nobody refreshes.
            m.wait_status(want, Duration::from_secs(30))
                .expect("converged");
            self.server_status(&m.name, want);
        }
        bar.wait_class("ahead", Duration::from_secs(5))
            .expect("ahead again");
        // What charlie did while the server was down reached it.
        let id = self.endpoint("charlie")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let state = self
            .admin
            .call("GET", &format!("/api/endpoints/{id}/state"), None)
            .expect("state");
        let vim = state["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "vim"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(vim["version"], "9.2-1", "{state}");
    }

    /// Step 4: bravo reverts; alpha sets a new target; the admin rolls it back.
    fn step4_revert_and_rollback(
        &self,
        before: &BTreeMap<String, String>,
        before_deps: &BTreeMap<String, String>,
    ) {
        let (code, done) = self.bravo.json(&["revert", "--yes"]).expect("revert");
        assert_eq!(code, Some(0), "{done}\n{}", self.bravo.log_tail());
        assert_eq!(&self.bravo.packages().expect("-Q"), before);
        assert_eq!(
            &self.bravo.sandbox.query_dependencies().expect("-Qd"),
            before_deps
        );
        assert_status(&self.bravo, "diverged");

        let (code, done) = Story::set_latest(&self.alpha, "rsync for the backups");
        assert_eq!(code, Some(0), "{done}");
        assert_status(&self.alpha, "in_sync");
        self.follows(&self.charlie, "diverged");

        let history = self.targets();
        assert_eq!(history.len(), 2, "{history:?}");
        let first = history[1]["id"].as_str().expect("id").to_owned();
        let rollback = self
            .admin
            .call(
                "POST",
                &format!("/api/pools/{}/rollback", self.pool),
                Some(json!({ "target_id": first, "comment": "rsync next week" })),
            )
            .expect("rollback");
        assert_eq!(rollback["kind"], "rollback", "{rollback}");
        assert_eq!(rollback["hash"], history[1]["hash"], "{rollback}");
        self.follows(&self.alpha, "ahead");
        self.follows(&self.bravo, "diverged");
        self.follows(&self.charlie, "diverged");
        let (_, s) = self.alpha.json(&["status"]).expect("status");
        assert_eq!(s["target"]["hash"], history[1]["hash"], "{s}");
    }

    /// Step 5: charlie's pacman.conf loses `extra`: firefox is excluded for the
    /// pool, charlie's plan leaves it alone, the matrix says why.
    fn step5_repository_analysis(&self) {
        drop_repository(&self.charlie.sandbox, "extra").expect("pacman.conf");
        self.charlie.refresh().expect("refresh");
        let deadline = Instant::now() + FOLLOW;
        let analysis = loop {
            let a = self.admin.call(
                "GET",
                &format!("/api/repositories/analyze?pool={}", self.pool),
                None,
            );
            if let Ok(a) = a
                && a["excluded"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|n| n == "firefox"))
            {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "firefox not excluded: {}",
                self.charlie.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let firefox = analysis["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "firefox"))
            .cloned()
            .expect("firefox in the matrix");
        assert_eq!(firefox["availability"], "partial", "{firefox}");
        // The matrix says why: not every member's repositories have it.
        assert_eq!(firefox["excluded"], "not_in_every_repository", "{firefox}");
        // charlie's column has no cell for it; the others' have.
        let columns = analysis["columns"].as_array().expect("columns");
        let charlie_col = columns
            .iter()
            .position(|c| {
                c["machines"]
                    .as_array()
                    .is_some_and(|m| m == &[json!("charlie")])
            })
            .expect("a column of charlie's own");
        for (i, cell) in firefox["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .enumerate()
        {
            assert_eq!(cell.is_null(), i == charlie_col, "{analysis}");
        }
        let pool = self
            .admin
            .call("GET", &format!("/api/pools/{}", self.pool), None)
            .expect("pool");
        assert!(
            pool["analysis_excluded"]
                .as_array()
                .is_some_and(|e| e.iter().any(|n| n == "firefox")),
            "{pool}"
        );
        let (_, plan) = self.charlie.json(&["plan"]).expect("plan");
        let names: Vec<&str> = plan["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(|s| s["package"].as_str())
            .collect();
        assert_eq!(names, ["htop", "vim"], "{plan}");
        assert_status(&self.charlie, "diverged");
    }

    /// Step 7: An admin asks for a sync of charlie; its daemon runs it (the pool
    /// allows auto-sync) and the progress shows through the API.
    fn step7_admin_requests_a_sync(&self) {
        self.admin
            .call(
                "PATCH",
                &format!("/api/pools/{}", self.pool),
                Some(json!({ "auto_sync": true })),
            )
            .expect("auto-sync on");
        let watch = PushSession::connect(&self.server.url(), self.admin.token()).expect("push");
        let id = self.endpoint("charlie")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let op = self
            .admin
            .call("POST", &format!("/api/endpoints/{id}/sync"), None)
            .expect("request a sync");
        assert_eq!(op["status"], "queued", "{op}");
        let mut seen = Vec::new();
        let last = watch
            .wait_for(Duration::from_secs(60), |m| {
                if m["type"] != "operation_progress" || m["operation"]["id"] != op["id"] {
                    return false;
                }
                seen.push(m["operation"]["status"].as_str().unwrap_or("").to_owned());
                !matches!(
                    m["operation"]["status"].as_str(),
                    Some("queued" | "running")
                )
            })
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.charlie.log_tail()));
        assert_eq!(last["operation"]["status"], "succeeded", "{last}");
        assert!(seen.iter().any(|s| s == "running"), "{seen:?}");
        let done = self
            .admin
            .call(
                "GET",
                &format!("/api/operations/{}", op["id"].as_str().expect("id")),
                None,
            )
            .expect("operation");
        assert_eq!(
            (&done["status"], &done["progress"]),
            (&json!("succeeded"), &json!(100))
        );
        let mut want = map(&ALPHA);
        want.remove("firefox");
        assert_eq!(self.charlie.packages().expect("-Q"), want);
        assert_status(&self.charlie, "in_sync");
        self.server_status("charlie", "in_sync");
        let (_, local) = self.charlie.json(&["history"]).expect("history");
        assert_eq!(
            (&local[0]["kind"], &local[0]["outcome"]),
            (&json!("sync"), &json!("succeeded")),
            "{local}"
        );
    }

    /// Step 8: alpha and charlie set the target at the same moment: both land
    /// in the history in order (or one is refused with a clear error), and
    /// the last one is in force.
    fn step8_concurrent_set_latest(&self) {
        let before = self.targets().len();
        let (a, c) = std::thread::scope(|s| {
            let a = s.spawn(|| Story::set_latest(&self.alpha, "from alpha"));
            let c = s.spawn(|| Story::set_latest(&self.charlie, "from charlie"));
            (a.join().expect("alpha"), c.join().expect("charlie"))
        });
        let mut winners = Vec::new();
        for (name, (code, out)) in [("alpha", a), ("charlie", c)] {
            if code == Some(0) {
                winners.push(name);
            } else {
                assert_eq!(code, Some(1), "{name}: {out}");
                assert!(
                    out["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("target")),
                    "{name}: {out}"
                );
            }
        }
        assert!(!winners.is_empty(), "neither set-latest succeeded");
        let history = self.targets();
        assert_eq!(history.len(), before + winners.len(), "{history:?}");
        let mut from: Vec<&str> = history[..winners.len()]
            .iter()
            .filter_map(|t| t["from_endpoint_name"].as_str())
            .collect();
        from.sort_unstable();
        assert_eq!(from, winners, "{history:?}");
        let seqs: Vec<i64> = history.iter().filter_map(|t| t["seq"].as_i64()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "in order: {seqs:?}");
        let pool = self
            .admin
            .call("GET", &format!("/api/pools/{}", self.pool), None)
            .expect("pool");
        assert_eq!(pool["current_target_id"], history[0]["id"], "{pool}");
        let newest = history[0]["from_endpoint_name"].as_str();
        let (winner, other) = match newest {
            Some("alpha") => (&self.alpha, &self.charlie),
            Some("charlie") => (&self.charlie, &self.alpha),
            other => panic!("the newest target comes from {other:?}"),
        };
        self.follows(winner, "in_sync");
        if winners.len() == 1 {
            // The refused one keeps the reason where its user sees it.
            let s = other.wait_status("error", FOLLOW).expect("error");
            assert!(
                s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("target")),
                "{s}"
            );
        } else {
            // Both landed: the older one's status follows the newer target,
            // on the server and in its daemon alike.
            let status = self.endpoint(&other.name)["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert_ne!(
                status, "in_sync",
                "{} differs from the new target",
                other.name
            );
            self.follows(other, &status);
        }
    }
}

fn story(backend: &str) {
    let Some(mut s) = start(backend) else {
        return;
    };
    s.step1_set_latest();
    let (before, before_deps) = s.step2_sync();
    s.step3_and_6_by_hand_and_offline();
    s.step4_revert_and_rollback(&before, &before_deps);
    s.step5_repository_analysis();
    s.step7_admin_requests_a_sync();
    s.step8_concurrent_set_latest();
}

#[test]
fn office_story_on_sqlite() {
    story("sqlite");
}

#[test]
fn office_story_on_postgresql() {
    story("postgresql");
}
