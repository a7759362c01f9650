//! Training speed of a preset in headless Chromium, as the page reports it (steps/s element).
//!
//! `browser-bench <preset> <gpu|cpu> <steps>`: serves `$OBJLAB_DIST`, starts a run, waits for
//! `steps` steps after the first (which pays for shader compilation), and prints one JSON line.
//! Run through `cargo xtask bench --browser`.

use std::time::{Duration, Instant};

use objlab_e2e::{Browser, StaticServer, dist_dir};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map(String::as_str).unwrap_or("baby-gpt");
    let device = args.get(1).map(String::as_str).unwrap_or("cpu");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(device == "gpu");
    let load = Instant::now();
    browser.open(&format!("http://127.0.0.1:{}/?preset={preset}&device={device}&steps=100000", server.port));
    browser.wait_for("the page", Duration::from_secs(120), |b| b.text("start").map(|_| ()));
    let page_load_s = load.elapsed().as_secs_f64();
    let start = Instant::now();
    browser.click("start");
    browser.wait_for("the first step", Duration::from_secs(1800), |b| (b.step() >= 1).then_some(()));
    let first_step_s = start.elapsed().as_secs_f64();
    let first = browser.step();
    let timed = Instant::now();
    browser.wait_for("the timed steps", Duration::from_secs(3600), |b| (b.step() >= first + steps).then_some(()));
    let done = browser.step();
    let steps_per_s = (done - first) as f64 / timed.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "preset": preset,
            "device": browser.text("device"),
            "steps_per_s": steps_per_s,
            "page_steps_per_s": browser.text("steps-per-s"),
            "first_step_s": first_step_s,
            "page_load_s": page_load_s,
        })
    );
}
