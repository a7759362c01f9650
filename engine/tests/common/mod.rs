//! What the wgpu test files share: the process's wgpu device and the lock that keeps one test
//! at a time on it. Each test file is its own process, so each makes its own device (its own
//! memory layout: `capture_memory.rs` asks for the tab's).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use objlab_engine::burn::tensor::Device;
use objlab_engine::data::Corpus;
use objlab_engine::spec::ExperimentSpec;
use objlab_engine::train::Trainer;

/// `spec`'s first run trained `steps` steps on `device`, with its losses read at the end, and
/// the run (for what the test asks of it next: its capture, its validation loss).
pub fn train(spec: &ExperimentSpec, corpus: Arc<Corpus>, device: Device, steps: usize) -> (Vec<f32>, Trainer) {
    let mut t = Trainer::new(spec, 0, corpus, device).unwrap();
    for _ in 0..steps {
        t.step();
    }
    let losses = pollster::block_on(t.read_losses()).unwrap().into_iter().map(|(_, l)| l).collect();
    (losses, t)
}

/// The wgpu device `make` makes (lavapipe here, a real GPU elsewhere), once per process, or
/// `None` with a note — a failure when `OBJLAB_REQUIRE_WGPU` is set. With it, a lock that keeps
/// the other wgpu tests off the device meanwhile: the tests run on parallel threads, and cubecl
/// gives each thread its own command stream on a shared device; one test's step once read
/// another's values (a flaky step 3 in CI), which a lab never meets (one worker, one thread,
/// per device). The lock is released only once the device has finished the test's work
/// ([`Alone`]): a test's last kernels could still be running on its stream when the next
/// test's thread started (the flaky step 3 came back once). A test that records a capture
/// needs it too: while one records, the device refuses another's capture and its reads.
pub fn wgpu_device_made_by<E: std::fmt::Debug>(make: fn() -> Result<Device, E>) -> Option<(Device, Alone)> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    let device = DEVICE.get_or_init(|| match std::panic::catch_unwind(make) {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => Err("adapter request panicked".to_string()),
    });
    match device {
        Ok(d) => Some((d.clone(), Alone { device: d.clone(), _lock: lock })),
        Err(why) => {
            if std::env::var("OBJLAB_REQUIRE_WGPU").is_ok() {
                panic!("no wgpu adapter, but OBJLAB_REQUIRE_WGPU is set: {why}");
            }
            eprintln!("skipping: no wgpu adapter ({why})");
            None
        }
    }
}

/// [`wgpu_device_made_by`]'s lock: dropped last in a test (it is bound first), it waits for the
/// device's pending work before it lets the next test in.
pub struct Alone {
    device: Device,
    _lock: MutexGuard<'static, ()>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        let _ = self.device.sync();
    }
}
