//! The tab's matrix products alone, in headless Chromium: `bench/wasm_gemm` (gemm with the
//! lab's relaxed-SIMD kernels, one thread, baby GPT's half-batch shapes) beside the core's
//! 128-bit fused multiply-add peak, in GFLOP/s. It says how close the tab's products run to
//! what 128-bit WebAssembly vectors allow (docs/performance.md, "In the tab").
//!
//! `wasm-gemm-bench [path/to/wasm_gemm.wasm]` (default: the release wasm in `$CARGO_TARGET_DIR`,
//! else in `bench/wasm_gemm/target/`, where cargo puts its own workspace's build), after
//! `cargo build --release --target wasm32-unknown-unknown --manifest-path
//! bench/wasm_gemm/Cargo.toml` from the repository's root (whose `.cargo/config.toml` turns on
//! SIMD128). Prints a table and then every figure as JSON. Its columns, in GFLOP/s and as a share
//! of the 128-bit peak: each product repeated (V8's optimised round, the last of three), timed
//! one at a time ("alone"), and one at a time with the caches flushed before each, as a
//! training step's products mostly find their operands.

use std::path::PathBuf;

use objlab_e2e::{Browser, StaticServer};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("bench/wasm_gemm/target"));
        target.join("wasm32-unknown-unknown/release/wasm_gemm.wasm")
    });
    // the page and the module in one served folder
    let site = std::env::temp_dir().join(format!("wasm-gemm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&site).expect("a temporary folder");
    for page in ["index.html", "measure.js"] {
        std::fs::copy(root.join("bench/wasm_gemm/page").join(page), site.join(page)).expect("bench/wasm_gemm/page");
    }
    if let Err(e) = std::fs::copy(&wasm, site.join("wasm_gemm.wasm")) {
        eprintln!("{}: {e} (build it first: see this program's doc)", wasm.display());
        std::process::exit(2);
    }
    let server = StaticServer::start(site.clone());
    let browser = Browser::start(false);
    browser.open(&format!("http://127.0.0.1:{}/", server.port));
    // WebDriver waits for the promise `measure` returns
    let result = browser.eval("return measure();");
    let _ = std::fs::remove_dir_all(&site);
    // each round: [[name, GFLOP/s], …], the peak first
    let last: Vec<(String, f64)> = result["rounds"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r.as_array())
        .expect("measure() returns rounds")
        .iter()
        .map(|pair| (pair[0].as_str().unwrap_or("?").to_string(), pair[1].as_f64().unwrap_or(f64::NAN)))
        .collect();
    // each product alone: [name, caches flushed, not flushed]
    let single = |name: &str, column: usize| {
        result["single"].as_array().and_then(|s| s.iter().find(|p| p[0].as_str() == Some(name))).and_then(|p| p[column].as_f64())
    };
    let peak = last[0].1;
    let share = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1} {:>3.0} %", 100.0 * v / peak));
    println!("{:<18} {:>14} {:>14} {:>14}", "product", "repeated", "alone", "caches flushed");
    for (name, v) in &last {
        println!("{name:<18} {:>14} {:>14} {:>14}", share(Some(*v)), share(single(name, 2)), share(single(name, 1)));
    }
    println!("{result}");
}
