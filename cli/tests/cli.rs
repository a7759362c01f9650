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

#[test]
fn objectives_lists_the_registry_with_ranges() {
    let out = objlab(&["objectives"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for id in ["causal_lm", "prefix_lm", "masked_lm", "span_corruption", "ul2_mixture", "random_token_detection", "swapped_lm", "position_prediction", "contrastive", "conditional_training"] {
        assert!(text.contains(id), "{id} missing from:\n{text}");
    }
    assert!(text.contains("masked_lm.rate") && text.contains("0.01 to 0.5, default 0.15"), "{text}");
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
        (&["train", "--preset", "tiny", "--objective", "masked_lm:rate=0.9"], "valid range is 0.01 to 0.5"),
        (&["train", "--preset", "tiny", "--objective", "causal_lm=0,masked_lm=0"], "all zero"),
        (&["train", "--preset", "tiny", "--set", "masked_lm.rate=0.2"], "has no masked_lm"),
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
