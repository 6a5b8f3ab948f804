//! A small WebDriver client over reqwest, enough to drive headless
//! Chromium through chromedriver: sessions, navigation, elements, script,
//! pointer actions and screenshots. Waiting is always polling against a
//! deadline, never a fixed sleep.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key W3C WebDriver gives element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page gives up after.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct Element(pub String);

impl Element {
    fn reference(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session on it. Without
    /// chromedriver and Chromium: `None` after printing `SKIPPED: …`, or a
    /// failure under `CI` (which must run everything).
    pub async fn start() -> Option<Browser> {
        let found = on_path("chromedriver") && std::path::Path::new(&chromium()).exists();
        if !found {
            let what = "chromedriver and chromium (apt-get install chromium chromium-driver)";
            assert!(std::env::var_os("CI").is_none(), "CI lacks {what}");
            eprintln!("SKIPPED: the browser tests need {what}");
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian: apt-get install chromium chromium-driver)");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            driver,
            _profile: profile,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = b
                .http
                .get(format!("{}/status", b.base))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(v) = ready
                && v.await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            "--force-prefers-reduced-motion".to_owned(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium(), "args": args },
        }}});
        let v = b.raw("POST", "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().expect("session id").to_owned();
        b.base = format!("{}/session/{id}", b.base);
        Some(b)
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().await.expect("webdriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("webdriver answers JSON");
        assert!(
            status.is_success(),
            "webdriver {method} {path}: {status} {v}"
        );
        v.get("value").cloned().unwrap_or(Value::Null)
    }

    async fn try_raw(&self, path: &str, body: Value) -> Option<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json::<Value>().await.ok().map(|v| v["value"].clone())
    }

    pub async fn goto(&self, url: &str) {
        self.raw("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The first element matching `css` once there is one.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.find_now(css).await {
                return e;
            }
            assert!(Instant::now() < deadline, "no element {css} appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn find_now(&self, css: &str) -> Option<Element> {
        self.try_raw("/element", json!({ "using": "css selector", "value": css }))
            .await
            .and_then(|v| v[ELEMENT].as_str().map(|s| Element(s.to_owned())))
    }

    pub async fn count(&self, css: &str) -> usize {
        self.raw(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Clicks the element matching `css`; a page that redrew it between
    /// finding and clicking (live updates do) is asked again.
    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "clear", json!({})).await;
        if !text.is_empty() {
            self.on_element(css, "value", json!({ "text": text })).await;
        }
    }

    async fn on_element(&self, css: &str, verb: &str, body: Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let e = self.find(css).await;
            let resp = self
                .http
                .post(format!("{}/element/{}/{verb}", self.base, e.0))
                .json(&body)
                .send()
                .await
                .expect("webdriver request");
            let status = resp.status();
            let v: Value = resp.json().await.expect("webdriver answers JSON");
            if status.is_success() {
                return;
            }
            let stale = v["value"]["error"] == "stale element reference";
            assert!(
                stale && Instant::now() < deadline,
                "{verb} on {css}: {status} {v}"
            );
        }
    }

    /// Runs `body` as a function in the page, with `args`.
    pub async fn script(&self, body: &str, args: Value) -> Value {
        self.raw(
            "POST",
            "/execute/sync",
            Some(json!({ "script": body, "args": args })),
        )
        .await
    }

    /// Runs `body` in the page; it calls `arguments[arguments.length-1]`
    /// with its answer.
    pub async fn script_async(&self, body: &str, args: Value) -> Value {
        self.raw(
            "POST",
            "/execute/async",
            Some(json!({ "script": body, "args": args })),
        )
        .await
    }

    /// Waits until `js` (an expression) is truthy in the page; returns it.
    pub async fn wait_for(&self, what: &str, js: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let body = format!("return ({js});");
        loop {
            let v = self.script(&body, json!([])).await;
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "waited in vain for {what}: {js}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses the left button on `from`, moves in steps onto `to`, and
    /// releases it there, as a person dragging with a mouse.
    pub async fn drag(&self, from: &Element, to: &Element) {
        let origin = |e: &Element| e.reference();
        let actions = json!({ "actions": [{
            "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
            "actions": [
                { "type": "pointerMove", "origin": origin(from), "x": 0, "y": 0, "duration": 0 },
                { "type": "pointerDown", "button": 0 },
                { "type": "pointerMove", "origin": "pointer", "x": 15, "y": 15, "duration": 100 },
                { "type": "pointerMove", "origin": origin(to), "x": 0, "y": 0, "duration": 300 },
                { "type": "pointerMove", "origin": origin(to), "x": 4, "y": 4, "duration": 50 },
                { "type": "pointerUp", "button": 0 },
            ],
        }]});
        self.raw("POST", "/actions", Some(actions)).await;
        self.raw("DELETE", "/actions", None).await;
    }

    /// Answers the open `window.prompt` with `text`, once it is open.
    pub async fn accept_prompt(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self
            .try_raw("/alert/text", json!({ "text": text }))
            .await
            .is_none()
        {
            assert!(Instant::now() < deadline, "no prompt opened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.raw("POST", "/alert/accept", None).await;
    }

    /// Accepts the open `window.confirm` (or alert), once it is open.
    pub async fn accept_dialog(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let open = self
                .http
                .get(format!("{}/alert/text", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if open {
                break;
            }
            assert!(Instant::now() < deadline, "no dialog opened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.raw("POST", "/alert/accept", None).await;
    }

    /// The browser's cookie `name` for the current page, as WebDriver
    /// gives it (HttpOnly ones included).
    pub async fn cookie(&self, name: &str) -> Value {
        self.raw("GET", &format!("/cookie/{name}"), None).await
    }

    /// Sets a cookie (a WebDriver cookie object) for the current page.
    pub async fn add_cookie(&self, cookie: Value) {
        self.raw("POST", "/cookie", Some(json!({ "cookie": cookie })))
            .await;
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.raw(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    /// The page as PNG, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let v = self.raw("GET", "/screenshot", None).await;
        let png = base64_decode(v.as_str().expect("base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(path, png).expect("screenshot written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium with the session; chromedriver then goes too.
        let url = self.base.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let _ = reqwest::Client::new().delete(url).send().await;
            });
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

fn chromium() -> String {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map_or_else(|| "chromium".to_owned(), |p| (*p).to_owned())
}

/// Standard base64 (screenshots); the one place the tests need it.
fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or(0));
        }
    }
    out
}

#[test]
fn base64_decodes_padded_and_unpadded() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk"), b"hi");
    assert_eq!(base64_decode("AAEC/w=="), [0, 1, 2, 255]);
}
