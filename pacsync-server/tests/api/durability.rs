//! Durability: kill -9 the server process while machines report, start
//! it again on the same database: every report that got a 2xx is there.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::harness::{Backend, JWT_SECRET, PASSWORD, state};

crate::on_both_backends!(reports_acknowledged_before_a_crash_survive);

/// Machines reporting at once, and acknowledged reports before the kill.
const MACHINES: usize = 16;
const KILL_AFTER_ACKS: usize = 300;

struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data: &std::path::Path, pg: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacsync-server"));
    cmd.env_clear()
        .env("PACSYNC_DATA_DIR", data)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("API_RATE_LIMIT", "0")
        .env("HTTP_PORT", "0")
        .env("LOG_LEVEL", "warn");
    if let Some(url) = pg {
        cmd.env("DATABASE_TYPE", "postgresql")
            .env("DATABASE_URL", url);
    }
    cmd
}

/// Starts the server and waits for the line that says where it listens.
fn spawn(data: &std::path::Path, pg: Option<&str>) -> Process {
    let mut child = command(data, pg)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pacsync-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Process { child, base }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<String>,
    body: Value,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let mut req = client.request(method, url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let st = resp.status();
    let v = resp.json().await.unwrap_or(Value::Null);
    Ok((st, v))
}

async fn reports_acknowledged_before_a_crash_survive(backend: Backend) {
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match tokio::task::spawn_blocking(crate::pg::start)
            .await
            .expect("pg")
        {
            Some(pg) => Some(pg),
            None => return,
        },
    };
    let url = pg.as_ref().map(|p| p.url.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = command(dir.path(), url.as_deref())
        .args(["admin", "create-user", "admin"])
        .env("PACSYNC_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("create user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = spawn(dir.path(), url.as_deref());
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let post = |path: &str, token: Option<String>, body: Value| {
        call(
            &client,
            reqwest::Method::POST,
            format!("{base}{path}"),
            token,
            body,
        )
    };
    let (_, login) = post(
        "/api/auth/login",
        None,
        json!({ "username": "admin", "password": PASSWORD }),
    )
    .await
    .expect("login");
    let admin = login["access_token"].as_str().expect("token").to_owned();
    let (_, pool) = post(
        "/api/pools",
        Some(admin.clone()),
        json!({ "name": "fleet" }),
    )
    .await
    .expect("pool");
    let (_, enroll) = post(
        "/api/enrollment-tokens",
        Some(admin.clone()),
        json!({ "pool": pool["id"] }),
    )
    .await
    .expect("enrollment");
    let mut machines = Vec::new();
    for i in 0..MACHINES {
        let (st, v) = post(
            "/api/endpoints/register",
            None,
            json!({ "enrollment_token": enroll["token"], "name": format!("m{i}") }),
        )
        .await
        .expect("register");
        assert_eq!(st, StatusCode::CREATED, "{v}");
        machines.push((
            v["endpoint"]["id"].as_str().expect("id").to_owned(),
            v["access_token"].as_str().expect("token").to_owned(),
        ));
    }

    // Each machine reports new states until the server dies, noting every
    // one that was acknowledged.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (m, (id, token)) in machines.iter().enumerate() {
        let (id, token, base) = (id.clone(), token.clone(), base.clone());
        let (acked, count, client) = (acked.clone(), count.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let s = state(&[("bash", "5.2-1"), ("app", &format!("{m}.{n}-1"))]);
                let hash = s.content_hash().to_string();
                let url = format!("{base}/api/endpoints/{id}/state");
                let Ok((st, _)) = call(
                    &client,
                    reqwest::Method::PUT,
                    url.clone(),
                    Some(token.clone()),
                    json!({ "hash": hash }),
                )
                .await
                else {
                    return;
                };
                let st = if st == StatusCode::CONFLICT {
                    match call(
                        &client,
                        reqwest::Method::PUT,
                        url,
                        Some(token.clone()),
                        json!({ "hash": hash, "packages": s }),
                    )
                    .await
                    {
                        Ok((st, _)) => st,
                        Err(_) => return,
                    }
                } else {
                    st
                };
                assert!(st.is_success(), "report answered {st}");
                acked.lock().await.push((id.clone(), hash));
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    while count.load(Ordering::SeqCst) < KILL_AFTER_ACKS {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(server); // SIGKILL, reports still in flight
    for t in tasks {
        t.await.expect("reporter");
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= KILL_AFTER_ACKS);

    let server = spawn(dir.path(), url.as_deref());
    let base = server.base.clone();
    let (_, login) = call(
        &client,
        reqwest::Method::POST,
        format!("{base}/api/auth/login"),
        None,
        json!({ "username": "admin", "password": PASSWORD }),
    )
    .await
    .expect("login after restart");
    let admin = login["access_token"].as_str().expect("token").to_owned();
    for (id, _) in &machines {
        let resp = client
            .get(format!("{base}/api/endpoints/{id}/states?per_page=500"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("history");
        let v: Value = resp.json().await.expect("json");
        let stored: Vec<&str> = v["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["hash"].as_str())
            .collect();
        for (m, hash) in acked.iter().filter(|(m, _)| m == id) {
            assert!(
                stored.contains(&hash.as_str()),
                "{m}: acknowledged {hash} lost"
            );
        }
    }
}
