//! The `objlab` command as a user runs it: JSON summaries, and clear errors for bad input.

use std::process::{Command, Output};

fn objlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_objlab")).args(args).output().expect("objlab runs")
}

fn last_json_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

#[test]
fn train_ends_with_a_json_summary() {
    let out = objlab(&["train", "--preset", "tiny", "--steps", "12", "--device", "cpu", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = last_json_line(&out);
    assert_eq!(v["objective"], "causal_lm");
    let (first, last) = (v["first_loss"].as_f64().unwrap(), v["last_loss"].as_f64().unwrap());
    assert!(first.is_finite() && last < first, "{v}");
    assert!(v["val_loss"].as_f64().unwrap().is_finite());
    assert!(v["steps_per_s"].as_f64().unwrap() > 0.0);
    // --csv: the curves as the page's "download CSV" writes them
    let csv = std::env::temp_dir().join(format!("objlab-train-{}.csv", std::process::id()));
    let out = objlab(&["train", "--preset", "tiny", "--steps", "12", "--json", "--csv", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = std::fs::read_to_string(&csv).unwrap();
    let _ = std::fs::remove_file(&csv);
    assert!(table.starts_with("run,label,split,step,loss\n1,causal_lm,train,0,") && table.contains("\n1,causal_lm,validation,12,"), "{table}");
    assert_eq!(table.lines().count(), 1 + 12 + 1, "{table}");
}

/// The built-in digits: a link of GPT and BERT on pixels (the page's example, smaller)
/// trains natively, and its probe asks which of ten digits a held-out image shows.
#[test]
fn a_link_on_the_digits_trains_and_probes_ten_digits() {
    let link = "?corpus=digits&run=preset%3Dtiny%26corpus%3Ddigits%26context%3D65%26steps%3D15\
                &run=preset%3Dtiny%26corpus%3Ddigits%26context%3D65%26steps%3D15%26objective%3Dmasked_lm";
    let out = objlab(&["train", "--link", link, "--device", "cpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("probe accuracy (chance 10 %)"), "{text}");
    assert!(text.contains("| causal_lm |") && text.contains("| masked_lm |"), "{text}");
}

/// A causal run on the digits prints its sample as images: 8 pixels a row (each doubled to
/// look square), images side by side, not as lines of 64 pixels.
#[test]
fn a_run_on_the_digits_prints_its_sample_as_images() {
    let out = objlab(&["train", "--preset", "tiny", "--steps", "3", "--device", "cpu", "--set", "corpus=digits", "--set", "context=65"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let pixel_rows: Vec<&str> = text.lines().filter(|l| !l.is_empty() && l.chars().all(|c| c == ' ' || objlab_engine::digits::PALETTE.contains(&c))).collect();
    assert!(!pixel_rows.is_empty(), "{text}");
    for row in &pixel_rows {
        let pixels: Vec<char> = row.chars().filter(|c| *c != ' ').collect();
        assert!(pixels.chunks(2).all(|p| p.len() == 2 && p[0] == p[1]), "each pixel doubled: {row:?} in {text}");
        assert!(row.split("  ").all(|image_row| image_row.chars().count() <= 2 * objlab_engine::digits::SIDE), "at most 8 pixels an image row: {row:?}");
    }
}

#[test]
fn any_objective_or_mixture_trains_with_parameters() {
    let out = objlab(&[
        "train", "--preset", "tiny", "--steps", "8", "--device", "cpu", "--json",
        "--objective", "masked_lm=0.5,span_corruption=0.5", "--set", "masked_lm.rate=0.3", "--set", "arch=encoder_decoder",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = last_json_line(&out);
    assert_eq!(v["objective"], "masked_lm=0.5:rate=0.3,span_corruption=0.5");
    assert_eq!(v["arch"], "encoder_decoder");
    assert!(v["last_loss"].as_f64().unwrap().is_finite());
}

/// A link copied from the page (three runs: two seeds of GPT, one BERT) trains natively into
/// the page's results table: the seeds in one row with their spread, every run read at its
/// last step, and the note that the two objectives' losses score different tasks.
#[test]
fn a_pages_link_trains_into_its_results_table() {
    let link = "http://127.0.0.1:8080/?preset=tiny&run=preset%3Dtiny%26steps%3D20&run=preset%3Dtiny%26steps%3D20%26seed%3D1338\
                &run=preset%3Dtiny%26steps%3D20%26objective%3Dmasked_lm";
    let csv = std::env::temp_dir().join(format!("objlab-link-{}.csv", std::process::id()));
    let out = objlab(&["train", "--link", link, "--device", "cpu", "--json", "--csv", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = last_json_line(&out);
    assert_eq!(v["at"], 20, "{v}");
    // the curves as the page's "download CSV" writes them: runs named as the page names them
    let table = std::fs::read_to_string(&csv).unwrap();
    let _ = std::fs::remove_file(&csv);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "run,label,split,step,loss");
    for (run, label) in [(1, "causal_lm, seed 1337"), (2, "causal_lm, seed 1338"), (3, "masked_lm, seed 1337")] {
        let label = if label.contains(',') { format!("\"{label}\"") } else { label.to_string() };
        let rows = |split: &str| lines.iter().filter(|l| l.starts_with(&format!("{run},{label},{split},"))).count();
        assert_eq!((rows("train"), rows("validation")), (20, 1), "run {run} {label}: {table}");
    }
    assert!(table.contains("\n3,\"masked_lm, seed 1337\",validation,20,"), "{table}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!((rows[0]["label"].as_str(), rows[0]["seeds"].clone()), (Some("causal_lm"), serde_json::json!([1337, 1338])));
    for column in ["train", "val", "probe"] {
        let stat = &rows[0][column];
        assert_eq!((stat["n"].as_u64(), stat["of"].as_u64()), (Some(2), Some(2)), "{column}: {v}");
        assert!(stat["mean"].as_f64().unwrap().is_finite() && stat["sd"].as_f64().unwrap() > 0.0, "{column}: {v}");
    }
    assert_eq!(rows[1]["label"], "masked_lm");
    let md = v["markdown"].as_str().unwrap();
    assert!(md.starts_with("At step 20.") && md.contains("\n| causal_lm | 1337, 1338 | ") && md.contains("score different tasks"), "{md}");
    // `--steps` and `--set` apply to every run of the link
    let out = objlab(&["train", "--link", link, "--steps", "6", "--set", "seed=7", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = last_json_line(&out);
    assert_eq!((v["at"].as_u64(), v["rows"][0]["seeds"].clone()), (Some(6), serde_json::json!([7, 7])), "{v}");
    assert!(!v["markdown"].as_str().unwrap().contains("parameters"), "one size: no parameters column");
    // runs of two sizes: each row with its model's parameters, in the Markdown too
    let sizes = "http://127.0.0.1:8080/?preset=tiny&run=preset%3Dtiny&run=preset%3Dtiny%26layers%3D1";
    let out = objlab(&["train", "--link", sizes, "--steps", "3", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = last_json_line(&out);
    let params: Vec<u64> = v["rows"].as_array().unwrap().iter().map(|r| r["params"].as_u64().unwrap()).collect();
    assert!(params.len() == 2 && params[0] > params[1], "two layers weigh more than one: {v}");
    let md = v["markdown"].as_str().unwrap();
    assert!(md.contains("| run | seeds | parameters |") && md.contains("\n| 2L×32 | 1337 | ") && md.contains(" k | "), "{md}");
}

#[test]
fn list_names_the_presets_with_their_sizes_and_the_objectives() {
    let out = objlab(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("preset    baby-gpt") && text.contains("(0.83 M parameters on tiny-shakespeare)"), "{text}");
    assert!(text.contains("preset    tiny") && text.contains("--set layers=N"), "{text}");
    assert!(text.contains("objective causal_lm"), "{text}");
    assert!(text.contains("corpus    digits") && text.contains("Image GPT") && text.contains("--set corpus=NAME"), "{text}");
}

#[test]
fn objectives_lists_the_registry_with_ranges() {
    let out = objlab(&["objectives"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ["causal_lm", "prefix_lm", "masked_lm", "span_corruption", "ul2_mixture", "random_token_detection", "swapped_lm", "position_prediction", "contrastive", "conditional_training"] {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
    assert!(text.contains("masked_lm.rate") && text.contains("0.01 to 0.9, default 0.15"), "{text}");
    let json = objlab(&["objectives", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 10);
    assert_eq!(v[2]["params"][0]["min"], 0.01);
}

#[test]
fn bench_ends_with_one_json_line() {
    let out = objlab(&["bench", "--preset", "tiny", "--device", "cpu", "--steps", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = last_json_line(&out);
    for key in ["preset", "device", "steps_per_s", "tokens_per_s", "final_train_loss", "val_loss"] {
        assert!(!v[key].is_null(), "{key} missing in {v}");
    }
    assert_eq!(v["preset"], "tiny");
    assert_eq!(v["device"], "cpu");
}

#[test]
fn bad_input_gets_a_clear_error_listing_the_choices() {
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--preset", "huge"], "valid presets: baby-gpt, tiny"),
        (&["train", "--preset", "tiny", "--objective", "gpt"], "valid objectives: causal_lm"),
        (&["train", "--preset", "tiny", "--set", "colour=red"], "valid options:"),
        (&["train", "--preset", "tiny", "--set", "lr=5"], "valid range"),
        (&["train", "--preset", "tiny", "--data", "/nonexistent/corpus.txt"], "cannot read corpus"),
        (&["train", "--device", "quantum"], "possible values: cpu, gpu"),
        (&["train", "--preset", "tiny", "--objective", "masked_lm:rate=0.95"], "valid range is 0.01 to 0.9"),
        (&["train", "--preset", "tiny", "--objective", "causal_lm=0,masked_lm=0"], "all zero"),
        (&["train", "--preset", "tiny", "--set", "masked_lm.rate=0.2"], "has no masked_lm"),
        (&["train", "--preset", "tiny", "--set", "corpus=file:notes.txt:0123abcd"], "(notes.txt): pass that file as --data FILE"),
        (&["train", "--link", "?preset=tiny&run=steps%3D-1"], "the link is not one the page made: run 1 of the link is left out"),
        (&["train", "--link", "?preset=tiny", "--preset", "tiny"], "cannot be used with"),
        (&["train", "--link", "?preset=tiny&corpus=file:notes.txt:0123abcd"], "run 1: this run trains on a text of one's own (notes.txt)"),
    ];
    for (args, expected) in cases {
        let out = objlab(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

#[test]
fn odd_data_files_get_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("objlab-odd-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let short = "ab".repeat(60);
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty.txt", b"", "too short to train on (0 characters"),
        ("binary.bin", &binary, "is not UTF-8 text"),
        ("short.txt", short.as_bytes(), "too short for context"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = objlab(&["train", "--preset", "tiny", "--steps", "2", "--data", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}: expected {expected:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{name} panicked: {stderr}");
        // the file was given: no hint to give one
        assert!(!stderr.contains("pass --data"), "{name}: {stderr}");
        // named by its file name, not by its path mangled into a corpus name
        assert!(stderr.contains(name) && !stderr.contains("_objlab-odd-data"), "{name}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
