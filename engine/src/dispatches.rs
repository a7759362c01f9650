//! Counting (and, natively, timing) the GPU kernels a training step launches.
//!
//! Small models are bound by the number of dispatches and host round trips per step, not
//! by FLOPs, so those are the figures the lab reports beside steps/s. They come from
//! cubecl's launch observer (`cubecl_runtime::logging::LaunchObservation`), the hook burn's
//! GPU backend calls for every kernel it issues — fused kernels count once. It costs one
//! relaxed atomic load per launch while nothing observes, and works in the browser too.
//! The CPU backend (flex) launches no kernels: its count stays 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cubecl_runtime::logging::{Duration, LaunchObservation, LaunchObserver, TimingMethod, TimingRequest};

/// Launch counts (and summed durations when timing) by kernel name.
#[derive(Default)]
struct Tally {
    timed: bool,
    kernels: Mutex<HashMap<&'static str, (usize, f64)>>,
}

impl LaunchObserver for Tally {
    fn launched(&self, kernel: &'static str) {
        if trace() {
            eprintln!("launch {}", short_name(kernel));
        }
        self.kernels.lock().expect("tally lock").entry(kernel).or_default().0 += 1;
    }

    fn timing(&self) -> TimingRequest {
        if self.timed { TimingRequest::Resolved } else { TimingRequest::None }
    }

    fn timed(&self, kernel: &'static str, duration: Duration, _method: TimingMethod) {
        if trace() {
            eprintln!("timed {:.3} ms {}", duration.as_secs_f64() * 1e3, short_name(kernel));
        }
        self.kernels.lock().expect("tally lock").entry(kernel).or_default().1 += duration.as_secs_f64() * 1e3;
    }
}

/// `OBJLAB_TRACE_KERNELS=1`: print every observed launch, in order, to stderr (to see which
/// operations fusion left apart), and with a timed watch each kernel's time as it finishes (to
/// tell apart launches of one kernel name: the matrix products of different shapes).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("OBJLAB_TRACE_KERNELS").is_some_and(|v| v == "1"))
}

/// One kernel's share of the observed window.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelShare {
    /// The kernel as cubecl names it (shortened).
    pub name: String,
    pub launches: usize,
    /// Summed device time, ms (0 unless timed).
    pub ms: f64,
}

/// Watches kernel launches while it lives. Only one watch at a time is meaningful: a second
/// one replaces the first until it is dropped.
pub struct DispatchWatch {
    tally: Arc<Tally>,
    _observation: LaunchObservation,
}

impl DispatchWatch {
    /// Counts launches only: no cost to the kernels.
    pub fn count() -> Self {
        Self::new(false)
    }

    /// Also times every kernel on the device. Each launch then waits for the kernel before
    /// the next is issued (native only: a blocking read), so steps get slower; the sum of
    /// kernel times against the step's wall time says whether the GPU or the host is the
    /// bottleneck.
    pub fn timed() -> Self {
        Self::new(true)
    }

    fn new(timed: bool) -> Self {
        let tally = Arc::new(Tally { timed, ..Tally::default() });
        let observation = LaunchObservation::new(tally.clone());
        Self { tally, _observation: observation }
    }

    /// Launches so far.
    pub fn total(&self) -> usize {
        self.tally.kernels.lock().expect("tally lock").values().map(|(n, _)| n).sum()
    }

    /// Kernels by device time (timed) or by launches (counted), most first.
    pub fn kernels(&self) -> Vec<KernelShare> {
        let kernels = self.tally.kernels.lock().expect("tally lock");
        let mut shares: Vec<KernelShare> = kernels
            .iter()
            .map(|(name, (launches, ms))| KernelShare { name: short_name(name), launches: *launches, ms: *ms })
            .collect();
        shares.sort_by(|a, b| b.ms.total_cmp(&a.ms).then(b.launches.cmp(&a.launches)));
        shares
    }
}

/// A kernel's type name without module paths (`burn_cubecl::kernel::Foo<f32>` → `Foo<f32>`).
fn short_name(name: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    out
}

/// cubecl's autotune level in force (reading it fixes cubecl's configuration for the process).
pub fn autotune_level() -> String {
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
    format!("{:?}", CubeClRuntimeConfig::get().autotune.level).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_module_paths() {
        assert_eq!(short_name("burn_cubecl::kernel::matmul::Tiled<f32, cubecl::Foo>"), "Tiled<f32, Foo>");
        assert_eq!(short_name("plain"), "plain");
    }

    #[test]
    fn the_cpu_backend_launches_no_kernels() {
        let watch = DispatchWatch::count();
        let device = burn::tensor::Device::flex();
        let t = burn::tensor::Tensor::<1>::ones([4], &device);
        let _ = (t.clone() + t).sum();
        assert_eq!(watch.total(), 0);
    }
}
