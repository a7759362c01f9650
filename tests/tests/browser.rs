//! The lab in a real headless Chromium: WebGPU (SwiftShader) training, the CPU fallback
//! without WebGPU, pause/resume, and a malformed address. SwiftShader is slow, so these use
//! the `tiny` preset and a handful of steps, and never assert on time.

use std::time::Duration;

use objlab_e2e::{Browser, StaticServer, dist_dir};

fn parse_loss(s: &str) -> Option<f32> {
    s.trim().parse().ok()
}

/// Opens the page with `query`, waits for the worker, presses start.
fn open_and_start(browser: &Browser, server: &StaticServer, query: &str) {
    browser.open(&format!("http://127.0.0.1:{}/{query}", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("start").map(|_| ()));
    browser.click("start");
}

/// Waits for `steps` steps and checks that the training loss fell from its first value.
fn wait_for_steps_and_falling_loss(browser: &Browser, steps: usize, timeout: Duration) {
    browser.wait_for(&format!("{steps} training steps"), timeout, |b| (b.step() >= steps).then_some(()));
    let first = browser.attribute("train-loss", "data-first").as_deref().and_then(parse_loss).expect("a first loss");
    let last = browser.text("train-loss").as_deref().and_then(parse_loss).expect("a current loss");
    assert!(first.is_finite() && last.is_finite());
    assert!(last < first, "training loss should fall: first {first}, now {last}");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown");
}

/// WebGPU in the worker: the adapter is found and named, burn's wgpu runtime starts, and the
/// tiny model trains on SwiftShader (≥ 12 steps, falling loss).
#[test]
fn trains_on_webgpu() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(true);
    open_and_start(&browser, &server, "?preset=tiny&device=gpu&steps=400");
    // SwiftShader compiles each pipeline the first time a step meets it: ~11 s for the first step
    // on two cores (over a minute while the tab autotuned, docs/performance.md "In the tab"), and
    // the page says it is waiting for that step, not training at step 0.
    browser.wait_for("the first step's state", Duration::from_secs(120), |b| {
        b.text("state").filter(|s| s.starts_with("starting")).map(|_| ())
    });
    assert_eq!(browser.text("run-state").as_deref(), Some("starting"));
    wait_for_steps_and_falling_loss(&browser, 12, Duration::from_secs(600));
    assert_eq!(browser.text("state").as_deref(), Some("training"));
    let device = browser.text("device").unwrap();
    assert!(device.starts_with("WebGPU"), "device element names WebGPU: {device:?}");
    // The representation views ran on the GPU too: the WGSL PCA / CKA kernels in the worker.
    let step = browser.wait_for("a snapshot after training steps", Duration::from_secs(300), |b| {
        b.attribute("projection", "data-step")?.parse::<usize>().ok().filter(|s| *s >= 10)
    });
    assert_eq!(step % 10, 0, "snapshots every 10 steps on tiny");
    assert_eq!(browser.attribute("projection", "data-analyser").as_deref(), Some("GPU (WGSL kernels)"));
    let cka = browser.eval("return [...document.querySelectorAll('[data-testid=\"cka-cell\"]')].map(e => parseFloat(e.dataset.value))");
    assert_eq!(cka.as_array().map(Vec::len), Some(1), "{cka}");
    assert!((cka[0].as_f64().unwrap() - 1.0).abs() < 1e-3, "CKA(X, X) = 1 from the GPU kernels: {cka}");
    assert_eq!(browser.text("error").unwrap_or_default(), "");

    // "Ask the model" while the run trains on the GPU: the question gets the trainer between
    // two steps (on a GPU a step awaits the device most of the time, and until the driving
    // loop left a gap for it, such a read waited 30 s and gave up: "run 1 stayed busy").
    browser.set_value("ask-text", "To be");
    browser.click("ask");
    let continued = browser.wait_for("the continuation", Duration::from_secs(120), |b| {
        if let Some(e) = b.text("ask-error") {
            panic!("the question failed: {e}");
        }
        b.text("ask-continuation")
    });
    assert_eq!(continued.chars().count(), 5 + 120, "{continued:?}");
    assert_eq!(browser.text("state").as_deref(), Some("training"), "asked while it trained");

    // The benchmark button counts the kernels a WebGPU step launches, in the browser.
    let report = run_benchmark(&browser, Duration::from_secs(400));
    assert!(report.dispatches > 10.0, "a transformer step on WebGPU is many dispatches: {report:?}");
    // The parts of a GPU step would time only their launches: no profile.
    assert!(report.profile.is_none(), "{report:?}");
    assert!(report.text.contains("GPU dispatches per step"), "{report:?}");
    // and the host's time to launch them, the figure that carries over to a real GPU
    let host_ms = report.host_ms.expect("a GPU benchmark reports its host work per step");
    assert!(host_ms > 0.0 && host_ms < 1000.0 / report.steps_per_s, "{report:?}");
    assert!(report.text.contains("ms of host work to launch them"), "{report:?}");
    // After its warm-up the benchmark's run replays each whole step (forward, backward, AdamW)
    // from a captured graph (engine/src/train/captured_step.rs): most of the launches, in the browser.
    assert!(report.replayed > 10.0 && report.replayed < report.dispatches, "{report:?}");
    assert!(report.text.contains("replayed from a captured graph"), "{report:?}");
}

/// The benchmark pressed first thing on a fresh page, on WebGPU: its run's first capture
/// records in a memory pool that no earlier run grew. For position prediction and a prefix LM
/// on the encoder–decoder on SwiftShader that recording found no room and failed: the button
/// reported "reading from the device failed" until the thirty-fifth session, and then the run
/// started over and captured at its second try (`Trainer::start_over`). Since the thirty-sixth
/// session a recording may add a page (our cubecl-server's `recording-adds-pages`), so the
/// first recording captures.
#[test]
fn a_benchmark_pressed_first_on_webgpu_replays_its_captured_step_at_the_first_try() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(true);
    for query in ["objective=position_prediction", "objective=prefix_lm&arch=encoder_decoder"] {
        browser.open(&format!("http://127.0.0.1:{}/?preset=tiny&device=gpu&{query}", server.port));
        browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("benchmark").map(|_| ()));
        let report = run_benchmark(&browser, Duration::from_secs(300));
        assert!(report.replayed > 10.0 && report.replayed < report.dispatches, "{query}: {report:?}");
        assert_eq!(report.recordings, 1.0, "{query}: the first recording failed: {report:?}");
    }
}

#[derive(Debug)]
struct BenchmarkFigures {
    text: String,
    steps_per_s: f64,
    dispatches: f64,
    host_reads: f64,
    /// Where a step's time went (`data-profile`, the CPU backend's only).
    profile: Option<serde_json::Value>,
    /// The host's time to launch a step's kernels (`data-host-ms`, a GPU's only).
    host_ms: Option<f64>,
    /// Of `dispatches`, those replayed from a captured graph (`data-replayed`).
    replayed: f64,
    /// The recordings the captured step took (`data-recordings`; 1 when the first captured).
    recordings: f64,
}

/// The loss chart's pixels in the colour of the first run (`lab::RUN_COLOURS[0]`, #0072b2)
/// inside its plot area, below the legend: how many, and a hash of where they are.
fn chart_pixels(browser: &Browser) -> (u64, u64) {
    let v = browser.eval(
        "const c = document.querySelector('[data-testid=\"loss-chart\"]');
         const d = c.getContext('2d').getImageData(50, 60, 620, 190).data;
         let n = 0, h = 0;
         for (let i = 0; i < d.length; i += 4) {
           if (d[i + 3] > 128 && d[i] < 60 && Math.abs(d[i + 1] - 114) < 45 && Math.abs(d[i + 2] - 178) < 45) { n++; h = (h * 31 + i) % 1000000007; }
         }
         return [n, h];",
    );
    let n = |i: usize| v[i].as_u64().unwrap_or(0);
    (n(0), n(1))
}

/// Presses "benchmark" and waits for its report.
fn run_benchmark(browser: &Browser, timeout: Duration) -> BenchmarkFigures {
    browser.click("benchmark");
    // (a failure ends the wait: it shows in the error element, checked below)
    let text = browser.wait_for("the benchmark's report", timeout, |b| {
        b.text("benchmark-result").or_else(|| b.text("error").filter(|e| e.contains("benchmark failed")))
    });
    assert_eq!(browser.text("error").unwrap_or_default(), "", "the benchmark failed");
    let optional = |name: &str| browser.attribute("benchmark-result", name).and_then(|v| v.parse::<f64>().ok());
    let number = |name: &str| optional(name).expect(name);
    let figures = BenchmarkFigures {
        text,
        steps_per_s: number("data-steps-per-s"),
        dispatches: number("data-dispatches"),
        host_reads: number("data-host-reads"),
        profile: browser.attribute("benchmark-result", "data-profile").and_then(|p| serde_json::from_str(&p).ok()),
        host_ms: optional("data-host-ms"),
        replayed: number("data-replayed"),
        recordings: number("data-recordings"),
    };
    assert!(figures.steps_per_s > 0.0 && figures.steps_per_s.is_finite(), "{figures:?}");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error after the benchmark");
    figures
}

#[test]
fn falls_back_to_the_cpu_without_webgpu_and_pauses() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    // A visitor who reads for a while before pressing Start: the page's first-step figure
    // leaves that wait out (checked below).
    browser.open(&format!("http://127.0.0.1:{}/?preset=tiny&steps=1000", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("start").map(|_| ()));
    const READING: Duration = Duration::from_secs(8);
    std::thread::sleep(READING);
    assert_eq!(browser.text("lr").as_deref(), Some("—"), "no learning rate before a step");
    browser.click("start");
    browser.wait_for("the first step", Duration::from_secs(300), |b| (b.step() >= 1).then_some(()));
    let page_s = browser.eval("return performance.now()").as_f64().unwrap() / 1000.0;
    wait_for_steps_and_falling_loss(&browser, 20, Duration::from_secs(300));
    // The loss chart's canvas shows the run's curve, and redraws as its losses arrive (ten
    // times a second at most, once per animation frame).
    let (drawn, step) = (chart_pixels(&browser), browser.step());
    assert!(drawn.0 > 50, "the run's curve is on the canvas: {drawn:?}");
    if step < 1000 {
        browser.wait_for("the chart redrawn with newer losses", Duration::from_secs(30), |b| (chart_pixels(b).1 != drawn.1).then_some(()));
    }
    let rate = browser.text("lr").unwrap();
    assert!(rate.parse::<f64>().is_ok_and(|r| r > 0.0), "learning rate element: {rate:?}");
    let device = browser.text("device").unwrap();
    assert!(device.starts_with("CPU — WebGPU unavailable"), "device element: {device:?}");
    // Chromium runs relaxed SIMD, so the page started the worker build with FMA.
    assert!(device.contains("relaxed-SIMD FMA"), "device element: {device:?}");
    // With a second core, a helper worker computes half of each step's rows (its own core).
    let cores = browser.eval("return navigator.hardwareConcurrency").as_f64().unwrap_or(1.0);
    if cores >= 2.0 {
        assert!(device.contains("2 workers share each step"), "device element: {device:?}");
        // ... the helper on the training worker's compiled module, not a copy of its own
        assert!(!device.contains("own copy of the module"), "device element: {device:?}");
    }
    // The page reports how long it took from opening to the first training step.
    let first = browser.text("first-step").unwrap();
    let seconds: f64 = first.trim_end_matches(" s").parse().unwrap_or_else(|_| panic!("first-step element: {first:?}"));
    assert!(seconds > 0.0, "{first}");
    // The worker is ready well within the reading time, so at least 5 of its 8 s are left out.
    assert!(seconds < page_s - 5.0, "first step after {seconds} s, {page_s} s after opening the page: the wait for Start counted");

    // Pause holds the step; resume continues; the page stays responsive throughout.
    browser.click("pause");
    browser.wait_for("the paused state", Duration::from_secs(30), |b| (b.text("state")? == "paused").then_some(()));
    let held = browser.step();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(browser.step(), held, "no steps while paused");
    browser.click("pause"); // now labelled "Resume"
    browser.wait_for("training to resume", Duration::from_secs(120), |b| (b.step() > held).then_some(()));

    // The validation loss (every 50 steps on tiny) and a sample (every 100) arrive.
    browser.wait_for("a validation loss and a sample", Duration::from_secs(300), |b| {
        let val = parse_loss(&b.text("val-loss")?)?;
        let sample = b.text("sample")?;
        (val.is_finite() && !sample.is_empty()).then_some(())
    });

    // The charts are canvases: a screen reader hears what they show.
    let heard = browser.attribute("loss-chart", "aria-label").unwrap_or_default();
    assert!(heard.starts_with("Loss curves. causal_lm at step ") && heard.contains(": training "), "{heard}");
    // ... and the keyboard reads the chart at one step, as the pointer does
    browser.eval("const c = document.querySelector('[data-testid=\"loss-chart\"]'); c.focus(); c.dispatchEvent(new KeyboardEvent('keydown', {key: 'End', bubbles: true})); c.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft', bubbles: true})); return true");
    let read = browser.wait_for("the keyboard's readout", Duration::from_secs(10), |b| b.text("loss-readout").filter(|t| t.starts_with("step ≈")));
    assert!(read.contains("causal_lm: train "), "{read}");
    // ... and, relative to the run's start, as a multiple of its first loss beside the loss
    browser.click("relative");
    let read = browser.wait_for("the relative readout", Duration::from_secs(10), |b| b.text("loss-readout").filter(|t| t.contains('×')));
    assert!(read.contains("causal_lm: train ") && read.contains("× its start (step "), "{read}");
    browser.click("relative");
    browser.wait_for("a snapshot", Duration::from_secs(120), |b| b.attribute("projection", "data-step").filter(|s| !s.is_empty()));
    let heard = browser.attribute("probe-chart", "aria-label").unwrap_or_default();
    assert!(heard.starts_with("Linear-probe accuracy. causal_lm ") && heard.contains("(chance 25%)"), "{heard}");

    // The benchmark button: a fresh run timed alone; the CPU backend launches no kernels, and
    // the loop reads the device once per log_every steps (1 on tiny).
    let report = run_benchmark(&browser, Duration::from_secs(300));
    assert_eq!(report.dispatches, 0.0, "{report:?}");
    assert_eq!(report.host_ms, None, "the CPU's step is its arithmetic: no separate host figure: {report:?}");
    assert_eq!(report.replayed, 0.0, "a CPU step launches nothing to replay: {report:?}");
    // tiny reads its losses every step, and a split step reads the weights for the helper.
    let reads = if cores >= 2.0 { 2.0 } else { 1.0 };
    assert!(report.host_reads > 0.0 && report.host_reads <= reads, "reads per step: {report:?}");
    assert!(report.text.contains("first step"), "the report repeats the first-step latency: {report:?}");
    // It says where a step's time went, the helper's part included where there is one.
    let profile = report.profile.clone().expect("a CPU benchmark has a profile");
    let ms = |part: &str| profile[part].as_f64().unwrap_or(-1.0);
    assert!(ms("forward_ms") > 0.0 && ms("backward_ms") > 0.0 && ms("update_ms") >= 0.0, "{profile}");
    assert!(report.text.contains("per step: "), "{report:?}");
    if cores >= 2.0 {
        assert!(report.text.contains("(2 workers)"), "the benchmark splits its steps too: {report:?}");
        assert!(ms("helper_ms") > 0.0 && ms("wait_ms") >= 0.0 && ms("messaging_ms") >= 0.0, "the helper's time: {profile}");
        assert!(report.text.contains("the helper computed its half in"), "{report:?}");
    }
    // Then it times the loss chart's redraw at issue 4's load (6 runs × 10,000 points): a
    // figure, never a timed assertion.
    let redraw = browser.wait_for("the chart's redraw timing", Duration::from_secs(60), |b| b.text("chart-redraw"));
    assert!(redraw.starts_with("loss chart: 6 runs × 10000 points redraw in ") && redraw.contains("(median of 24; slowest "), "{redraw}");
    let chart_ms = |name: &str| browser.attribute("chart-redraw", name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(-1.0);
    assert!(chart_ms("data-median-ms") >= 0.0 && chart_ms("data-worst-ms") >= chart_ms("data-median-ms"), "{redraw}");
    assert_eq!(browser.text("benchmark-status").unwrap_or_default(), "", "nothing left running: {redraw}");

    // Reset clears the run.
    browser.click("reset");
    browser.wait_for("the reset", Duration::from_secs(30), |b| (b.step() == 0 && b.text("state")? == "ready").then_some(()));
}

/// A CPU run whose second worker crashes (fault injection: `helper_fails_at` makes the helper
/// panic on its first job from step 30 on, as a bug would) loses no step: the training worker
/// computes that half itself, the run trains on alone with a falling loss and no error, and
/// the device line says why one worker is left.
#[test]
fn a_crashed_second_worker_costs_no_step() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open_and_start(&browser, &server, "?preset=tiny&steps=5000&helper_fails_at=30");
    if browser.eval("return navigator.hardwareConcurrency").as_f64().unwrap_or(1.0) < 2.0 {
        return; // one core: no second worker to crash
    }
    // the helper starts while the first steps run alone; it crashes on its first job from step 30
    let device = browser.wait_for("the second worker's crash", Duration::from_secs(300), |b| {
        b.text("device").filter(|d| d.contains("1 worker: "))
    });
    // its panic's report ("failed: … fault injection …"), or the `error` event of its trap ("stopped")
    assert!(device.contains("1 worker: the second worker"), "device element: {device:?}");
    eprintln!("the device line after the crash: {device}");
    let at = browser.step();
    wait_for_steps_and_falling_loss(&browser, at.max(30) + 20, Duration::from_secs(300));
    assert_eq!(browser.text("state").as_deref(), Some("training"));

    // With two helpers (`workers=3`), both crash from step 30 on, one after the other (each
    // is stopped alone, while the other still shares the steps); the run goes on alone.
    let three = Browser::start(false);
    open_and_start(&three, &server, "?preset=tiny&steps=5000&helper_fails_at=30&workers=3");
    let device = three.wait_for("both helpers' crashes", Duration::from_secs(300), |b| b.text("device").filter(|d| d.contains("1 worker: ")));
    assert!(device.contains("1 worker: the second worker") && device.contains("the third worker"), "device element: {device:?}");
    eprintln!("the device line after both crashes: {device}");
    let at = three.step();
    // (which also checks that no error is shown)
    wait_for_steps_and_falling_loss(&three, at.max(30) + 20, Duration::from_secs(300));
}

/// A CPU run's curve depends on its experiment and its number of workers, not on when its
/// helper came up or went: with the helper crashing at step 30 (`helper_fails_at`), the run
/// computes that share itself from then on and ends at the undisturbed run's last loss, to
/// the bit. Until the fiftieth session a step without a ready helper was taken unsplit, which
/// rounds otherwise, so the same link trained to other curves from one visit to the next
/// (tiny, seed 1339, three runs side by side: 2.647 or 2.661 after 400 steps).
#[test]
fn a_cpu_runs_curve_does_not_depend_on_when_its_helper_comes_and_goes() {
    let server = StaticServer::start(dist_dir());
    let query = "?preset=tiny&device=cpu&steps=60&workers=2&objective=causal_lm=0.5,masked_lm=0.5";
    let browser = Browser::start(false);
    let (device, undisturbed) = train_to_the_end(&browser, &server, query);
    // `workers=2` starts a helper on any machine: without it there is nothing to compare
    assert!(device.contains("2 workers share each step"), "the helper took its share: {device:?}");
    let (device, crashed) = train_to_the_end(&Browser::start(false), &server, &format!("{query}&helper_fails_at=30"));
    assert!(device.contains("1 worker: the second worker"), "the helper crashed: {device:?}");
    assert_eq!(crashed.to_bits(), undisturbed.to_bits(), "the same last loss: {crashed} against {undisturbed}");
}

/// A lost GPU device (fault injection: `lose_device_at` destroys the worker's WebGPU device
/// after a step, as a driver reset or a crashed GPU process would) stops the run with a
/// message that says so; with the fault turned off, Reset starts a fresh worker and the same
/// experiment trains on a new device.
#[test]
fn a_lost_gpu_device_is_explained_and_reset_trains_again() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(true);
    open_and_start(&browser, &server, "?preset=tiny&device=gpu&steps=400&snapshot_every=1000&lose_device_at=3");
    let error = browser.wait_for("the lost device's message", Duration::from_secs(300), |b| b.text("error").filter(|e| e.contains("GPU device was lost")));
    assert!(error.contains("Press Reset"), "{error}");
    browser.wait_for("the run to stop", Duration::from_secs(60), |b| (b.text("state")? == "failed").then_some(()));
    browser.set_value("lose-device-at", "0");
    browser.click("reset");
    browser.wait_for("the page to clear", Duration::from_secs(30), |b| b.text("error").filter(|e| e.is_empty()));
    browser.click("start");
    wait_for_steps_and_falling_loss(&browser, 5, Duration::from_secs(300));
    let device = browser.text("device").unwrap();
    assert!(device.starts_with("WebGPU"), "a new device: {device:?}");
}

/// A captured step that fails while it records (fault injection: `capture_fails=1` makes the
/// recording upload a value, which a recording cannot take; a first recording on WebGPU once
/// failed this way for want of a page) never runs its update: the run starts over from its seed, takes
/// its steps again, captures at the second try and finishes without a word of it, at the
/// same last loss as the run without the fault. Before, the run stopped at its next loss read
/// with "reading from the device failed".
#[test]
fn a_gpu_run_whose_capture_fails_while_recording_starts_over_and_finishes() {
    let server = StaticServer::start(dist_dir());
    let last_loss = |query: &str| {
        let browser = Browser::start(true);
        let (_, last) = train_to_the_end(&browser, &server, query);
        assert_eq!(browser.step(), 12, "{query}");
        last
    };
    let query = "?preset=tiny&device=gpu&objective=position_prediction&steps=12&snapshot_every=1000";
    let failed_once = last_loss(&format!("{query}&capture_fails=1"));
    let undisturbed = last_loss(query);
    assert!((failed_once - undisturbed).abs() <= 1e-5 * undisturbed.abs(), "the same run: {failed_once} vs {undisturbed}");
}

/// With WebGPU only from a software renderer (the test browser's SwiftShader), the default
/// device (`auto`) trains on the CPU, which is far faster there, and says why; WebGPU chosen
/// in the settings is still used (`trains_on_webgpu`).
#[test]
fn auto_prefers_the_cpu_to_a_software_webgpu() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(true);
    open_and_start(&browser, &server, "?preset=tiny&steps=1000");
    wait_for_steps_and_falling_loss(&browser, 20, Duration::from_secs(120));
    let device = browser.text("device").unwrap();
    assert!(device.starts_with("CPU — this browser's WebGPU is a software renderer"), "device element: {device:?}");
    assert!(device.contains("swiftshader"), "it names the renderer: {device:?}");
}

/// `workers=3`: the training worker starts two helpers (also where the machine has fewer
/// cores, as CI's two: the option is the user's), each computes a share of every step's rows,
/// the run trains with a falling loss, and the benchmark splits its steps three ways. Then a
/// page with `workers=1` trains alone and says nothing of workers, and a fresh page's first
/// benchmark uses its helper.
#[test]
fn three_workers_share_each_step_when_asked() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open_and_start(&browser, &server, "?preset=tiny&steps=1000&workers=3");
    let shown = browser.eval("return document.querySelector('[data-testid=workers]').value");
    assert_eq!(shown.as_str(), Some("3"), "the settings show the option");
    let device = browser.wait_for("both helpers", Duration::from_secs(300), |b| b.text("device").filter(|d| d.contains("3 workers share each step")));
    assert!(!device.contains("stopped"), "device element: {device:?}");
    let at = browser.step();
    wait_for_steps_and_falling_loss(&browser, at + 20, Duration::from_secs(300));
    let report = run_benchmark(&browser, Duration::from_secs(300));
    assert!(report.text.contains("(3 workers)"), "the benchmark splits its steps three ways: {report:?}");
    assert!(report.text.contains("the slowest helper computed its share in"), "{report:?}");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown");

    let alone = Browser::start(false);
    open_and_start(&alone, &server, "?preset=tiny&steps=1000&workers=1");
    wait_for_steps_and_falling_loss(&alone, 20, Duration::from_secs(300));
    let device = alone.text("device").unwrap();
    assert!(!device.contains("workers share"), "one worker: {device:?}");

    // The benchmark pressed as the page opens, before any run started a helper, waits for its
    // helper to load and times both workers (it timed one).
    let fresh = Browser::start(false);
    fresh.open(&format!("http://127.0.0.1:{}/?preset=tiny&device=cpu&workers=2", server.port));
    fresh.wait_for("the page to load", Duration::from_secs(60), |b| b.text("benchmark").map(|_| ()));
    let report = run_benchmark(&fresh, Duration::from_secs(300));
    assert!(report.text.contains("(2 workers)"), "the first benchmark uses the helper too: {report:?}");
}

/// Trains `query` (a finite run) to its end in a fresh page of `browser` and returns its
/// device line and its last training loss, every digit. An error on the page ends the wait.
fn train_to_the_end(browser: &Browser, server: &StaticServer, query: &str) -> (String, f32) {
    open_and_start(browser, server, query);
    browser.wait_for("the run to finish", Duration::from_secs(300), |b| {
        (b.text("state")? == "finished" || !b.text("error").unwrap_or_default().is_empty()).then_some(())
    });
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown ({query})");
    let first = browser.attribute("train-loss", "data-first").as_deref().and_then(parse_loss).expect("a first loss");
    let last = browser.attribute("train-loss", "data-exact").as_deref().and_then(parse_loss).expect("the last loss");
    assert!(last.is_finite() && last < first, "training loss should fall: first {first}, last {last}");
    (browser.text("device").unwrap(), last)
}

/// A CPU-only browser whose `WebAssembly.validate` says no to relaxed-SIMD modules (the page's
/// probe is the one it sees).
fn browser_without_relaxed_simd() -> Browser {
    let browser = Browser::start(false);
    browser.before_each_page(
        "const validate = WebAssembly.validate;
         WebAssembly.validate = (bytes) => {
           const b = new Uint8Array(bytes.buffer || bytes);
           for (let i = 0; i + 2 < b.length; i++)
             if (b[i] === 0xfd && b[i + 1] === 0x85 && b[i + 2] === 0x02) return false;
           return validate(bytes);
         };",
    );
    browser
}

/// A browser without WebAssembly relaxed SIMD (Safari, older ones): the FMA worker would not
/// even load there, so the page starts the plain build, which trains. This Chromium has relaxed
/// SIMD, so the test hides it from the page. And the two builds compute the same run: the
/// FMA build's relaxed-SIMD code (gemm's microkernels, the attention loops' tiles) runs only
/// in a browser, so this is its check against the plain build's multiplies and adds. Fused
/// multiply-adds round once where the plain build rounds twice, which after 40 steps left the
/// last loss the same to the bit (Chromium 156, 2026-12-03); an attention tile that read the
/// wrong four columns moved it by 5·10⁻⁴ of itself, fifty times the tolerance.
#[test]
fn without_relaxed_simd_the_page_starts_the_plain_worker_which_trains_as_the_fma_one() {
    let server = StaticServer::start(dist_dir());
    let query = "?preset=tiny&device=cpu&steps=40&objective=causal_lm=0.5,prefix_lm=0.5";
    let (device, plain) = train_to_the_end(&browser_without_relaxed_simd(), &server, query);
    assert!(device.starts_with("CPU — chosen in the settings"), "device element: {device:?}");
    assert!(device.contains("flex backend in WebAssembly") && !device.contains("FMA"), "the plain worker: {device:?}");
    let (device, fma) = train_to_the_end(&Browser::start(false), &server, query);
    assert!(device.contains("relaxed-SIMD FMA"), "the FMA worker: {device:?}");
    assert!((plain - fma).abs() < 1e-5 * plain.abs(), "the same run's last loss: plain {plain}, FMA {fma}");
}

/// On a phone's screen (420 CSS pixels wide, 2 device pixels each) the charts are drawn for
/// the box they are shown in, at the screen's pixel density: the loss and probe charts as wide
/// as their section, the projections at their size, each with twice its CSS pixels. With fixed
/// 720-pixel canvases the loss chart's lines and labels were stretched, blurred, and on a phone
/// shrunk to half their size. The pointer's readout still finds the step under it, and nothing
/// (the objective mix's parameter controls were) widens the page past the screen.
#[test]
fn charts_are_drawn_sharp_for_the_screen_they_are_shown_on() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    browser.emulate_screen(420, 900, 2.0);
    // (a mix whose parameters show their controls: a number and a word list)
    open_and_start(&browser, &server, "?preset=tiny&device=cpu&steps=60&snapshot_every=20&objective=masked_lm=0.5,conditional_training=0.5");
    browser.wait_for("a snapshot", Duration::from_secs(120), |b| b.attribute("projection", "data-step").filter(|s| !s.is_empty()));
    browser.wait_for("the run to finish", Duration::from_secs(120), |b| (b.step() >= 60).then_some(()));
    // [backing width, backing height, shown width, shown height] of each canvas
    let sizes = browser.eval(
        "const size = c => [c.width, c.height, c.clientWidth, c.clientHeight];
         return {
           loss: size(document.querySelector('[data-testid=\"loss-chart\"]')),
           probe: size(document.querySelector('[data-testid=\"probe-chart\"]')),
           projections: [...document.querySelectorAll('.projection canvas')].map(size),
           ratio: devicePixelRatio,
           page: document.documentElement.scrollWidth,
         };",
    );
    assert_eq!(sizes["ratio"].as_f64(), Some(2.0), "{sizes}");
    let size = |v: &serde_json::Value| -> Vec<u64> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect() };
    for (chart, height) in [("loss", 300), ("probe", 200)] {
        let s = size(&sizes[chart]);
        assert!(s[2] > 200 && s[2] < 420, "the {chart} chart fits the phone's width: {sizes}");
        assert_eq!((s[0], s[1]), (2 * s[2], 2 * s[3]), "the {chart} chart has two pixels per CSS pixel: {sizes}");
        assert_eq!(s[3], height, "the {chart} chart keeps its height: {sizes}");
    }
    let projections = sizes["projections"].as_array().unwrap();
    assert_eq!(projections.len(), 2, "{sizes}");
    for p in projections {
        assert_eq!(size(p), vec![480, 480, 240, 240], "a projection is 240 CSS pixels square, at two pixels each: {sizes}");
    }
    assert!(sizes["page"].as_u64().unwrap() <= 420, "nothing widens the page past the screen: {sizes}");
    // the pointer halfway across the plot reads the runs at half the run's 60 steps
    browser.eval(
        "const c = document.querySelector('[data-testid=\"loss-chart\"]'); const r = c.getBoundingClientRect();
         c.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true}));
         return true;",
    );
    let readout = browser.wait_for("the readout", Duration::from_secs(10), |b| b.text("loss-readout").filter(|t| t.starts_with("step ≈")));
    assert!(readout.starts_with("step ≈ 30:"), "{readout}");
}

#[test]
fn a_malformed_address_is_explained_not_fatal() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    // a workspace link with one good run and two it cannot read (a bad option, garbage)
    browser.open(&format!(
        "http://127.0.0.1:{}/?preset=huge&device=quantum&%zz&run=preset%3Dtiny%26objective%3Dmasked_lm&run=steps%3D-1&run=%zz%00",
        server.port
    ));
    let error = browser.wait_for("the error message", Duration::from_secs(60), |b| b.text("error").filter(|e| !e.is_empty()));
    assert!(error.contains("valid presets: baby-gpt, tiny"), "{error}");
    assert!(error.contains("valid devices: auto, gpu, cpu"), "{error}");
    assert!(error.contains("run 2 of the link is left out") && error.contains("run 3 of the link is left out"), "{error}");
    let offer = browser.text("linked-runs").unwrap_or_default();
    assert!(offer.contains("This link holds a run: masked_lm"), "the run it could read is offered: {offer:?}");
    // The page still works with the defaults.
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"preset\"]').value"), "baby-gpt");
    assert!(browser.text("start").is_some());
}
