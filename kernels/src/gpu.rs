//! Launchers of the WGSL kernels on a wgpu device (native Vulkan/Metal/DX12, or the browser's
//! WebGPU inside the worker). Every call uploads its input, records all its dispatches in one
//! command buffer and reads the result back in one mapping.

use wgpu::util::DeviceExt;

use crate::{Matrix, Pca, cka_from_dots};

/// The Jacobi kernel runs in one workgroup of 256 threads: one per row.
pub const MAX_EIGEN_DIM: usize = 256;
/// Jacobi sweeps: convergence is quadratic; 10 sweeps reach f32 precision for d ≤ 256.
const SWEEPS: u32 = 10;

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    center: wgpu::ComputePipeline,
    matmul: wgpu::ComputePipeline,
    /// The three phases of a Jacobi round (`jacobi.wgsl`), sharing one bind-group layout.
    jacobi: [wgpu::ComputePipeline; 3],
    sort_eigen: wgpu::ComputePipeline,
    pair_dots: wgpu::ComputePipeline,
    /// The adapter's name, for the page.
    pub adapter: String,
    /// Whether the adapter is a CPU rasteriser (lavapipe, SwiftShader): fine for correctness,
    /// meaningless for speed.
    pub software: bool,
}

fn pipeline(device: &wgpu::Device, name: &str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// The Jacobi phases share their buffers, so they get one explicit layout (an automatic layout
/// would hold only the bindings each entry point touches).
fn jacobi_pipelines(device: &wgpu::Device) -> [wgpu::ComputePipeline; 3] {
    let storage = |binding| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only: false }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let uniform = wgpu::BindGroupLayoutEntry {
        binding: 4,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("jacobi"),
        entries: &[storage(0), storage(1), storage(2), storage(3), uniform],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("jacobi"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("jacobi"),
        source: wgpu::ShaderSource::Wgsl(include_str!("wgsl/jacobi.wgsl").into()),
    });
    ["rotations", "columns", "rows"].map(|entry| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    })
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn floats(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Strides of one matrix operand of `matmul.wgsl`.
#[derive(Clone, Copy)]
struct Operand {
    offset: usize,
    row_stride: usize,
    col_stride: usize,
}

impl Gpu {
    /// Acquires an adapter and a device and compiles the kernels.
    pub async fn new() -> Result<Self, String> {
        let instance = wgpu::Instance::default();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .map_err(|e| format!("no GPU adapter: {e}"))?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor { label: Some("objlab kernels"), ..Default::default() })
            .await
            .map_err(|e| format!("the GPU refused a device: {e}"))?;
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let adapter = if info.name.is_empty() { format!("{:?}", info.backend) } else { info.name };
        Ok(Self {
            center: pipeline(&device, "center", include_str!("wgsl/center.wgsl")),
            matmul: pipeline(&device, "matmul", include_str!("wgsl/matmul.wgsl")),
            jacobi: jacobi_pipelines(&device),
            sort_eigen: pipeline(&device, "sort_eigen", include_str!("wgsl/sort_eigen.wgsl")),
            pair_dots: pipeline(&device, "pair_dots", include_str!("wgsl/pair_dots.wgsl")),
            device,
            queue,
            adapter,
            software,
        })
    }

    fn storage(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn upload(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &floats(if data.is_empty() { &[0.0] } else { data }),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dims"),
            contents: bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    fn dispatch(&self, encoder: &mut wgpu::CommandEncoder, pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer], groups: [u32; 3]) {
        let entries: Vec<wgpu::BindGroupEntry> =
            buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// x[offset..][rows, cols] -= column means
    fn center_rows(&self, encoder: &mut wgpu::CommandEncoder, x: &wgpu::Buffer, rows: usize, cols: usize, offset: usize) {
        let dims = self.uniform(&words(&[rows as u32, cols as u32, offset as u32, 0]));
        self.dispatch(encoder, &self.center, &[x, &dims], [cols.div_ceil(64) as u32, 1, 1]);
    }

    /// c[c_off..][m, n] = scale · A[m, k] · B[k, n]
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        (a, ao): (&wgpu::Buffer, Operand),
        (b, bo): (&wgpu::Buffer, Operand),
        (c, c_off): (&wgpu::Buffer, usize),
        [m, n, k]: [usize; 3],
        scale: f32,
    ) {
        let mut bytes = words(&[
            m as u32, n as u32, k as u32,
            ao.offset as u32, ao.row_stride as u32, ao.col_stride as u32,
            bo.offset as u32, bo.row_stride as u32, bo.col_stride as u32,
            c_off as u32,
        ]);
        bytes.extend(scale.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        let dims = self.uniform(&bytes);
        self.dispatch(encoder, &self.matmul, &[a, b, c, &dims], [n.div_ceil(8) as u32, m.div_ceil(8) as u32, 1]);
    }

    /// All Jacobi rounds of all sweeps on `a` ([d, d]), accumulating the rotations in `v`
    /// (which must hold the identity), in one compute pass with one bind group.
    fn jacobi(&self, encoder: &mut wgpu::CommandEncoder, a: &wgpu::Buffer, v: &wgpu::Buffer, dims: &wgpu::Buffer, d: usize) {
        let half = d.div_ceil(2);
        let pairs = self.storage("jacobi pairs", half * 4);
        let state = self.storage("jacobi rounds", 1);
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("jacobi"),
            layout: &self.jacobi[0].get_bind_group_layout(0),
            entries: &[a, v, &pairs, &state, dims]
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                .collect::<Vec<_>>(),
        });
        let rounds = (2 * half - 1) as u32 * SWEEPS;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("jacobi"), timestamp_writes: None });
        pass.set_bind_group(0, &bind, &[]);
        for _ in 0..rounds {
            pass.set_pipeline(&self.jacobi[0]);
            pass.dispatch_workgroups(half.div_ceil(64) as u32, 1, 1);
            pass.set_pipeline(&self.jacobi[1]);
            pass.dispatch_workgroups(d.div_ceil(64) as u32, 1, 1);
            pass.set_pipeline(&self.jacobi[2]);
            pass.dispatch_workgroups(d.div_ceil(64) as u32, 1, 1);
        }
    }

    /// Submits `encoder` after copying `parts` (buffer, floats) into one staging buffer, and
    /// reads them back in one mapping.
    async fn finish(&self, mut encoder: wgpu::CommandEncoder, parts: &[(&wgpu::Buffer, usize)]) -> Result<Vec<Vec<f32>>, String> {
        let total: usize = parts.iter().map(|(_, n)| n).sum();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size: (total.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut at = 0u64;
        for (buffer, n) in parts {
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, at, (*n * 4) as u64);
            at += (*n * 4) as u64;
        }
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |result| {
            let _ = tx.send(result);
        });
        // Natively this runs the callback; in the browser it does nothing and the event loop
        // resolves the mapping while we await.
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        rx.await
            .map_err(|_| "the GPU read was cancelled".to_string())?
            .map_err(|e| format!("reading from the GPU failed: {e}"))?;
        let mapped = staging.slice(..).get_mapped_range().map_err(|e| format!("reading from the GPU failed: {e}"))?;
        let all: Vec<f32> = mapped.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        drop(mapped);
        staging.unmap();
        let mut out = Vec::new();
        let mut start = 0;
        for (_, n) in parts {
            out.push(all[start..start + n].to_vec());
            start += n;
        }
        Ok(out)
    }

    /// PCA of `x` to two dimensions on the GPU: centre, covariance, Jacobi, projection.
    pub async fn pca(&self, x: &Matrix) -> Result<Pca, String> {
        let (n, d) = (x.rows, x.cols);
        if d == 0 || n == 0 || d > MAX_EIGEN_DIM {
            return Err(format!("PCA on the GPU takes 1 to {MAX_EIGEN_DIM} columns and at least one row, not {n} × {d}"));
        }
        let xb = self.upload("x", &x.data);
        let cov = self.storage("covariance", d * d);
        let identity: Vec<f32> = (0..d * d).map(|i| if i / d == i % d { 1.0 } else { 0.0 }).collect();
        let scratch = self.upload("eigenvectors, unordered", &identity);
        let values = self.storage("eigenvalues", d);
        let vectors = self.storage("eigenvectors", d * d);
        let k = d.min(2);
        let points = self.storage("projection", n * k);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        // xc: [n, d] centred in place
        self.center_rows(&mut encoder, &xb, n, d, 0);
        // cov: [d, d] = xcᵀ xc / n   (A = xcᵀ: A(i, r) = xc[r * d + i])
        let xt = Operand { offset: 0, row_stride: 1, col_stride: d };
        let xs = Operand { offset: 0, row_stride: d, col_stride: 1 };
        self.matmul(&mut encoder, (&xb, xt), (&xb, xs), (&cov, 0), [d, d, n], 1.0 / n as f32);
        let dims = self.uniform(&words(&[d as u32, 0, 0, 0]));
        self.jacobi(&mut encoder, &cov, &scratch, &dims, d);
        self.dispatch(&mut encoder, &self.sort_eigen, &[&cov, &scratch, &values, &vectors, &dims], [d.div_ceil(64) as u32, 1, 1]);
        // points: [n, k] = xc [n, d] · vectors[:, :k]
        let v = Operand { offset: 0, row_stride: d, col_stride: 1 };
        self.matmul(&mut encoder, (&xb, xs), (&vectors, v), (&points, 0), [n, k, d], 1.0);
        let out = self.finish(encoder, &[(&values, d), (&points, n * k)]).await?;
        let p = &out[1];
        let points = (0..n).map(|r| [p[r * k], if k > 1 { p[r * k + 1] } else { 0.0 }]).collect();
        Ok(Pca { points, eigenvalues: out[0].clone() })
    }

    /// Linear CKA between every pair of feature matrices (same rows): centre each, Gram
    /// matrices K = Xc Xcᵀ, all pairwise ⟨Kᵢ, Kⱼ⟩ in one dispatch, normalised on the CPU.
    pub async fn cka_matrix(&self, xs: &[&Matrix]) -> Result<Vec<f32>, String> {
        let m = xs.len();
        if m == 0 {
            return Ok(Vec::new());
        }
        let n = xs[0].rows;
        if xs.iter().any(|x| x.rows != n) {
            return Err("CKA compares representations of the same inputs: every matrix needs the same rows".into());
        }
        let data: Vec<f32> = xs.iter().flat_map(|x| x.data.iter().copied()).collect();
        let xb = self.upload("features", &data);
        let grams = self.storage("gram matrices", m * n * n);
        let dots = self.storage("pair dots", m * m);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let mut offset = 0;
        for (i, x) in xs.iter().enumerate() {
            let d = x.cols;
            self.center_rows(&mut encoder, &xb, n, d, offset);
            // gram_i: [n, n] = xc [n, d] · xcᵀ [d, n]
            let a = Operand { offset, row_stride: d, col_stride: 1 };
            let b = Operand { offset, row_stride: 1, col_stride: d };
            self.matmul(&mut encoder, (&xb, a), (&xb, b), (&grams, i * n * n), [n, n, d], 1.0);
            offset += n * d;
        }
        let dims = self.uniform(&words(&[m as u32, (n * n) as u32, 0, 0]));
        self.dispatch(&mut encoder, &self.pair_dots, &[&grams, &dots, &dims], [m as u32, m as u32, 1]);
        let out = self.finish(encoder, &[(&dots, m * m)]).await?;
        Ok(cka_from_dots(&out[0], m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cpu, random_matrix};

    /// The GPU, or `None` (with a note) where there is none — unless OBJLAB_REQUIRE_WGPU is
    /// set (as `cargo xtask test` does, with lavapipe), which turns a missing GPU into a failure.
    fn gpu() -> Option<Gpu> {
        match pollster::block_on(Gpu::new()) {
            Ok(gpu) => Some(gpu),
            Err(why) if std::env::var_os("OBJLAB_REQUIRE_WGPU").is_some() => panic!("OBJLAB_REQUIRE_WGPU is set but {why}"),
            Err(why) => {
                eprintln!("skipping the GPU half of this test: {why}");
                None
            }
        }
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn pca_agrees_with_the_cpu_reference() {
        let Some(gpu) = gpu() else { return };
        // odd width (a bye in the round-robin) and a width of a real model
        for (n, d, seed) in [(50, 7, 1), (96, 32, 2), (300, 128, 3), (64, 129, 4), (300, 256, 5)] {
            let mut x = random_matrix(n, d, seed);
            // give the data two dominant directions so the top axes are well separated
            for r in 0..n {
                x.data[r * d] *= 6.0;
                x.data[r * d + 1] *= 3.0;
            }
            let want = cpu::pca(&x);
            let got = pollster::block_on(gpu.pca(&x)).unwrap();
            for (k, (a, b)) in got.eigenvalues.iter().zip(&want.eigenvalues).enumerate() {
                assert!(close(*a, *b, 2e-3), "{n}×{d}: eigenvalue {k}: gpu {a} cpu {b}");
            }
            for r in 0..n {
                for k in 0..2 {
                    assert!(close(got.points[r][k], want.points[r][k], 2e-3), "{n}×{d}: point {r} axis {k}: {:?} vs {:?}", got.points[r], want.points[r]);
                }
            }
            assert!(close(got.effective_rank(), cpu::effective_rank(&x), 1e-3), "effective rank");
        }
    }

    #[test]
    fn cka_agrees_with_the_cpu_reference() {
        let Some(gpu) = gpu() else { return };
        let a = random_matrix(40, 16, 1);
        let b = random_matrix(40, 24, 2);
        let mixed = Matrix::new(40, 16, a.data.iter().zip(&b.data).map(|(x, y)| x + 0.5 * y).collect());
        let scaled = Matrix::new(40, 16, a.data.iter().map(|v| v * 4.0).collect());
        let xs = [&a, &b, &mixed, &scaled];
        let want = cpu::cka_matrix(&xs);
        let got = pollster::block_on(gpu.cka_matrix(&xs)).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(close(*g, *w, 1e-3), "entry {i}: gpu {g} cpu {w}");
        }
        for i in 0..4 {
            assert!(close(got[i * 4 + i], 1.0, 1e-4), "CKA(X, X) = 1");
        }
        assert!(close(got[3], 1.0, 1e-4), "isotropic scaling leaves CKA at 1");
    }
}
