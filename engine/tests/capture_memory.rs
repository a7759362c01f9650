//! The captured step (`train::captured_step`) in the browser's memory layout, natively.
//!
//! In the tab cubecl keeps GPU memory as one page per allocation, in size buckets
//! (`MemoryConfiguration::ExclusivePages`, the only layout its wasm build has), where a native
//! build carves allocations from shared pages. A recording may not add a page, and in that
//! layout a run's recording can find every page in use (position prediction and a prefix LM
//! on the encoder–decoder, `tiny` on tiny shakespeare: the first recording in the tab always
//! failed, here in most processes, and on lavapipe the second often fails too). The run then
//! starts over, tries once more, and otherwise trains without capture
//! (`Trainer::start_over`). This file's own process (a wgpu device is set up once per process)
//! gets the tab's layout; the other wgpu tests keep the native one.

use std::sync::Arc;

use objlab_engine::burn::tensor::Device;
use objlab_engine::burn::tensor::wgpu::MemoryConfiguration;
use objlab_engine::data::Corpus;
use objlab_engine::spec::ExperimentSpec;
use objlab_engine::train::Trainer;

/// The wgpu device with the tab's memory layout, or `None` with a note (a failure when
/// `OBJLAB_REQUIRE_WGPU` is set).
fn wgpu_device_with_exclusive_pages() -> Option<Device> {
    match std::panic::catch_unwind(|| Device::wgpu_options().memory_config(MemoryConfiguration::ExclusivePages).init()) {
        Ok(Ok(device)) => Some(device),
        failed => {
            let why = match failed {
                Ok(Err(e)) => format!("{e:?}"),
                _ => "adapter request panicked".to_string(),
            };
            if std::env::var("OBJLAB_REQUIRE_WGPU").is_ok() {
                panic!("no wgpu adapter, but OBJLAB_REQUIRE_WGPU is set: {why}");
            }
            eprintln!("skipping: no wgpu adapter ({why})");
            None
        }
    }
}

/// The page's `tiny` runs that met the failure in the tab lose nothing to it in the tab's
/// memory layout: whether their step is replayed after one recording, after two, or not at all
/// (two failed), they train to the losses of the same run without capture. This is the real
/// failure, not `capture_fails`'s injected one; before `Trainer::start_over`, the run's reads
/// failed after a failed recording.
#[test]
fn in_the_tabs_memory_layout_a_failed_recording_costs_no_run() {
    let Some(device) = wgpu_device_with_exclusive_pages() else { return };
    let text = std::fs::read_to_string(objlab_engine::repo_root().join("assets/tinyshakespeare.txt")).unwrap();
    let start: String = text.chars().take(20_000).collect();
    let corpus = Arc::new(Corpus::from_text("tiny-shakespeare", &start).unwrap());
    let steps = 10;
    for (objective, arch) in [("position_prediction", "decoder"), ("prefix_lm", "encoder_decoder"), ("causal_lm", "decoder")] {
        let mut spec = ExperimentSpec::from_preset("tiny").unwrap();
        spec.set("objective", objective).unwrap();
        spec.set("arch", arch).unwrap();
        let run = |spec: &ExperimentSpec| {
            let mut t = Trainer::new(spec, 0, corpus.clone(), device.clone()).unwrap();
            for _ in 0..steps {
                t.step();
            }
            let losses: Vec<f32> = pollster::block_on(t.read_losses()).unwrap().into_iter().map(|(_, l)| l).collect();
            (losses, t.capture_state(), t.capture_recordings())
        };
        let (captured, state, recordings) = run(&spec);
        eprintln!("{objective} ({arch}): {recordings} recording(s), replayed: {state:?}");
        match (&state, recordings) {
            (Ok(true), 1 | 2) => {}
            (Err(why), 2) if why.starts_with(objlab_engine::train::captured_step::RECORDING_FAILED) => {}
            _ => panic!("{objective} ({arch}): {recordings} recordings, {state:?}"),
        }
        spec.set("capture", "0").unwrap();
        let (ordinary, _, _) = run(&spec);
        assert_eq!(captured.len(), steps);
        for (i, (a, b)) in captured.iter().zip(&ordinary).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{objective} ({arch}), step {i}: {a} vs {b}");
        }
    }
}
