//! Every objective in a real headless Chromium: it starts on WebGPU (SwiftShader) on the tiny
//! preset, the loss is finite, and "what the model sees" shows its own corruption and the
//! model's answer at each scored position. Then the objective controls on the CPU: parameter
//! ranges and all-zero mixtures are refused at the control, a mixture trains, changing the
//! objective of a running run asks to reset it, and conditional training reports the bad-word
//! rate of its samples.

use std::time::Duration;

use objlab_e2e::{Browser, StaticServer, dist_dir};

/// (objective, a mark its example must show, how its attention pattern is named)
const CASES: &[(&str, &str, &str)] = &[
    ("causal_lm", "plain", "causal"),
    ("prefix_lm", "target", "prefix"),
    ("masked_lm", "masked", "bidirectional"),
    ("span_corruption", "sentinel", "prefix"),
    ("ul2_mixture", "control", "prefix"),
    ("random_token_detection", "replaced", "bidirectional"),
    ("swapped_lm", "replaced", "bidirectional"),
    ("position_prediction", "plain", "causal"),
    ("contrastive", "plain", "bidirectional"),
    ("conditional_training", "control", "causal"),
];

/// JavaScript: facts about the "what the model sees" card of `id`, as a JSON string.
fn seen_facts(id: &str) -> String {
    format!(
        "const a = document.querySelector('[data-testid=\"seen\"][data-objective=\"{id}\"]'); if (!a) return null;
         const marks = [...a.querySelectorAll('[data-testid=\"seen-input\"] [data-mark]')].map(e => e.dataset.mark);
         const targets = [...a.querySelectorAll('[data-testid=\"seen-input\"] .scored')].map(e => e.textContent);
         return JSON.stringify({{
           marks: [...new Set(marks)],
           views: a.querySelectorAll('[data-testid=\"seen-input\"]').length,
           pattern: a.querySelector('[data-testid=\"seen-attention\"]').dataset.pattern,
           targets: targets.slice(0, 6),
           scored: a.querySelector('[data-testid=\"seen-input\"]').querySelectorAll('.scored').length,
           answers: a.querySelectorAll('[data-answer]').length,
           explain: a.querySelector('.explain').textContent
         }});"
    )
}

#[test]
fn every_objective_trains_on_webgpu_and_shows_what_the_model_sees() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(true);
    // One page and one worker for all objectives: SwiftShader compiles each WebGPU pipeline
    // once (over a minute on two cores), and later runs reuse them.
    browser.open(&format!("http://127.0.0.1:{}/?preset=tiny&device=gpu&steps=400", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("start").map(|_| ()));
    let mut failures = Vec::new();
    for &(id, mark, pattern) in CASES {
        browser.set_value("objective", id);
        browser.wait_for(&format!("{id} to be chosen"), Duration::from_secs(10), |b| {
            b.eval("return location.search").as_str().unwrap_or("").contains(&format!("objective={id}")).then_some(())
        });
        browser.click("start");
        browser.wait_for(&format!("{id}: three WebGPU steps"), Duration::from_secs(400), |b| {
            (b.step() >= 3 || b.text("state").as_deref() == Some("failed")).then_some(())
        });
        let device = browser.text("device").unwrap_or_default();
        let loss: f32 = browser.text("train-loss").and_then(|t| t.trim().parse().ok()).unwrap_or(f32::NAN);
        let error = browser.text("error").unwrap_or_default();
        let facts = browser.wait_for(&format!("{id}: what the model sees"), Duration::from_secs(120), |b| {
            b.eval(&seen_facts(id)).as_str().map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap())
        });
        eprintln!("{id}: device {device:?}, loss {loss}, seen {facts}");
        browser.click("reset");
        browser.wait_for("the reset", Duration::from_secs(60), |b| (b.text("state")? == "ready").then_some(()));
        let marks: Vec<&str> = facts["marks"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
        let mut problems = Vec::new();
        if !error.is_empty() {
            problems.push(format!("error shown: {}", error.chars().take(300).collect::<String>()));
        }
        if !device.starts_with("WebGPU") {
            problems.push(format!("device is {device:?}"));
        }
        if !loss.is_finite() || loss <= 0.0 {
            problems.push(format!("loss is {loss}"));
        }
        if !marks.contains(&mark) {
            problems.push(format!("no {mark:?} token in {marks:?}"));
        }
        if !facts["pattern"].as_str().unwrap_or("").starts_with(pattern) {
            problems.push(format!("attention {:?} is not {pattern}", facts["pattern"]));
        }
        if facts["explain"].as_str().unwrap_or("").len() < 80 {
            problems.push("no explanation".into());
        }
        // the model's answer under each scored position of the first row (none for contrastive,
        // whose score compares rows)
        let (scored, answers) = (facts["scored"].as_u64().unwrap_or(0), facts["answers"].as_u64().unwrap_or(0));
        match id {
            "contrastive" if answers != 0 => problems.push(format!("{answers} answers for a contrastive example")),
            "contrastive" => {}
            _ if scored == 0 || answers != scored => problems.push(format!("{answers} answers for {scored} scored positions")),
            _ => {}
        }
        match id {
            "random_token_detection" if !facts["targets"].to_string().contains("orig") => problems.push("binary targets missing".into()),
            "position_prediction" if facts["targets"][1] != "1" => problems.push(format!("position targets {}", facts["targets"])),
            "contrastive" if facts["views"] != 2 => problems.push("two views expected".into()),
            _ => {}
        }
        if !problems.is_empty() {
            failures.push(format!("{id}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn objective_controls_refuse_bad_values_and_ask_before_changing_a_running_run() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    browser.open(&format!("http://127.0.0.1:{}/?preset=tiny&device=cpu&steps=2000&objective=masked_lm", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("start").map(|_| ()));
    let control_error = |b: &Browser| b.text("objective-error").filter(|e| !e.is_empty());

    // A parameter out of range is refused, naming the range; the value stays as it was.
    browser.set_value("param-masked_lm-rate", "0.95");
    let e = browser.wait_for("the range message", Duration::from_secs(10), control_error);
    assert!(e.contains("valid range is 0.01 to 0.9"), "{e}");
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"param-masked_lm-rate\"]').value"), "0.15");
    browser.set_value("param-masked_lm-rate", "0.3");
    browser.wait_for("the message to clear", Duration::from_secs(10), |b| control_error(b).is_none().then_some(()));

    // All weights zero is refused.
    browser.set_value("weight-masked_lm", "0");
    let e = browser.wait_for("the all-zero message", Duration::from_secs(10), control_error);
    assert!(e.contains("all zero"), "{e}");

    // A mixture: masked LM + causal LM, mirrored into the address.
    browser.set_value("weight-causal_lm", "0.5");
    browser.wait_for("the mixture", Duration::from_secs(10), |b| {
        let url = b.eval("return location.search").as_str().unwrap_or("").to_string();
        (url.contains("causal_lm") && url.contains("masked_lm") && url.contains("rate")).then_some(())
    });
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"objective\"]').value"), "mix");

    // A number field refuses what is not a step count, says why, and shows the value kept;
    // Start then trains with what the fields show, and the refusal goes.
    browser.set_value("steps-choice", "-5");
    let e = browser.wait_for("the steps message", Duration::from_secs(10), control_error);
    assert!(e.contains("steps: \"-5\" is negative"), "{e}");
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"steps-choice\"]').value"), "2000");
    browser.set_value("snapshot-every", "0");
    let e = browser.wait_for("the snapshot message", Duration::from_secs(10), |b| control_error(b).filter(|e| e.contains("snapshot")));
    assert_eq!(e, "snapshot_every must be at least 1");
    browser.click("start");
    browser.wait_for("a few CPU steps of the mixture", Duration::from_secs(200), |b| (b.step() >= 5).then_some(()));
    assert_eq!(control_error(&browser), None, "Start took the shown values: the refusal is stale");
    assert!(browser.eval("return document.body.innerText").as_str().unwrap_or("").contains("/ 2000"), "the run kept 2000 steps");
    let shown = browser.eval("return [...document.querySelectorAll('[data-testid=\"seen\"]')].map(e => e.dataset.objective).join(',')");
    assert_eq!(shown, "masked_lm,causal_lm");

    // Changing the objective of a running run asks first, and the run goes on meanwhile.
    browser.set_value("weight-swapped_lm", "0.5");
    browser.wait_for("the reset question", Duration::from_secs(10), |b| b.text("confirm-reset"));
    let step = browser.step();
    browser.wait_for("the run to go on", Duration::from_secs(60), |b| (b.step() > step).then_some(()));
    assert_eq!(browser.text("state").unwrap(), "training");
    browser.click("apply-reset");
    browser.wait_for("the reset", Duration::from_secs(30), |b| (b.step() == 0 && b.text("state")? == "ready").then_some(()));
    assert!(browser.text("confirm-reset").is_none());
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"weight-swapped_lm\"]').value"), "0.5");
    browser.click("start");
    browser.wait_for("the new mixture's examples", Duration::from_secs(200), |b| {
        let shown = b.eval("return [...document.querySelectorAll('[data-testid=\"seen\"]')].map(e => e.dataset.objective).join(',')");
        (shown == "masked_lm,causal_lm,swapped_lm").then_some(())
    });
    assert_eq!(browser.text("error").unwrap_or_default(), "");
}

#[test]
fn conditional_training_reports_the_bad_word_rate_of_samples() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    browser.open(&format!(
        "http://127.0.0.1:{}/?preset=tiny&device=cpu&steps=1000&sample_every=10&objective=conditional_training",
        server.port
    ));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("start").map(|_| ()));
    browser.click("start");
    let rate = browser.wait_for("a sample with its bad-word rate", Duration::from_secs(300), |b| {
        b.text("bad-word-rate").filter(|t| !t.is_empty())
    });
    assert!(rate.contains("bad words in this sample") && rate.contains("words ("), "{rate}");
    assert!(!browser.text("sample").unwrap_or_default().is_empty());
}
