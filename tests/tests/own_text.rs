//! A text of one's own in a real headless Chromium (CPU, flex in wasm): odd files are refused
//! with the reason and change nothing; a plain-text file in another script, without a single
//! new line or English letter, trains, samples and is snapshotted; and a link to a run on it,
//! opened where the file is not, asks for the file instead of failing; and a fresh worker (after
//! a failed run and Reset) is sent the text again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use objlab_e2e::{Browser, StaticServer, dist_dir};

fn open(browser: &Browser, server: &StaticServer, query: &str) {
    browser.open(&format!("http://127.0.0.1:{}/{query}", server.port));
    browser.wait_for("the page to load", Duration::from_secs(60), |b| b.text("start").map(|_| ()));
}

fn selected_corpus(browser: &Browser) -> String {
    browser.eval("return document.querySelector('[data-testid=\"corpus\"]').value").as_str().unwrap_or_default().to_string()
}

/// The page's word on the latest file: Ok(what it holds) or Err(why it was refused).
fn word_on_file(browser: &Browser) -> Option<Result<String, String>> {
    if let Some(e) = browser.text("corpus-error") {
        return Some(Err(e));
    }
    browser.text("corpus-info").filter(|t| !t.starts_with("reading")).map(Ok)
}

/// Chooses `path` and waits for the page's word on it (each file here has its own name, so the
/// word on it differs from the one before).
fn choose(browser: &Browser, path: &Path) -> Result<String, String> {
    let before = word_on_file(browser);
    browser.choose_file("corpus-file", path);
    browser.wait_for("the page's word on the file", Duration::from_secs(30), |b| word_on_file(b).filter(|w| Some(w) != before.as_ref()))
}

/// Words of Greek letters separated by spaces, no new line: a text that shares no character
/// with tiny shakespeare's probe letters or its sample prompt.
fn greek_text(chars: usize) -> String {
    let letters: Vec<char> = "αβγδεζηθικλμνξοπρστυφχψω".chars().collect();
    let mut state = 12345u64;
    let mut text = String::new();
    while text.chars().count() < chars {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = 2 + (state >> 60) as usize % 5;
        for k in 0..len {
            text.push(letters[((state >> (8 * k + 8)) & 0xff) as usize % 8 + (len % 3) * 8]);
        }
        text.push(' ');
    }
    text
}

#[test]
fn a_text_file_of_ones_own_trains_and_odd_files_are_refused() {
    let dir: PathBuf = std::env::temp_dir().join(format!("objlab-own-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=100000&snapshot_every=20&sample_every=20");
    assert_eq!(selected_corpus(&browser), "tiny-shakespeare");

    // Odd files: each refused with its reason; the experiment keeps its corpus.
    let binary: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let odd: [(&str, Vec<u8>, &str); 4] = [
        ("empty.txt", Vec::new(), "too short to train on (0 characters"),
        ("image.png", binary, "not UTF-8 text"),
        ("zeros.txt", [b"text".as_slice(), &[0u8; 300]].concat(), "looks binary"),
        ("same.txt", vec![b'z'; 1000], "repeats one character"),
    ];
    for (name, bytes, reason) in odd {
        let said = choose(&browser, &file(name, &bytes)).expect_err(name);
        assert!(said.contains(reason) && said.contains("not used"), "{name}: {said}");
        assert_eq!(selected_corpus(&browser), "tiny-shakespeare", "{name} changed the corpus");
    }
    assert_eq!(browser.text("error").unwrap_or_default(), "", "odd files are no page error");

    // A good file: chosen, described, and it trains.
    let text = greek_text(6000);
    let said = choose(&browser, &file("greek words.txt", text.as_bytes())).expect("the Greek text is taken");
    assert!(said.contains("greek_words.txt") && said.contains("characters"), "{said}");
    let corpus = selected_corpus(&browser);
    assert!(corpus.starts_with("file:greek_words.txt:"), "the experiment trains on it: {corpus}");
    browser.click("start");
    browser.wait_for("30 steps on the Greek text", Duration::from_secs(300), |b| (b.step() >= 30).then_some(()));
    let first = browser.attribute("train-loss", "data-first").and_then(|t| t.parse::<f64>().ok()).expect("a first loss");
    // A sample (started without a new line: the text has none) in the text's own letters, and
    // a snapshot whose probe walks its letters.
    let sample = browser.wait_for("a sample", Duration::from_secs(120), |b| b.text("sample").filter(|s| !s.trim().is_empty()));
    assert!(sample.chars().all(|c| text.contains(c)), "the sample is written in the file's characters: {sample:?}");
    browser.wait_for("a snapshot", Duration::from_secs(120), |b| b.attribute("projection", "data-step").filter(|s| s != "0"));
    let last = browser.text("train-loss").and_then(|t| t.trim().parse::<f64>().ok()).expect("a loss");
    assert!(last < first, "the loss falls on the Greek text: {first} → {last}");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error while training on it");

    // A run on tiny shakespeare beside it: told apart by its text, and not compared by CKA
    // (the two read different probe sequences).
    browser.set_value("corpus", "tiny-shakespeare");
    browser.click("add-run");
    let labels = browser.wait_for("two labelled runs", Duration::from_secs(60), |b| {
        let v = b.eval("return [...document.querySelectorAll('[data-testid=\"run-select\"]')].map(e => e.textContent)");
        let labels: Vec<String> = v.as_array()?.iter().filter_map(|s| s.as_str().map(str::to_string)).collect();
        (labels.len() == 2).then_some(labels)
    });
    assert!(labels[0].contains("greek_words.txt") && labels[1].contains("tiny-shakespeare"), "{labels:?}");
    let cells = browser.wait_for("a CKA matrix of both runs", Duration::from_secs(120), |b| {
        let v = b.eval("return [...document.querySelectorAll('[data-testid=\"cka-cell\"]')].map(e => e.textContent)");
        let cells: Vec<String> = v.as_array()?.iter().filter_map(|s| s.as_str().map(str::to_string)).collect();
        (cells.len() == 4).then_some(cells)
    });
    assert_eq!((cells[1].as_str(), cells[2].as_str()), ("—", "—"), "runs on different texts are not compared: {cells:?}");
    assert_eq!((cells[0].as_str(), cells[3].as_str()), ("1.00", "1.00"), "{cells:?}");

    // The attention maps of the Greek run read the start of its own text, not Shakespeare.
    browser.set_value("attention-run", "1");
    let shown_text = browser.eval("return document.querySelector('[data-testid=\"attention-text\"]').value");
    let opening: String = text.trim().chars().take(20).collect();
    assert_eq!(shown_text.as_str(), Some(opening.as_str()), "the maps read the file's own opening");
    browser.click("attention-show");
    browser.wait_for("the Greek run's attention maps", Duration::from_secs(60), |b| b.attribute("attention-map", "data-run").filter(|r| r == "1"));
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error from the maps");

    // (the address of these two runs, opened again at the end)
    let address = browser.eval("return location.href").as_str().unwrap().to_string();
    assert!(address.contains("corpus=file:greek_words.txt:"), "{address}");

    // A fresh worker (Reset after a failed run starts one) is sent the text again: a diverging
    // run on it fails, Reset, and a run on it trains in the new worker.
    browser.set_value("corpus", &corpus);
    browser.set_value("nan-at", "5");
    browser.click("reset");
    browser.click("start");
    browser.wait_for("the diverging run to fail", Duration::from_secs(60), |b| b.text("run-state").filter(|s| s.starts_with("stopped: failed")));
    browser.click("reset");
    browser.set_value("nan-at", "0");
    browser.click("start");
    browser.wait_for("a run on the Greek text in the fresh worker", Duration::from_secs(120), |b| (b.step() >= 10).then_some(()));
    assert_eq!(browser.text("run-failed"), None, "the fresh worker holds the text: {:?}", browser.text("error"));
    // another preset sizes the model anew and keeps the text (a change that waits while the
    // run trains)
    browser.set_value("preset", "baby-gpt");
    browser.wait_for("the pending change", Duration::from_secs(10), |b| b.text("confirm-reset"));
    assert_eq!(selected_corpus(&browser), corpus, "a preset keeps the text one chose");

    // The address names the file, not its text: opened where the file is not (a fresh page),
    // the link's run on it is not started and the page asks for the file; the other run starts.
    browser.open(&address);
    browser.wait_for("the link's runs offered", Duration::from_secs(60), |b| b.text("start-linked").map(|_| ()));
    browser.click("start-linked");
    let error = browser.wait_for("the page to ask for the file", Duration::from_secs(30), |b| b.text("error").filter(|e| !e.is_empty()));
    assert!(error.contains("greek_words.txt") && error.contains("choose the file again"), "{error}");
    browser.wait_for("the link's other run to train", Duration::from_secs(60), |b| b.run_steps().first().is_some_and(|s| *s >= 5).then_some(()));
    assert_eq!(browser.run_steps().len(), 1, "only the run on tiny shakespeare started");
    std::fs::remove_dir_all(&dir).ok();
}

/// The number of elements matching `selector`.
fn count(browser: &Browser, selector: &str) -> usize {
    browser.eval(&format!("return document.querySelectorAll({selector:?}).length")).as_u64().unwrap_or(0) as usize
}

/// The built-in digits, chosen under Text: said what they are and how much of an image the
/// context holds; a run draws its samples and its example as 8×8 images, its probe asks which
/// digit a held-out image shows, its attention maps show where a pixel of a held-out 3 looks, a
/// question continues the 3 as an image; and the
/// example "GPT against BERT on pixels" starts both runs on the digits, the masked one
/// filling in the 3's hidden pixels.
#[test]
fn the_digits_train_as_images_and_a_gpt_and_a_bert_run_are_asked_a_three() {
    let server = StaticServer::start(dist_dir());
    let browser = Browser::start(false);
    open(&browser, &server, "?preset=tiny&device=cpu&steps=100000&snapshot_every=20&sample_every=20");
    assert_eq!(browser.text("digits-note"), None, "no word on the digits while the text is Shakespeare");
    browser.set_value("corpus", "digits");
    let note = browser.wait_for("the word on the digits", Duration::from_secs(10), |b| b.text("digits-note"));
    assert!(note.contains("1,797 handwritten digits") && note.contains("a context of 32 holds an image's first 31 pixels"), "{note}");
    browser.set_value("context", "65");
    let note = browser.wait_for("the word on context 65", Duration::from_secs(10), |b| b.text("digits-note").filter(|n| n.contains("holds a whole image")));
    assert!(note.contains("a context of 65"), "{note}");
    assert!(browser.text("probe-hint").unwrap_or_default().contains("120 held-out images"), "the probe says what it asks before a run");
    browser.click("start");

    // the sample and the example, drawn as images
    browser.wait_for("a sample drawn as images", Duration::from_secs(180), |b| (count(b, "[data-testid=sample-images] [data-testid=pixel-image]") > 0).then_some(()));
    assert_eq!(browser.text("sample"), None, "the digits' sample is drawn, not written");
    let first_image = browser.eval("return +document.querySelector('[data-testid=sample-images] [data-testid=pixel-image]').dataset.pixels");
    assert_eq!(first_image.as_u64(), Some(64), "the first sampled image is whole (a sample starts where an image starts)");
    let seen = browser.eval("return [...document.querySelectorAll('[data-testid=seen-image]')].map(e => e.getAttribute('aria-label'))");
    let seen: Vec<&str> = seen.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(seen.len(), 3, "what it reads, what it is scored on, its answers: {seen:?}");
    assert!(seen[0].starts_with("what the model reads: an 8×8 image, 64 of 64 pixels"), "a whole image at context 65: {seen:?}");

    // the probe reads the digit: ten classes, chance 10 %
    browser.wait_for("a snapshot after training", Duration::from_secs(180), |b| b.attribute("projection", "data-step").filter(|s| s != "0"));
    let probe = browser.attribute("probe-chart", "aria-label").unwrap_or_default();
    assert!(probe.contains("(chance 10%)"), "{probe}");
    // what the probe reads, digit by digit: each of the 60 held-out images counted once
    let grid = browser.eval("const t = document.querySelector('[data-testid=probe-confusion]'); return t ? [+t.dataset.classes, [...t.querySelectorAll('td')].reduce((n, c) => n + (+c.textContent || 0), 0), t.querySelectorAll('td').length] : null");
    assert_eq!(grid, serde_json::json!([10, 60, 100]), "a 10 × 10 grid of the held-out images");
    assert!(browser.text("probe-hint").unwrap_or_default().contains("which digit is it?"));

    // the attention maps of a held-out 3: under each head, where one of its pixels looks (at
    // first the middle one; then a pixel clicked); a causal model's pixel looks at none after it
    browser.click("attention-show");
    let label = browser.wait_for("each head's image of where a pixel looks", Duration::from_secs(60), |b| {
        (count(b, "[data-testid=pixel-attention]") == 4).then(|| b.attribute("pixel-attention", "aria-label")).flatten()
    });
    assert_eq!(label, "where pixel 37 looks: an 8×8 image, 64 of 64 pixels", "the middle pixel at first");
    browser.eval("document.querySelector('[data-testid=pixel-attention]').children[9].click(); return true");
    let after = browser.wait_for("the clicked pixel in every head", Duration::from_secs(10), |b| {
        let v = b.eval("return [...document.querySelectorAll('[data-testid=pixel-attention]')].map(e => e.getAttribute('aria-label'))");
        let labels: Vec<String> = v.as_array()?.iter().filter_map(|s| s.as_str().map(str::to_string)).collect();
        labels.iter().all(|l| l.starts_with("where pixel 10 looks")).then(|| {
            b.eval("return [...document.querySelector('[data-testid=pixel-attention]').children].slice(10).map(c => c.title)")
        })
    });
    assert!(after.as_array().unwrap().iter().all(|t| t.as_str() == Some("0.00")), "no weight on the pixels after it: {after}");
    // the image read outlines the chosen pixel, and a click on it chooses another
    let outlined = "return [...document.querySelector('[data-testid=attention-image]').children].findIndex(c => c.classList.contains('query'))";
    assert_eq!(browser.eval(outlined).as_i64(), Some(9), "pixel 10 outlined on the image read");
    browser.eval("document.querySelector('[data-testid=attention-image]').children[20].click(); return true");
    browser.wait_for("the pixel clicked on the image read", Duration::from_secs(10), |b| {
        (b.attribute("pixel-attention", "aria-label")?.starts_with("where pixel 21 looks") && b.eval(outlined).as_i64() == Some(20)).then_some(())
    });
    // the keyboard moves it: a pixel right, then a row down
    let key = |testid: &str, key: &str| browser.eval(&format!(
        "const e = document.querySelector('[data-testid={testid}]'); e.focus(); e.dispatchEvent(new KeyboardEvent('keydown', {{key: '{key}', bubbles: true}})); return document.activeElement === e"
    ));
    assert_eq!(key("attention-keys", "ArrowRight"), serde_json::json!(true));
    assert_eq!(key("attention-keys", "ArrowDown"), serde_json::json!(true), "the focus stays while the images are drawn anew");
    browser.wait_for("the pixel moved by the keys", Duration::from_secs(10), |b| {
        (b.attribute("pixel-attention", "aria-label")?.starts_with("where pixel 30 looks") && b.eval(outlined).as_i64() == Some(29)).then_some(())
    });
    let focused = "return document.activeElement ? document.activeElement.dataset.testid : null";
    assert_eq!(browser.eval(focused), serde_json::json!("attention-keys"), "the keys' element kept the focus as the images were drawn anew");

    // asked: the top half of a held-out 3, continued and drawn
    let line = browser.eval("return document.querySelector('[data-testid=\"ask-text\"]').value").as_str().unwrap_or_default().to_string();
    assert!(line.starts_with('⏎') && line.chars().count() == 33, "the top half of a 3 after its new line: {line:?}");
    browser.click("ask");
    browser.wait_for("the continuation drawn", Duration::from_secs(60), |b| (count(b, "[data-testid=ask-images] [data-testid=pixel-image]") > 0).then_some(()));
    let drawn = browser.eval("return +document.querySelector('[data-testid=ask-images] [data-testid=pixel-image]').dataset.pixels");
    assert_eq!(drawn.as_u64(), Some(64), "32 pixels asked and the rest written");
    assert_eq!(count(&browser, "[data-testid=ask-images] .px.given"), 32, "the 32 pixels it was given drawn faintly");
    assert_eq!(browser.text("error").unwrap_or_default(), "", "no error on the digits");

    // the example: GPT and BERT on pixels, both asked the 3 with four pixels hidden
    browser.click("reset");
    browser.click("example-6");
    browser.wait_for("both runs training", Duration::from_secs(120), |b| {
        let steps = b.run_steps();
        (steps.len() == 2 && steps.iter().all(|s| *s >= 3)).then_some(())
    });
    let address = browser.eval("return decodeURIComponent(location.search)").as_str().unwrap_or_default().to_string();
    let runs: Vec<&str> = address.split("&run=").skip(1).collect();
    assert!(runs.len() == 2 && runs.iter().all(|r| r.contains("corpus=digits")), "both runs on the digits: {address}");
    browser.set_value("ask-run", "every");
    let line = browser.eval("return document.querySelector('[data-testid=\"ask-text\"]').value").as_str().unwrap_or_default().to_string();
    assert_eq!(line.matches('_').count(), 4, "four pixels hidden for the masked run: {line:?}");
    // the line drawn as an image: a click hides one more pixel (the 41st, on the 3's lower bow)
    assert_eq!(browser.attribute("ask-line-image", "data-pixels").as_deref(), Some("59"), "a context of 64: 63 pixels, 4 hidden");
    browser.eval("document.querySelector('[data-testid=ask-line-image]').children[40].click(); return true");
    let line = browser.wait_for("a fifth pixel hidden", Duration::from_secs(10), |b| {
        let v = b.eval("return document.querySelector('[data-testid=\"ask-text\"]').value").as_str().unwrap_or_default().to_string();
        (v.matches('_').count() == 5).then_some(v)
    });
    assert_eq!(line.chars().nth(41), Some('_'), "the 41st pixel, after the new line: {line:?}");
    browser.click("ask");
    let summary = browser.wait_for("the masked run's answer", Duration::from_secs(60), |b| b.text("ask-summary"));
    assert_eq!(summary.matches("% sure").count(), 5, "a pixel for each of the five: {summary}");
    // read back as an image: the five it filled in outlined
    let filled = browser.eval("const i = document.querySelector('[data-testid=ask-answer-images] [data-testid=pixel-image]'); return i ? [+i.dataset.pixels, i.querySelectorAll('.filled').length] : null");
    assert_eq!(filled, serde_json::json!([63, 5]), "the 3 as the model reads it (63 pixels), five filled in");
    // a quick choice: the bottom half hidden (the 41st pixel with it), the top half shown
    browser.click("ask-hide-0");
    let line = browser.wait_for("the bottom half hidden", Duration::from_secs(10), |b| {
        let v = b.eval("return document.querySelector('[data-testid=\"ask-text\"]').value").as_str().unwrap_or_default().to_string();
        v.ends_with("__").then_some(v)
    });
    assert_eq!(line.matches('_').count(), 31, "pixels 33 to 63: {line:?}");
    assert_eq!(browser.attribute("ask-line-image", "data-pixels").as_deref(), Some("32"), "the top half shown, its four hidden ones too");
    // the keyboard: a row down from the first pixel, Enter hides the ninth
    assert_eq!(key("ask-keys", "ArrowDown"), serde_json::json!(true));
    assert_eq!(key("ask-keys", "Enter"), serde_json::json!(true), "the focus stays while the line's image is drawn anew");
    let line = browser.wait_for("the ninth pixel hidden by the keyboard", Duration::from_secs(10), |b| {
        let v = b.eval("return document.querySelector('[data-testid=\"ask-text\"]').value").as_str().unwrap_or_default().to_string();
        (v.matches('_').count() == 32).then_some(v)
    });
    assert_eq!(line.chars().nth(9), Some('_'), "pixel 9, after the new line: {line:?}");
    assert_eq!(browser.eval(focused), serde_json::json!("ask-keys"), "the keys' element kept the focus as the line's image was drawn anew");
    browser.wait_for("the causal run's continuation drawn", Duration::from_secs(60), |b| (count(b, "[data-testid=ask-images] [data-testid=pixel-image]") > 0).then_some(()));
    assert_eq!(browser.text("error").unwrap_or_default(), "");
}
