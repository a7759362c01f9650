//! Helpers for the end-to-end tests: a static server for the built page (`dist/`), and a
//! minimal WebDriver client that drives Debian's Chromium through chromedriver.
//!
//! The page is built by `cargo xtask test` (trunk) before these tests run; it passes the
//! folder in `OBJLAB_DIST`. Browser paths come from `CHROMIUM` and `CHROMEDRIVER`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Serves `root` on 127.0.0.1 at a free port, on a background thread, for the test's lifetime.
pub struct StaticServer {
    pub port: u16,
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        "wasm" => "application/wasm",
        "css" => "text/css",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve_one(root: &Path, mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let rel = path.trim_start_matches('/');
    let file = if rel.is_empty() { root.join("index.html") } else { root.join(rel) };
    let safe = !rel.split('/').any(|p| p == "..");
    let (status, body, ctype) = match std::fs::read(&file) {
        Ok(body) if safe => ("200 OK", body, content_type(&file)),
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(&body);
}

impl StaticServer {
    pub fn start(root: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || serve_one(&root, stream));
            }
        });
        Self { port }
    }
}

/// The built page, as `cargo xtask test` left it.
pub fn dist_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("OBJLAB_DIST").expect(
        "OBJLAB_DIST is not set: run the browser tests with `cargo xtask test`, which builds the page first",
    ));
    assert!(dir.join("index.html").exists(), "{} has no index.html: build the page first", dir.display());
    dir
}

/// A headless Chromium session driven over WebDriver.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium; `webgpu` adds
    /// `--enable-unsafe-webgpu` (SwiftShader's WebGPU), without it there is no adapter.
    pub fn start(webgpu: bool) -> Self {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e} (cargo xtask test installs chromium-driver)"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = std::env::temp_dir().join(format!("objlab-chromium-{}-{port}", std::process::id()));
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1000,900".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if webgpu {
            args.push("--enable-unsafe-webgpu".into());
        }
        // Extra flags for profiling, e.g. `OBJLAB_CHROMIUM_ARGS=--js-flags=--perf-basic-prof`
        // (V8 then writes /tmp/perf-PID.map, which `perf report` reads).
        if let Ok(extra) = std::env::var("OBJLAB_CHROMIUM_ARGS") {
            args.extend(extra.split_whitespace().map(String::from));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let response: Value = ureq::post(&format!("{base}/session"))
            .send_json(caps)
            .unwrap_or_else(|e| panic!("chromedriver refused the session: {e}"))
            .into_json()
            .unwrap();
        let session = response["value"]["sessionId"].as_str().expect("a session id").to_string();
        // SwiftShader compiles WebGPU pipelines on the CPU; on two cores that can starve the
        // page's main thread for tens of seconds, so scripts get longer than the default 30 s.
        ureq::post(&format!("{base}/session/{session}/timeouts"))
            .send_json(json!({"script": 240_000}))
            .expect("set the script timeout");
        Self { driver, base, session, _profile: TempDir(profile) }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/session/{}/{tail}", self.base, self.session)
    }

    /// Runs `source` in every page before the page's own scripts (Chrome DevTools'
    /// `Page.addScriptToEvaluateOnNewDocument`, through chromedriver): how a test makes this
    /// Chromium look like another browser, e.g. one without WebAssembly relaxed SIMD.
    pub fn before_each_page(&self, source: &str) {
        ureq::post(&self.url("goog/cdp/execute"))
            .send_json(json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": source}}))
            .expect("add a script to every new page");
    }

    /// Makes the pages this browser opens lay out as on a screen `width` × `height` CSS pixels
    /// with `ratio` device pixels per CSS pixel (Chrome DevTools' device emulation): a phone is
    /// ~400 wide at 2 or 3, most laptops are at 2.
    pub fn emulate_screen(&self, width: u32, height: u32, ratio: f64) {
        ureq::post(&self.url("goog/cdp/execute"))
            .send_json(json!({"cmd": "Emulation.setDeviceMetricsOverride",
                "params": {"width": width, "height": height, "deviceScaleFactor": ratio, "mobile": false}}))
            .expect("emulate a screen");
    }

    pub fn open(&self, url: &str) {
        ureq::post(&self.url("url")).send_json(json!({"url": url})).expect("navigate");
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub fn eval(&self, script: &str) -> Value {
        let response: Value = ureq::post(&self.url("execute/sync"))
            .send_json(json!({"script": script, "args": []}))
            .unwrap_or_else(|e| {
                let body = match e {
                    ureq::Error::Status(_, r) => r.into_string().unwrap_or_default(),
                    other => other.to_string(),
                };
                panic!("script failed: {body}\n{script}")
            })
            .into_json()
            .unwrap();
        response["value"].clone()
    }

    /// Text of the element with `data-testid`, or None when it is not on the page.
    pub fn text(&self, testid: &str) -> Option<String> {
        let v = self.eval(&format!(
            "const e = document.querySelector('[data-testid=\"{testid}\"]'); return e ? e.textContent : null;"
        ));
        v.as_str().map(str::to_string)
    }

    pub fn attribute(&self, testid: &str, name: &str) -> Option<String> {
        let v = self.eval(&format!(
            "const e = document.querySelector('[data-testid=\"{testid}\"]'); return e ? e.getAttribute('{name}') : null;"
        ));
        v.as_str().map(str::to_string)
    }

    pub fn click(&self, testid: &str) {
        let ok = self.eval(&format!(
            "const e = document.querySelector('[data-testid=\"{testid}\"]'); if (!e || e.disabled) return false; e.click(); return true;"
        ));
        assert_eq!(ok, Value::Bool(true), "{testid} is missing or disabled");
    }

    /// Sets the value of an input or select and fires `change`, as a user's edit would.
    pub fn set_value(&self, testid: &str, value: &str) {
        let ok = self.eval(&format!(
            "const e = document.querySelector('[data-testid=\"{testid}\"]'); if (!e) return false; \
             e.value = {value:?}; e.dispatchEvent(new Event('input', {{bubbles: true}})); \
             e.dispatchEvent(new Event('change', {{bubbles: true}})); return true;"
        ));
        assert_eq!(ok, Value::Bool(true), "{testid} is missing");
    }

    /// Chooses the file at `path` in the file input with `data-testid` (WebDriver's send keys
    /// to a file input, as a user's pick in the file dialog).
    pub fn choose_file(&self, testid: &str, path: &std::path::Path) {
        let found: Value = ureq::post(&self.url("element"))
            .send_json(json!({"using": "css selector", "value": format!("[data-testid=\"{testid}\"]")}))
            .unwrap_or_else(|e| panic!("no file input {testid}: {e}"))
            .into_json()
            .unwrap();
        let element = found["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str).expect("an element id").to_string();
        ureq::post(&self.url(&format!("element/{element}/value")))
            .send_json(json!({"text": path.to_str().expect("a UTF-8 path")}))
            .unwrap_or_else(|e| panic!("choosing {path:?} in {testid}: {e}"));
    }

    /// Polls `check` until it returns Some, or panics after `timeout` with `what` and the page state.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; step={:?} state={:?} device={:?} error={:?}",
                    self.text("step"),
                    self.text("state"),
                    self.text("device"),
                    self.text("error")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The number in the `step` element.
    pub fn step(&self) -> usize {
        self.text("step").and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    /// Steps of every run, from the run list ("k / n").
    pub fn run_steps(&self) -> Vec<usize> {
        let v = self.eval("return [...document.querySelectorAll('[data-testid=\"run-step\"]')].map(e => e.textContent)");
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()?.split('/').next()?.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
