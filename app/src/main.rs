//! The page's entry point: mounts the lab.
fn main() {
    objlab_app::views::app::mount();
}
