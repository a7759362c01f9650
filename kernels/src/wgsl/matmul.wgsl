// A strided matrix product, enough for covariance (Xᵀ X), Gram (X Xᵀ) and projection (X V):
//   c[c_off + i * n + j] = scale * Σ_k a[a_off + i * a_rs + k * a_cs] * b[b_off + k * b_rs + j * b_cs]
// a: [m, k], b: [k, n] (any strides), c: [m, n] row-major. One thread per output element;
// the matrices here are at most a few hundred wide, so no tiling.

struct Dims {
    m: u32,
    n: u32,
    k: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.y;
    let j = id.x;
    if (i >= dims.m || j >= dims.n) {
        return;
    }
    var sum = 0.0;
    for (var k = 0u; k < dims.k; k++) {
        sum += a[dims.a_off + i * dims.a_rs + k * dims.a_cs] * b[dims.b_off + k * dims.b_rs + j * dims.b_cs];
    }
    c[dims.c_off + i * dims.n + j] = dims.scale * sum;
}
