//! Training speed of a preset in headless Chromium, as the page reports it.
//!
//! `browser-bench <preset> <gpu|cpu> <steps> [runs]`: serves `$OBJLAB_DIST`, adds `runs` runs
//! side by side (the first, then duplicates with the next seeds), waits for every run's first
//! step (which pays for shader compilation), then for `steps` more steps in all, and prints one
//! JSON line: the aggregate steps/s measured from the runs' step counters, the page's own
//! throughput figure, the page's frames/s and long tasks meanwhile, and the snapshot cost the
//! page reports (snapshots every 25 steps, so the timed window includes them). Run through
//! `cargo xtask bench --browser`.
//!
//! `browser-bench <preset> <gpu|cpu> button [presses]` presses the page's "benchmark" button
//! instead, `presses` times (3 unless told), and prints each report's JSON line: its text, its
//! steps/s, workers and per-part profile, and the loss chart's redraw time that the page
//! measures after each report (6 runs × 10,000 points). On the CPU every press waits for the helper
//! workers to load, so each uses one worker per core (up to four); `'<preset>&workers=1'`
//! times one worker.

use std::time::{Duration, Instant};

use objlab_e2e::{Browser, StaticServer, dist_dir};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map(String::as_str).unwrap_or("baby-gpt");
    let device = args.get(1).map(String::as_str).unwrap_or("cpu");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(device == "gpu");
    if args.get(2).map(String::as_str) == Some("button") {
        let presses: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
        return press_benchmark(&browser, server.port, preset, device, presses);
    }
    let load = Instant::now();
    // Snapshots every 25 steps: the timed window includes their cost, as a user would see it.
    // The preset argument comes last, so that options written after its name (`tiny&snapshot_every=1000`)
    // override these (the page applies the preset first, then the other options in order).
    browser.open(&format!("http://127.0.0.1:{}/?device={device}&steps=100000&snapshot_every=25&preset={preset}", server.port));
    browser.wait_for("the page", Duration::from_secs(120), |b| b.text("add-run").map(|_| ()));
    let page_load_s = load.elapsed().as_secs_f64();
    let start = Instant::now();
    browser.click("add-run");
    for _ in 1..runs {
        browser.eval("document.querySelector('[data-testid=\"run-duplicate\"]').click(); return true");
    }
    browser.wait_for("every run's first step", Duration::from_secs(1800), |b| {
        let s = b.run_steps();
        (s.len() == runs && s.iter().all(|k| *k >= 1)).then_some(())
    });
    let first_step_s = start.elapsed().as_secs_f64();
    let first: usize = browser.run_steps().iter().sum();
    // The page's frames and its main thread's long tasks (over 50 ms) in the timed window: does
    // it stay smooth while the runs train and their curves grow? (`PerformanceObserver`'s
    // "longtask" entries; a frame is a `requestAnimationFrame` callback.)
    browser.eval(
        "window.__frames = 0; (function count() { window.__frames++; requestAnimationFrame(count); })();
         window.__long = []; new PerformanceObserver(l => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({entryTypes: ['longtask']});
         return true",
    );
    let timed = Instant::now();
    browser.wait_for("the timed steps", Duration::from_secs(3600), |b| (b.run_steps().iter().sum::<usize>() >= first + steps).then_some(()));
    let done: usize = browser.run_steps().iter().sum();
    let seconds = timed.elapsed().as_secs_f64();
    let steps_per_s = (done - first) as f64 / seconds;
    let frames = browser.eval("return window.__frames").as_f64().unwrap_or(0.0);
    let long_tasks: Vec<f64> = browser.eval("return window.__long").as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default();
    let snapshot_ms = browser.eval(
        "return [...document.querySelectorAll('[data-testid=\"projection\"]')].map(e => parseFloat(e.dataset.millis)).filter(x => x > 0)",
    );
    let snapshot_stall_ms = browser.eval(
        "return [...document.querySelectorAll('[data-testid=\"projection\"]')].map(e => parseFloat(e.dataset.stall)).filter(x => x > 0)",
    );
    println!(
        "{}",
        serde_json::json!({
            "preset": preset,
            "runs": runs,
            "device": browser.text("device"),
            "steps_per_s": steps_per_s,
            "page_throughput": browser.text("throughput"),
            "points_per_run": browser.attribute("loss-chart", "data-points"),
            "page_frames_per_s": frames / seconds,
            "page_long_tasks": long_tasks.len(),
            "page_longest_task_ms": long_tasks.iter().copied().fold(0.0, f64::max),
            "first_step_s": first_step_s,
            "page_load_s": page_load_s,
            "page_first_step": browser.text("first-step"),
            "snapshot_ms": snapshot_ms,
            "snapshot_longest_pause_ms": snapshot_stall_ms,
            "snapshot_step": browser.attribute("projection", "data-step"),
            "snapshot_analyser": browser.attribute("projection", "data-analyser"),
        })
    );
}

/// Presses "benchmark" `presses` times and prints each report.
fn press_benchmark(browser: &Browser, port: u16, preset: &str, device: &str, presses: usize) {
    browser.open(&format!("http://127.0.0.1:{port}/?preset={preset}&device={device}"));
    browser.wait_for("the page", Duration::from_secs(120), |b| b.text("benchmark").map(|_| ()));
    for press in 1..=presses {
        let before = browser.text("benchmark-result");
        browser.click("benchmark");
        let text = browser.wait_for("the benchmark's report", Duration::from_secs(1800), |b| {
            b.text("benchmark-result").filter(|t| Some(t) != before.as_ref() && b.text("benchmark-status").unwrap_or_default().is_empty())
        });
        // as shown (innerText): the report's line break stays between the figures and the profile
        let shown = browser.eval("return document.querySelector('[data-testid=\"benchmark-result\"]').innerText;");
        let text = shown.as_str().map_or(text, str::to_string);
        let attr = |name: &str| browser.attribute("benchmark-result", name);
        let profile: serde_json::Value = attr("data-profile").and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default();
        // then the loss chart's redraw, timed by the page after the report
        let redraw = browser.wait_for("the chart's redraw timing", Duration::from_secs(120), |b| b.text("chart-redraw"));
        let chart_ms = |name: &str| browser.attribute("chart-redraw", name).and_then(|v| v.parse::<f64>().ok());
        println!(
            "{}",
            serde_json::json!({
                "press": press,
                "steps_per_s": attr("data-steps-per-s").and_then(|v| v.parse::<f64>().ok()),
                "workers": attr("data-workers"),
                "profile": profile,
                "chart_redraw_median_ms": chart_ms("data-median-ms"),
                "chart_redraw_worst_ms": chart_ms("data-worst-ms"),
                "chart_redraw": redraw,
                "text": text,
            })
        );
    }
}
