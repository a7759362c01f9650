//! The captured step (`train::captured_step`) in the browser's memory layout, natively.
//!
//! In the tab cubecl keeps GPU memory as one page per allocation, in size buckets
//! (`MemoryConfiguration::ExclusivePages`, the only layout its wasm build has), where a native
//! build carves allocations from shared pages. In that layout a recording that could not add a
//! page often found every page in use: position prediction and a prefix LM on the
//! encoder–decoder (`tiny` on tiny shakespeare) failed their first recording in the tab always,
//! here in most processes, and on lavapipe often their second too. Since the thirty-sixth
//! session a recording may add a page (our cubecl-server's `recording-adds-pages`, which
//! wgpu's software graphs allow): these tests check that a recording that needs a page gets
//! one and replays, and that those runs capture at their first recording. This file's own
//! process (a wgpu device is set up once per process) gets the tab's layout; the other wgpu
//! tests keep the native one.

mod common;

use std::sync::Arc;

use objlab_engine::burn::tensor::{Device, Tensor};
use objlab_engine::burn::tensor::wgpu::MemoryConfiguration;
use objlab_engine::data::Corpus;
use objlab_engine::spec::ExperimentSpec;
use objlab_engine::train::captured_step;

/// The wgpu device with the tab's memory layout, and the lock that keeps the test alone on it
/// (see `common`).
fn wgpu_device_with_exclusive_pages() -> Option<(Device, common::Alone)> {
    common::wgpu_device_made_by(|| Device::wgpu_options().memory_config(MemoryConfiguration::ExclusivePages).init())
}

/// A recording that needs memory no page holds gets a new page, and its replay computes in it:
/// 12 MiB of twos (bigger than any buffer of the `tiny` runs, so no page held fits it), made
/// inside a capture opened with nothing warmed up. Before the patch the recording failed ("No
/// room for 12582912 bytes in the memory held, and no page may be added").
#[test]
fn a_recording_that_needs_a_page_gets_one_and_replays() {
    let Some((device, _alone)) = wgpu_device_with_exclusive_pages() else { return };
    let n = 3 << 20;
    captured_step::prepare(&device).unwrap();
    captured_step::start(&device).unwrap();
    let twos = Tensor::<1>::ones([n], &device) * 2.0;
    let graph = captured_step::stop(&device).expect("the recording got its page");
    captured_step::replay(&device, &graph).unwrap();
    let values = twos.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(values.len(), n);
    assert!(values.iter().all(|&v| v == 2.0), "the replay wrote every value");
}

/// The page's `tiny` runs whose first recording failed in the tab capture at their first
/// recording in the tab's memory layout, and train to the losses of the same runs without
/// capture. This is the real failure, not `capture_fails`'s injected one: before the
/// thirty-sixth session it came in most processes (a failed recording cost a start-over, and
/// after two the run stepped without capture).
#[test]
fn in_the_tabs_memory_layout_the_first_recording_captures() {
    let Some((device, _alone)) = wgpu_device_with_exclusive_pages() else { return };
    let text = std::fs::read_to_string(objlab_engine::repo_root().join("assets/tinyshakespeare.txt")).unwrap();
    let start: String = text.chars().take(20_000).collect();
    let corpus = Arc::new(Corpus::from_text("tiny-shakespeare", &start).unwrap());
    let steps = 10;
    for (objective, arch) in [("position_prediction", "decoder"), ("prefix_lm", "encoder_decoder"), ("causal_lm", "decoder")] {
        let mut spec = ExperimentSpec::from_preset("tiny").unwrap();
        spec.set("objective", objective).unwrap();
        spec.set("arch", arch).unwrap();
        let run = |spec: &ExperimentSpec| {
            let (losses, t) = common::train(spec, corpus.clone(), device.clone(), steps);
            (losses, t.capture_state(), t.capture_recordings())
        };
        let (captured, state, recordings) = run(&spec);
        assert_eq!((&state, recordings), (&Ok(true), 1), "{objective} ({arch})");
        spec.set("capture", "0").unwrap();
        let (ordinary, _, _) = run(&spec);
        assert_eq!(captured.len(), steps);
        for (i, (a, b)) in captured.iter().zip(&ordinary).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{objective} ({arch}), step {i}: {a} vs {b}");
        }
    }
}
