//! The `objlab-worker-fma` build's entry point: the same worker as `main.rs`, compiled with the
//! `fma` feature (relaxed SIMD's fused multiply-add in the CPU matrix products). A file of its
//! own because cargo warns about one file shared by two binaries.

#[path = "helper.rs"]
mod helper;
#[path = "worker.rs"]
mod worker;

fn main() {
    worker::start();
}
