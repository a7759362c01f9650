//! Runs kept in the browser across a reload (a real headless Chromium, CPU): a finished run and
//! a diverged one come back with their curves, state, failure, snapshots, sample and CKA when the
//! visitor asks for them; a kept run can be duplicated to train again; "Forget them" forgets; and whatever
//! else sits in the browser's storage is ignored.

use std::time::Duration;

use objlab_e2e::{Browser, StaticServer, dist_dir};

fn open(browser: &Browser, server: &StaticServer, query: &str) {
    browser.open(&format!("http://127.0.0.1:{}/{query}", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("add-run").map(|_| ()));
    // the offer of kept runs is made as the page starts
    std::thread::sleep(Duration::from_millis(500));
}

fn texts(browser: &Browser, testid: &str) -> Vec<String> {
    let v = browser.eval(&format!("return [...document.querySelectorAll('[data-testid=\"{testid}\"]')].map(e => e.textContent)"));
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(|s| s.trim().to_string())).collect()).unwrap_or_default()
}

/// Training points per run, as the loss chart reports them.
fn points(browser: &Browser) -> Vec<usize> {
    browser.attribute("loss-chart", "data-points").unwrap_or_default().split(',').filter_map(|s| s.parse().ok()).collect()
}

#[test]
fn runs_are_kept_across_a_reload_until_forgotten() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    let query = "?preset=tiny&device=cpu&steps=60";
    open(&browser, &server, query);
    assert_eq!(browser.text("saved-runs"), None, "a fresh browser keeps nothing");

    // A run that finishes and one that diverges.
    browser.click("start");
    browser.set_value("nan-at", "10");
    browser.click("add-run");
    browser.wait_for("both runs to end", Duration::from_secs(300), |b| {
        let states = texts(b, "run-state");
        (states.len() == 2 && states[0] == "finished" && states[1].starts_with("stopped: failed")).then_some(())
    });
    // its last snapshot (taken after its last step) is in before the page goes
    browser.wait_for("the finished run's last snapshot", Duration::from_secs(60), |b| {
        let steps = b.eval("return [...document.querySelectorAll('[data-testid=\"projection\"]')].map(e => e.dataset.step)");
        steps.as_array()?.iter().any(|s| s.as_str() == Some("60")).then_some(())
    });
    let before = points(&browser);
    let cka_before = texts(&browser, "cka-cell");
    assert_eq!(cka_before.len(), 4, "the two runs compared: {cka_before:?}");

    // Reload: the page offers them, and shows them as they were.
    let address = browser.eval("return location.href").as_str().unwrap().to_string();
    browser.open(&address);
    browser.wait_for("the page to load again", Duration::from_secs(60), |b| b.text("add-run").map(|_| ()));
    let offer = browser.wait_for("the offer of the kept runs", Duration::from_secs(10), |b| b.text("saved-runs"));
    assert!(browser.text("linked-runs").is_some(), "the address offers to train them again too");
    assert!(offer.contains("2 runs' curves") && offer.contains("last visit"), "{offer}");
    assert!(texts(&browser, "run-row").is_empty(), "nothing is shown unasked");
    browser.click("show-saved");
    let states = texts(&browser, "run-state");
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states[0].starts_with("finished") && states[0].ends_with("(last visit)"), "{states:?}");
    assert!(states[1].starts_with("stopped: failed"), "{states:?}");
    assert_eq!(texts(&browser, "run-failed").len(), 1, "the diverged run keeps its failure");
    assert_eq!(texts(&browser, "run-step")[0], "60 / 60");
    assert_eq!(browser.text("lr").as_deref(), Some("—"), "a kept run keeps no learning rate");
    let after = points(&browser);
    assert_eq!(after[0], before[0], "the finished run's curve comes back whole");
    assert!(after[1] >= 5, "the diverged run's curve up to its divergence: {after:?}");
    assert_eq!(browser.text("saved-runs"), None, "the offer is taken");
    assert_eq!(browser.text("linked-runs"), None, "the address's runs are these: no second offer of them");
    assert_eq!(browser.text("error").unwrap_or_default(), "");
    // its representation snapshots and its last sample come back too
    let steps = browser.eval("return [...document.querySelectorAll('[data-testid=\"projection\"]')].map(e => e.dataset.step)");
    assert!(steps.as_array().is_some_and(|a| a.iter().any(|s| s.as_str() == Some("60"))), "the finished run's last snapshot: {steps}");
    assert!(browser.text("sample").is_some_and(|t| !t.trim().is_empty()), "its last sample");
    assert_eq!(texts(&browser, "cka-cell"), cka_before, "and their comparison");
    // its weights were not kept: no attention maps to read, and the page says why
    assert!(browser.text("attention-kept").is_some_and(|t| t.contains("train it again")));
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"attention-show\"]').disabled"), serde_json::Value::Bool(true));
    assert!(browser.text("ask-kept").is_some_and(|t| t.contains("train it again")));
    assert_eq!(browser.eval("return document.querySelector('[data-testid=\"ask\"]').disabled"), serde_json::Value::Bool(true));

    // A kept run duplicated trains again (its weights were not kept; the duplicate starts anew).
    browser.eval("document.querySelector('[data-testid=\"run-duplicate\"]').click(); return true");
    browser.wait_for("the duplicate to finish", Duration::from_secs(300), |b| (texts(b, "run-state").get(2).map(String::as_str) == Some("finished")).then_some(()));
    assert_eq!(browser.text("error").unwrap_or_default(), "");

    // "train again" trains a kept run anew in its place: same experiment, same seed, so the
    // same curve, and weights this time
    let kept_curve = points(&browser)[1];
    browser.eval("document.querySelectorAll('[data-testid=\"run-retrain\"]')[1].click(); return true");
    let states = browser.wait_for("the diverged run trained again in its place, failing the same way", Duration::from_secs(120), |b| {
        let states = texts(b, "run-state");
        (states.len() == 3 && states[1].starts_with("stopped: failed") && !states[1].contains("last visit")).then_some(states)
    });
    assert!(states[0].ends_with("(last visit)") && states[2] == "finished", "{states:?}");
    let again = points(&browser)[1];
    // (the kept curve left out the NaN loss that stopped it; the new one may still hold it)
    assert!(again == kept_curve || again == kept_curve + 1, "the same seed, the same curve up to its divergence: {again} against {kept_curve}");

    // Kept again with the duplicate; "Forget them" forgets.
    browser.open(&address);
    let offer = browser.wait_for("the offer of three runs", Duration::from_secs(60), |b| b.text("saved-runs"));
    assert!(offer.contains("3 runs' curves"), "{offer}");
    assert_eq!(texts(&browser, "run-row").len(), 0);
    browser.click("forget-saved");
    open(&browser, &server, query);
    assert_eq!(browser.text("saved-runs"), None, "forgotten");

    // Something else under the page's key (a hand edit, another version) is ignored quietly.
    for odd in ["{\"bad", "{\"version\":1,\"saved_at\":0,\"runs\":[{\"query\":\"preset=huge\"}]}", "null"] {
        browser.eval(&format!("localStorage.setItem('objlab.saved-runs', {odd:?}); return true"));
        open(&browser, &server, query);
        assert_eq!(browser.text("saved-runs"), None, "{odd}");
        assert_eq!(browser.text("error").unwrap_or_default(), "", "{odd}");
    }
}
