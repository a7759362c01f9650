//! The training worker's entry point (loaded by the page as a Web Worker).
fn main() {
    objlab_app::worker::start();
}
