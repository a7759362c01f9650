//! Runs side by side in a real headless Chromium (CPU, flex in wasm; the WebGPU kernels are
//! checked in `browser.rs`): three runs with different objectives train together, the
//! representation views follow them, a diverging run stops alone, and a workspace too large for
//! the device is refused before anything is allocated; seeds gather into one row of the results
//! table; two runs started at once share the WebGPU device; and runs of two sizes chosen on the
//! page train side by side, told apart by their size.

use std::time::Duration;

use objlab_e2e::{Browser, StaticServer, dist_dir};
use serde_json::Value;

fn open(browser: &Browser, server: &StaticServer, query: &str) {
    browser.open(&format!("http://127.0.0.1:{}/{query}", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("add-run").map(|_| ()));
}

/// Training points per run, as the loss chart reports them.
fn points(browser: &Browser) -> Vec<usize> {
    browser.attribute("loss-chart", "data-points").unwrap_or_default().split(',').filter_map(|s| s.parse().ok()).collect()
}

/// (run, shown snapshot step) of every projection card.
fn projection_steps(browser: &Browser) -> Vec<Option<usize>> {
    let v = browser.eval("return [...document.querySelectorAll('[data-testid=\"projection\"]')].map(e => e.dataset.step)");
    v.as_array().unwrap().iter().map(|s| s.as_str().and_then(|s| s.parse().ok())).collect()
}

/// Adds a run beside those training: the control `testid` set to `value` waits as a pending
/// change, and "add run" adds the experiment the controls now show.
fn add_run_with(browser: &Browser, testid: &str, value: &str) {
    browser.set_value(testid, value);
    browser.wait_for("the pending change", Duration::from_secs(10), |b| b.text("confirm-reset"));
    browser.click("add-run");
}

fn run_rows(browser: &Browser) -> usize {
    browser.eval("return document.querySelectorAll('[data-testid=\"run-row\"]').length").as_u64().unwrap() as usize
}

/// "Ask the model": a line asked of a next-token run and of a masked-LM run beside it, one
/// run at a time and both at once. The first continues the line (what comes before its blank);
/// the second is offered the line with a blank and fills it; a character neither run's text
/// has gets a message in the panel, not the page's error, and both runs train on. A
/// span-corruption run added beside them answers at its sentinel, with the stretch it writes
/// or with "nothing", which an undertrained model writes and which is shown as an answer too.
#[test]
fn asking_a_gpt_and_a_bert_run_the_same_line_shows_what_each_can_do() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=3000&objective=causal_lm");
    // no run yet: nothing to ask, and no run "kept from your last visit" either
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"ask\"]').disabled").as_bool(), Some(true));
    assert_eq!(browser.text("ask-kept"), None, "an empty page has no kept run");
    browser.click("add-run");
    add_run_with(&browser, "objective", "masked_lm");
    browser.wait_for("both runs to train", Duration::from_secs(120), |b| {
        let p = points(b);
        (p.len() == 2 && p.iter().all(|n| *n >= 3)).then_some(())
    });
    let line = |b: &Browser| b.eval("return document.querySelector('[data-testid=\"ask-text\"]').value");
    let all = |b: &Browser, testid: &str| b.eval(&format!("return [...document.querySelectorAll('[data-testid=\"{testid}\"]')].map(e => e.dataset.objective || e.dataset.run || e.textContent)"));
    let answered = |b: &Browser, runs: usize| {
        let replies = b.eval("return document.querySelectorAll('[data-testid=\"ask-reply\"]').length");
        (replies.as_u64() == Some(runs as u64) && b.text("ask-waiting").is_none()).then_some(())
    };

    // the next-token run continues the line
    browser.set_value("ask-run", "1");
    assert_eq!(line(&browser), "To be, or not to be");
    assert!(browser.text("ask-hint").is_some_and(|h| h.contains("continues what you type")));
    browser.click("ask");
    browser.wait_for("run 1's answers", Duration::from_secs(60), |b| answered(b, 1));
    let continued = browser.text("ask-continuation").unwrap_or_default();
    assert!(continued.starts_with("To be, or not to be"), "{continued:?}");
    assert_eq!(continued.chars().count(), 19 + 120, "the line and 120 characters after it");
    assert_eq!(all(&browser, "ask-example"), Value::from(Vec::<String>::new()), "a next-token model has no blank to fill");

    // the masked run is offered the line with a blank, and fills it
    browser.set_value("ask-run", "2");
    assert_eq!(line(&browser), "To be, or n_t to be");
    assert!(browser.text("ask-hint").is_some_and(|h| h.contains("fills in each _")));
    browser.click("ask");
    browser.wait_for("run 2's answers", Duration::from_secs(60), |b| answered(b, 1));
    assert_eq!(all(&browser, "ask-example"), Value::from(vec!["masked_lm"]));
    assert_eq!(browser.text("ask-continuation"), None, "a masked model writes nothing left to right");
    let answers = browser.eval("return document.querySelectorAll('[data-testid=\"ask-example\"] [data-answer]').length");
    assert_eq!(answers, Value::from(1), "one answer: at the blank");
    let summary = browser.text("ask-summary").unwrap_or_default();
    assert!(summary.starts_with("reads it as: \"To be, or n") && summary.contains("t to be\" (") && summary.contains("% sure)"), "{summary:?}");

    // both at once, answers one under another: the next-token run continues what comes
    // before the blank, the masked run fills it
    browser.set_value("ask-run", "every");
    assert_eq!(line(&browser), "To be, or n_t to be");
    browser.click("ask");
    browser.wait_for("both runs' answers", Duration::from_secs(60), |b| answered(b, 2));
    assert_eq!(all(&browser, "ask-reply"), Value::from(vec!["1", "2"]));
    assert!(browser.text("ask-continuation").is_some_and(|c| c.starts_with("To be, or n") && c.chars().count() == 11 + 120));
    assert!(browser.text("ask-note").is_some_and(|n| n.contains("sees only what comes before the first _")));
    assert_eq!(all(&browser, "ask-example"), Value::from(vec!["masked_lm"]));

    // a character the runs' text never had: a message where the question was asked
    browser.set_value("ask-text", "To be, or \u{20ac}");
    browser.click("ask");
    browser.wait_for("the refusals", Duration::from_secs(60), |b| answered(b, 2));
    let said = all(&browser, "ask-error");
    assert_eq!(said.as_array().map(Vec::len), Some(2), "{said}");
    assert!(said[0].as_str().is_some_and(|m| m.contains("not in the corpus vocabulary")), "{said}");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no page error for a question");
    let before = points(&browser);
    browser.wait_for("both runs to train on", Duration::from_secs(120), |b| {
        let p = points(b);
        (p.len() == 2 && p.iter().zip(&before).all(|(now, then)| now > then)).then_some(())
    });

    // a span-corruption run just started writes a stretch behind the sentinel, or nothing
    // (closing the gap at once, as an undertrained one does): either way an answer is shown
    add_run_with(&browser, "objective", "span_corruption");
    browser.wait_for("the third run to train", Duration::from_secs(120), |b| (points(b).get(2).is_some_and(|n| *n >= 2)).then_some(()));
    browser.set_value("ask-run", "3");
    browser.set_value("ask-text", "To be, or n_t to be");
    browser.click("ask");
    browser.wait_for("run 3's answers", Duration::from_secs(60), |b| answered(b, 1));
    assert_eq!(all(&browser, "ask-example"), Value::from(vec!["span_corruption"]));
    let answers = browser.eval("return [...document.querySelectorAll('[data-testid=\"ask-example\"] [data-answer]')].map(e => e.textContent)");
    assert_eq!(answers.as_array().map(Vec::len), Some(1), "one answer, at the sentinel: {answers}");
    let summary = browser.text("ask-summary").unwrap_or_default();
    let nothing = answers[0] == "∅";
    assert_eq!(summary.contains("nothing behind <S0>"), nothing, "{summary:?} {answers}");
    assert!(summary.contains("% sure)"), "{summary:?}");
}

#[test]
fn three_runs_train_side_by_side_with_their_representation_views() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=3000&snapshot_every=10&objective=causal_lm");
    // Three runs, each with another objective: a change while runs train waits as "pending"
    // and "add run" adds it beside them.
    browser.click("add-run");
    for objective in ["masked_lm", "span_corruption"] {
        add_run_with(&browser, "objective", objective);
    }
    assert_eq!(run_rows(&browser), 3);
    let labels = browser.eval("return [...document.querySelectorAll('[data-testid=\"run-select\"]')].map(e => e.textContent).join('|')");
    assert_eq!(labels, "causal_lm|masked_lm|span_corruption", "runs are labelled by what differs");
    let address = browser.eval("return location.search");
    assert_eq!(address.as_str().unwrap().matches("&run=").count(), 3, "the address holds the workspace: {address}");

    // Three curves grow.
    let first = browser.wait_for("three curves", Duration::from_secs(120), |b| {
        let p = points(b);
        (p.len() == 3 && p.iter().all(|n| *n >= 3)).then_some(p)
    });
    browser.wait_for("all three curves to grow", Duration::from_secs(120), |b| {
        let p = points(b);
        (p.len() == 3 && p.iter().zip(&first).all(|(now, then)| now > then)).then_some(())
    });
    assert_eq!(browser.attribute("loss-chart", "data-curves").as_deref(), Some("3"));

    // "download CSV": every run's points, one row each, named by the runs' labels.
    let csv = browser.eval(
        "const a = document.querySelector('[data-testid=\"curves-csv\"]'); a.click(); \
         const href = a.getAttribute('href'); return href.startsWith('data:text/csv') ? decodeURIComponent(href.split(',').slice(1).join(',')) : href",
    );
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("run,label,split,step,loss\n"), "{}", &csv[..csv.len().min(200)]);
    for (run, label) in [(1, "causal_lm"), (2, "masked_lm"), (3, "span_corruption")] {
        let rows = csv.lines().filter(|l| l.starts_with(&format!("{run},{label},train,"))).count();
        assert!(rows >= first[run - 1], "run {run}: {rows} training rows, {} points drawn before", first[run - 1]);
    }

    // The single-run panels explain the selected run (the first), not the controls, which
    // already show the next run's objective (span corruption, which generates no text).
    browser.wait_for("the first run's examples", Duration::from_secs(60), |b| (b.attribute("seen", "data-objective")? == "causal_lm").then_some(()));
    assert_eq!(browser.text("sample-hint"), None, "causal LM generates text: no 'no samples' hint");
    assert!(browser.text("seen-heading").unwrap().contains("— causal_lm"), "the panel names its run");
    // Selecting the second run shows its own examples (kept per run) and the hint.
    browser.eval("document.querySelectorAll('[data-testid=\"run-select\"]')[1].click(); return true");
    browser.wait_for("the second run's examples", Duration::from_secs(5), |b| (b.attribute("seen", "data-objective")? == "masked_lm").then_some(()));
    assert!(browser.text("sample-hint").is_some(), "masked LM generates no text: the hint says so");
    assert!(browser.text("sample-heading").unwrap().contains("— masked_lm"), "{:?}", browser.text("sample-heading"));
    browser.eval("document.querySelectorAll('[data-testid=\"run-select\"]')[0].click(); return true");
    let throughput: f64 = browser.text("throughput").unwrap().parse().unwrap();
    assert!(throughput > 0.0, "the device's aggregate steps/s is shown");

    // The projection view redraws at a new snapshot.
    let before = browser.wait_for("a snapshot of every run", Duration::from_secs(120), |b| {
        let s = projection_steps(b);
        (s.len() == 3 && s.iter().all(|x| x.is_some_and(|x| x >= 10))).then_some(s)
    });
    browser.wait_for("a newer snapshot", Duration::from_secs(120), |b| {
        let s = projection_steps(b);
        (s[0] > before[0]).then_some(())
    });
    assert_eq!(browser.attribute("projection", "data-analyser").as_deref(), Some("CPU"), "no WebGPU: CPU references");

    // The CKA matrix compares the three runs: 3 × 3, ones on the diagonal.
    let cells = browser.wait_for("a 3 × 3 CKA matrix", Duration::from_secs(120), |b| {
        (b.attribute("cka-matrix", "data-size")? == "3").then_some(())?;
        let v = b.eval("return [...document.querySelectorAll('[data-testid=\"cka-cell\"]')].map(e => parseFloat(e.dataset.value))");
        Some(v.as_array()?.iter().filter_map(Value::as_f64).collect::<Vec<f64>>())
    });
    assert_eq!(cells.len(), 9);
    for i in 0..3 {
        assert!((cells[i * 3 + i] - 1.0).abs() < 1e-3, "CKA(X, X) = 1: {cells:?}");
    }
    assert!(cells.iter().all(|c| (-1e-3..=1.0 + 1e-3).contains(c)), "{cells:?}");
    let ranks = browser.eval("return [...document.querySelectorAll('[data-testid=\"effective-rank\"]')].map(e => parseFloat(e.textContent))");
    assert!(ranks.as_array().unwrap().iter().all(|r| r.as_f64().is_some_and(|r| r >= 1.0)), "{ranks}");
    let probe_points = browser.attribute("probe-chart", "data-points").unwrap();
    assert!(probe_points.split(',').all(|n| n.parse::<usize>().unwrap() >= 2), "probe accuracy over training: {probe_points}");

    // Moving the time slider changes the shown step, for every run together.
    browser.set_value("time-slider", "0");
    browser.wait_for("the slider's step", Duration::from_secs(10), |b| (b.text("time-step")? == "step 0").then_some(()));
    assert!(projection_steps(&browser).iter().all(|s| *s == Some(0)), "{:?}", projection_steps(&browser));

    // Attention maps: every layer and head of the tiny model (2 × 2).
    browser.set_value("attention-text", "to be or not");
    browser.click("attention-show");
    let shape = browser.wait_for("the attention maps", Duration::from_secs(60), |b| {
        Some((b.attribute("attention-map", "data-layers")?, b.attribute("attention-map", "data-heads")?))
    });
    assert_eq!(shape, ("2".to_string(), "2".to_string()));
    // The caption says how the maps read the text: a GPT causally, the others both ways.
    let caption = browser.text("attention-caption").unwrap_or_default();
    let run = browser.attribute("attention-map", "data-run").unwrap_or_default();
    let how = if run == "1" { "\"to be or not\" causally (" } else { "\"to be or not\" in both directions (" };
    assert!(caption.contains(how), "run {run}: {caption:?}");
    // A layer's heads sit side by side, and the pointer reads a cell: the bottom-right one is
    // the last token looking at itself.
    let side_by_side = browser.eval(
        "const f = document.querySelector('.head-row').querySelectorAll('figure'); return f[0].offsetTop == f[1].offsetTop && f[1].offsetLeft > f[0].offsetLeft",
    );
    assert_eq!(side_by_side, Value::Bool(true), "the heads of a layer in one row");
    browser.eval(
        "const c = document.querySelector('[data-testid=\"attention-map\"] canvas'); const r = c.getBoundingClientRect(); \
         c.dispatchEvent(new MouseEvent('mousemove', {clientX: r.right - 3, clientY: r.bottom - 3, bubbles: true})); return true",
    );
    let caption = browser.wait_for("the hovered cell's weight", Duration::from_secs(5), |b| {
        let caption = b.eval("return document.querySelector('[data-testid=\"attention-map\"] figcaption').textContent");
        caption.as_str().filter(|c| c.contains("looks at")).map(str::to_string)
    });
    assert!(caption.starts_with("\"t\" at 12 looks at \"t\" at 12: "), "{caption}");

    // Pause one run: it holds its step while the others go on.
    browser.eval("document.querySelectorAll('[data-testid=\"run-pause\"]')[1].click(); return true");
    browser.wait_for("run 2 paused", Duration::from_secs(30), |b| {
        let states = b.eval("return [...document.querySelectorAll('[data-testid=\"run-row\"]')].map(e => e.dataset.state).join(',')");
        (states == "training,paused,training").then_some(())
    });
    let held = points(&browser);
    browser.wait_for("the others to go on", Duration::from_secs(60), |b| {
        let p = points(b);
        (p[0] > held[0] + 2 && p[2] > held[2] + 2).then_some(())
    });
    assert_eq!(points(&browser)[1], held[1], "the paused run holds");

    // Remove one: two rows and a 2 × 2 matrix remain.
    browser.eval("document.querySelectorAll('[data-testid=\"run-remove\"]')[2].click(); return true");
    assert_eq!(run_rows(&browser), 2);
    browser.wait_for("a 2 × 2 matrix", Duration::from_secs(30), |b| (b.attribute("cka-matrix", "data-size")? == "2").then_some(()));
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown");

    // The address is a link to the workspace: opened, it offers the two runs left, and
    // starts them side by side.
    let address = browser.eval("return location.search").as_str().unwrap().to_string();
    assert_eq!(address.matches("&run=").count(), 2, "{address}");
    open(&browser, &server, &address);
    let offer = browser.wait_for("the link's runs", Duration::from_secs(10), |b| b.text("linked-runs"));
    assert!(offer.contains("2 runs side by side: causal_lm · masked_lm"), "{offer}");
    assert_eq!(run_rows(&browser), 0, "nothing starts before the user asks");
    browser.click("start-linked");
    assert_eq!(run_rows(&browser), 2, "error: {:?}", browser.text("error"));
    let labels = browser.eval("return [...document.querySelectorAll('[data-testid=\"run-select\"]')].map(e => e.textContent).join('|')");
    assert_eq!(labels, "causal_lm|masked_lm");
    browser.wait_for("both linked runs to train", Duration::from_secs(120), |b| {
        let p = points(b);
        (p.len() == 2 && p.iter().all(|n| *n >= 3)).then_some(())
    });
    assert_eq!(browser.text("linked-runs"), None, "the offer is gone once taken");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown");

    // A duplicate outlives the run it was made from (its row's button made it; the page
    // stopped updating when that row went).
    browser.eval("document.querySelectorAll('[data-testid=\"run-duplicate\"]')[0].click(); return true");
    assert_eq!(run_rows(&browser), 3);
    browser.set_value("attention-run", "1");
    // (a typed ⏎ is a new line in the text read, which on Shakespeare is no image)
    browser.set_value("attention-text", "To be⏎or not");
    browser.click("attention-show");
    browser.wait_for("the first run's attention maps", Duration::from_secs(60), |b| b.attribute("attention-map", "data-run").filter(|r| r == "1"));
    assert!(browser.text("attention-caption").unwrap_or_default().contains("To be\\nor not"), "the ⏎ read as a new line");
    assert_eq!(browser.eval("return document.querySelectorAll('[data-testid=attention-image], [data-testid=pixel-attention]').length").as_u64(), Some(0), "no pixel images for a text");
    browser.eval("document.querySelectorAll('[data-testid=\"run-remove\"]')[0].click(); return true");
    assert_eq!(run_rows(&browser), 2);
    browser.wait_for("its attention maps to go with it", Duration::from_secs(5), |b| b.attribute("attention-map", "data-run").is_none().then_some(()));
    // The run chosen for the maps is gone: "Show" reads one that is still there (it asked the
    // worker for the removed run, which answered with an error).
    browser.click("attention-show");
    let shown = browser.wait_for("a remaining run's attention maps", Duration::from_secs(60), |b| b.attribute("attention-map", "data-run"));
    assert_ne!(shown, "1");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown");
    let held = points(&browser);
    browser.wait_for("the duplicate to go on", Duration::from_secs(60), |b| {
        let p = points(b);
        (p.len() == 2 && p[1] > held[1] + 2).then_some(())
    });
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error is shown");
}

#[test]
fn a_diverging_run_stops_alone_and_a_too_large_workspace_is_refused() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=3000&objective=causal_lm");
    browser.click("add-run");
    // The same experiment with a NaN injected at step 5 (fault injection), beside it.
    add_run_with(&browser, "nan-at", "5");
    let marker = browser.wait_for("the divergence marker", Duration::from_secs(120), |b| b.text("run-failed"));
    assert!(marker.contains("diverged at step 5"), "{marker}");
    let states = browser.eval("return [...document.querySelectorAll('[data-testid=\"run-row\"]')].map(e => e.dataset.state).join(',')");
    assert_eq!(states, "training,stopped: failed");
    let held = points(&browser);
    browser.wait_for("the other run to go on", Duration::from_secs(60), |b| (points(b)[0] > held[0] + 5).then_some(()));
    assert!(browser.text("error").unwrap().contains("diverged"), "the error element says it too");
    // The stopped run, selected, still shows what its model saw before it stopped (each run
    // keeps its latest examples; none arrive for it any more), not the running one's.
    browser.eval("document.querySelectorAll('[data-testid=\"run-select\"]')[1].click(); return true");
    let heading = browser.wait_for("the stopped run's examples", Duration::from_secs(5), |b| b.text("seen").and(b.text("seen-heading")));
    let step: usize = heading.rsplit("step ").next().and_then(|s| s.trim_end_matches(')').parse().ok()).unwrap_or(0);
    assert!((1..=5).contains(&step), "an example from its last steps, up to the divergence at step 5: {heading:?}");
    // the two runs differ only in the fault injected, so each is named by its number too
    assert!(heading.contains("— causal_lm #2 "), "{heading:?}");
    // The results table marks the stopped run's row, and says why in its title.
    let stopped = |b: &Browser| -> Vec<String> {
        let v = b.eval(
            "return [...document.querySelectorAll('[data-testid=\"results-row\"]')].map(r => { const s = r.querySelector('[data-testid=\"results-stopped\"]'); return s ? s.title : ''; })",
        );
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let marks = browser.wait_for("the results' rows", Duration::from_secs(10), |b| Some(stopped(b)).filter(|m| m.len() == 2));
    assert!(marks[0].is_empty() && marks[1].contains("diverged at step 5"), "{marks:?}");
    // Alone, the stopped run still has its row, at the step it reached.
    browser.eval("document.querySelectorAll('[data-testid=\"run-remove\"]')[0].click(); return true");
    let marks = browser.wait_for("the stopped run's row alone", Duration::from_secs(10), |b| Some(stopped(b)).filter(|m| m.len() == 1));
    assert!(marks[0].contains("diverged at step 5"), "{marks:?}");
    let train = browser.text("results-train").unwrap_or_default();
    assert!(train.parse::<f64>().is_ok_and(|l| l > 1.0 && l < 6.0), "its training loss from before it stopped: {train:?}");

    // A run of width 2048 × 48 layers × context 1024 is far beyond the budget: refused with the
    // estimate, nothing added.
    open(&browser, &server, "?preset=baby-gpt&device=cpu&width=2048&layers=48&context=1024");
    // the size line says so before anything is added
    let size = browser.text("model-size").unwrap_or_default();
    assert!(size.contains("so it would be refused"), "{size}");
    assert_eq!(browser.attribute("model-size", "class").as_deref(), Some("size-info too-large"));
    browser.click("add-run");
    let error = browser.wait_for("the refusal", Duration::from_secs(10), |b| b.text("error").filter(|e| !e.is_empty()));
    assert!(error.contains("would need about") && error.contains("GB") && error.contains("more than the"), "{error}");
    assert_eq!(run_rows(&browser), 0);
}

/// "duplicate" pressed twice on one run adds two new seeds, not the same seed twice (two
/// identical runs, whose curves lie on each other, and the seed comparison shows nothing).
/// The results table gathers the three seeds into one row with their spread, compared at the
/// step all three reached; a masked-LM run beside them gets a row of its own and the note that
/// its loss scores another task; the table copies as Markdown; a hidden run leaves the table;
/// finished runs are compared at their last step.
#[test]
fn duplicated_seeds_make_one_row_of_the_results_with_their_spread() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=200&snapshot_every=1000");
    browser.click("add-run");
    for _ in 0..2 {
        browser.eval("document.querySelectorAll('[data-testid=\"run-duplicate\"]')[0].click(); return true");
    }
    assert_eq!(run_rows(&browser), 3, "error: {:?}", browser.text("error"));
    let labels = browser.eval("return [...document.querySelectorAll('[data-testid=\"run-select\"]')].map(e => e.textContent).join('|')");
    assert_eq!(labels, "seed 1337|seed 1338|seed 1339");

    let cells = |b: &Browser, testid: &str| -> Vec<String> {
        let v = b.eval(&format!("return [...document.querySelectorAll('[data-testid=\"{testid}\"]')].map(e => e.textContent)"));
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let compared = |b: &Browser| b.attribute("results-step", "data-step").and_then(|s| s.parse::<usize>().ok());
    // past the validation at step 50 (tiny validates every 50 steps)
    browser.wait_for("three seeds past step 50", Duration::from_secs(180), |b| compared(b).filter(|s| *s >= 55));
    let steps = browser.run_steps();
    assert!(compared(&browser).unwrap() <= *steps.iter().max().unwrap(), "compared at a step every run reached: {steps:?}");
    assert_eq!(cells(&browser, "results-seeds"), ["1337, 1338, 1339"], "one row for the three seeds");
    for testid in ["results-train", "results-val"] {
        let cell = &cells(&browser, testid)[0];
        let (mean, sd) = cell.split_once(" ± ").unwrap_or_else(|| panic!("{testid}: {cell:?}"));
        let (mean, sd): (f64, f64) = (mean.parse().unwrap(), sd.parse().unwrap());
        assert!(mean > 1.0 && mean < 5.0 && sd > 0.0 && sd < 1.0, "{testid}: {cell:?}");
    }
    let probe = &cells(&browser, "results-probe")[0];
    assert!(probe.contains(" ± "), "{probe:?}");
    let header = browser.eval("return document.querySelector('[data-testid=\"results\"] tr').textContent").as_str().unwrap().to_string();
    assert!(header.ends_with("probe accuracy (chance 25 %)"), "one probe set, one chance level, in the header: {header:?}");
    assert_eq!(browser.text("results-caveat"), None, "one objective: the losses compare");

    // another objective beside them: its own row, and the losses no longer compare
    add_run_with(&browser, "objective", "masked_lm");
    browser.wait_for("a row for the masked LM", Duration::from_secs(120), |b| {
        (b.attribute("results", "data-rows").as_deref() == Some("2")).then_some(())
    });
    let rows = cells(&browser, "results-seeds");
    assert_eq!(rows, ["1337, 1338, 1339", "1337"]);
    let labels = browser.eval("return [...document.querySelectorAll('[data-testid=\"results-row\"] th')].map(e => e.textContent).join('|')");
    assert_eq!(labels, "causal_lm|masked_lm");
    assert!(browser.text("results-caveat").is_some_and(|t| t.contains("different tasks")));

    // the table as Markdown: copied, or (a script's click is no user gesture) shown to copy
    browser.click("results-copy");
    let shown = browser.wait_for("the table copied or shown", Duration::from_secs(10), |b| {
        if b.text("results-copied").is_some() {
            return Some(None);
        }
        b.eval("const e = document.querySelector('[data-testid=\"results-markdown\"]'); return e ? e.value : null").as_str().map(|v| Some(v.to_string()))
    });
    if let Some(md) = shown {
        assert!(md.contains("| run | seeds | training loss | validation loss | probe accuracy (chance 25 %) |"), "{md}");
        assert!(md.contains("\n| causal_lm | 1337, 1338, 1339 | ") && md.contains("\n| masked_lm | 1337 | "), "{md}");
    }

    // a hidden run leaves the table as it leaves the charts
    browser.eval("document.querySelectorAll('[data-testid=\"run-visible\"]')[3].click(); return true");
    browser.wait_for("the masked LM's row gone", Duration::from_secs(10), |b| {
        (b.attribute("results", "data-rows").as_deref() == Some("1")).then_some(())
    });
    assert_eq!(browser.text("results-caveat"), None);

    // finished, the seeds are compared at their last step (200 of 200), where their final
    // validation and snapshot lie, not at their last training reading (step 199)
    browser.wait_for("the seeds finished", Duration::from_secs(240), |b| (b.run_steps()[..3] == [200, 200, 200]).then_some(()));
    browser.wait_for("the table at step 200", Duration::from_secs(10), |b| compared(b).filter(|s| *s == 200));
    assert_eq!(browser.text("error").unwrap_or_default(), "");
}

/// Two runs started at once on WebGPU (the second added while the first run's device is still
/// being set up) share the one device: wgpu initialises once per worker, and a second
/// initialisation used to be refused ("a server is still registered"), which put the whole page
/// on the CPU. Both train past the steps where each captures its step's graph (`engine/src/train/captured_step.rs`).
#[test]
fn two_runs_added_at_once_share_the_webgpu_device() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(true);
    open(&browser, &server, "?preset=tiny&device=gpu&steps=400&snapshot_every=1000");
    browser.click("add-run");
    browser.eval("document.querySelector('[data-testid=\"run-duplicate\"]').click(); return true");
    assert_eq!(run_rows(&browser), 2);
    browser.wait_for("both runs past their capture", Duration::from_secs(300), |b| {
        let s = b.run_steps();
        (s.len() == 2 && s.iter().all(|k| *k >= 10)).then_some(())
    });
    let device = browser.text("device").unwrap();
    assert!(device.starts_with("WebGPU"), "both runs on WebGPU: {device:?}");
    assert_eq!(browser.text("error").unwrap_or_default(), "");
    let p = points(&browser);
    assert!(p.len() == 2 && p.iter().all(|n| *n >= 2), "two loss curves: {p:?}");
}

/// The ready-made comparisons: one starts at once on an idle page; another, chosen while runs
/// train, is offered beside them rather than stopping them.
#[test]
fn an_example_starts_a_comparison_or_is_offered_beside_live_runs() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?device=cpu");
    let labels = |b: &Browser| b.eval("return [...document.querySelectorAll('[data-testid=\"run-select\"]')].map(e => e.textContent).join('|')");
    browser.click("example-0");
    browser.wait_for("GPT and BERT training", Duration::from_secs(300), |b| {
        let s = b.run_steps();
        (s.len() == 2 && s.iter().all(|k| *k >= 1)).then_some(())
    });
    assert_eq!(labels(&browser), "causal_lm|masked_lm");
    // their losses score different tasks, and the chart says so
    assert!(browser.text("loss-caveat").is_some_and(|t| t.contains("compare each curve's shape")));
    browser.click("example-4");
    let offer = browser.wait_for("the seeds example offered", Duration::from_secs(10), |b| b.text("linked-runs"));
    assert!(offer.contains("The example “How much is the seed?” holds 3 runs side by side: seed 1 · seed 2 · seed 3"), "{offer}");
    assert_eq!(run_rows(&browser), 2, "the live runs go on");
    browser.click("start-linked");
    browser.wait_for("three seeds training", Duration::from_secs(300), |b| {
        let s = b.run_steps();
        (s.len() == 3 && s.iter().all(|k| *k >= 1)).then_some(())
    });
    assert_eq!(labels(&browser), "seed 1|seed 2|seed 3");
    // "copy link" copies the address that holds them, or, where the clipboard is refused
    // (a script's click is no user gesture), shows it to copy by hand
    browser.click("copy-link");
    let address = browser.eval("return location.href").as_str().unwrap().to_string();
    assert_eq!(address.matches("run=").count(), 3, "the address holds the three runs: {address}");
    let shown = browser.wait_for("the link copied or shown", Duration::from_secs(10), |b| {
        if b.text("link-copied").is_some() {
            return Some(None);
        }
        b.eval("const e = document.querySelector('[data-testid=\"link-to-copy\"]'); return e ? e.value : null").as_str().map(|v| Some(v.to_string()))
    });
    if let Some(shown) = shown {
        assert_eq!(shown, address);
    }
    assert_eq!(browser.text("loss-caveat"), None, "one objective: its losses compare");
    assert_eq!(browser.text("error").unwrap_or_default(), "");
}

/// The size line: layers, heads, width, context and batch are set on the page (mirrored into
/// the address, with the parameters they come to), a size the model cannot have is refused
/// with the reason and the field keeps its value, and two runs that differ only in depth train
/// side by side, each labelled by its size in the run list and the results table.
#[test]
fn runs_of_two_sizes_chosen_on_the_page_are_told_apart() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=30");
    let field = |b: &Browser, testid: &str| b.eval(&format!("return document.querySelector('[data-testid=\"{testid}\"]').value"));
    let control_error = |b: &Browser| b.text("objective-error").filter(|e| !e.is_empty());
    let search = |b: &Browser| b.eval("return location.search").as_str().unwrap_or("").to_string();
    let tiny = browser.text("model-size").unwrap_or_default();
    assert!(tiny.contains(" k parameters · 256 tokens a step · about "), "{tiny}");

    // 3 heads do not divide a width of 32: refused, with the reason, and the field shows 2 again
    browser.set_value("heads", "3");
    let e = browser.wait_for("the heads message", Duration::from_secs(10), control_error);
    assert_eq!(e, "width 32 is not divisible by 3 heads");
    assert_eq!(field(&browser, "heads"), "2");
    browser.set_value("layers", "1.5");
    let e = browser.wait_for("the layers message", Duration::from_secs(10), |b| control_error(b).filter(|e| e.contains("layers")));
    assert!(e.contains("1.5"), "{e}");
    assert_eq!(field(&browser, "layers"), "2");

    // width 48 first, then 3 heads: both taken, into the address and the size line
    browser.set_value("width", "48");
    browser.set_value("heads", "3");
    browser.wait_for("the new size in the address", Duration::from_secs(10), |b| {
        let q = search(b);
        (q.contains("width=48") && q.contains("heads=3")).then_some(())
    });
    assert_eq!(control_error(&browser), None);
    let wider = browser.text("model-size").unwrap_or_default();
    assert!(wider != tiny && wider.contains(" parameters · 256 tokens a step"), "{wider}");
    browser.click("start");
    browser.wait_for("the first run to finish", Duration::from_secs(120), |b| (b.text("state")? == "finished").then_some(()));

    // one layer less, added beside it
    browser.set_value("layers", "1");
    browser.wait_for("one layer in the address", Duration::from_secs(10), |b| search(b).contains("layers=1").then_some(()));
    browser.click("add-run");
    browser.wait_for("both runs to finish", Duration::from_secs(120), |b| {
        let states = b.eval("return [...document.querySelectorAll('[data-testid=\"run-state\"]')].map(e => e.textContent).join(',')");
        (states.as_str() == Some("finished,finished")).then_some(())
    });
    assert_eq!(run_rows(&browser), 2);
    let labels = browser.eval("return [...document.querySelectorAll('[data-testid=\"run-select\"]')].map(e => e.textContent).join(',')");
    assert_eq!(labels.as_str(), Some("2L×48,1L×48"));
    let rows = browser.eval("return [...document.querySelectorAll('[data-testid=\"results-row\"]')].map(e => e.cells[0].textContent).join(',')");
    assert_eq!(rows.as_str(), Some("2L×48,1L×48"));
    // the table says what each model weighs, as the size line did before it trained
    let params = browser.eval("return [...document.querySelectorAll('[data-testid=\"results-params\"]')].map(e => e.textContent)");
    let params: Vec<&str> = params.as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert_eq!(params.len(), 2, "{params:?}");
    assert!(params.iter().all(|p| p.ends_with(" k")) && params[0] != params[1], "{params:?}");
    assert!(browser.text("model-size").unwrap_or_default().starts_with(params[1]), "the size line shows the shown experiment's: {params:?}");

    // the preset shows as resized; chosen again it restores its size, and keeps the
    // architecture chosen apart from it
    assert_eq!(field(&browser, "preset"), "resized");
    assert!(browser.text("preset").unwrap_or_default().contains("tiny, resized"));
    browser.set_value("arch", "encoder_decoder");
    browser.set_value("preset", "tiny");
    browser.wait_for("the preset's size again", Duration::from_secs(10), |b| (field(b, "layers") == "2" && field(b, "width") == "32").then_some(()));
    assert_eq!((field(&browser, "preset"), field(&browser, "heads"), field(&browser, "arch")), ("tiny".into(), "2".into(), "encoder_decoder".into()));
    let encoder_decoder = browser.text("model-size").unwrap_or_default();
    assert!(encoder_decoder != tiny && encoder_decoder.contains(" 256 tokens a step"), "the encoder's weights counted too: {encoder_decoder}");
    assert_eq!(browser.text("error").unwrap_or_default(), "");
}
