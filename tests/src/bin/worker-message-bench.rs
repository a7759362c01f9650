//! How long 3.3 MB (a baby-GPT step's gradients) takes from one Web Worker to another in
//! headless Chromium when both exchange at once, as the split step's two workers do
//! (`bench/worker_messages`): the median, 90th percentile, mean and largest transit in ms, through the
//! worker objects and through a MessageChannel. It says how much of the split step's waiting is
//! the browser's messaging (docs/performance.md, "In the tab").
//!
//! `cargo run --release -p objlab-e2e --bin worker-message-bench`

use std::path::PathBuf;

use objlab_e2e::{Browser, StaticServer};

fn main() {
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/worker_messages");
    let server = StaticServer::start(page);
    let browser = Browser::start(false);
    browser.open(&format!("http://127.0.0.1:{}/", server.port));
    // WebDriver waits for the promise `measure` returns (60 exchanges each way, ~7 s)
    let result = browser.eval("return measure();");
    for way in ["worker", "channel"] {
        for side in ["parent", "child"] {
            let r = &result[way][side];
            let ms = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            println!("{way:<8} {side:<7} median {:.2} ms, p90 {:.2} ms, mean {:.2} ms, max {:.1} ms", ms("median"), ms("p90"), ms("mean"), ms("max"));
        }
    }
    println!("{result}");
}
