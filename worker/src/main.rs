//! The training worker's entry point (the page starts it as a Web Worker through Trunk's
//! loader shim; see `index.html`).

mod helper;
mod worker;

fn main() {
    worker::start();
}
