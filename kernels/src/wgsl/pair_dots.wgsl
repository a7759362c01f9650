// Frobenius inner products of every pair of m matrices of `len` elements each (stacked in
// `x`): out[i * m + j] = Σ_t x[i * len + t] · x[j * len + t]. Linear CKA is built from these
// on centred Gram matrices. One workgroup per pair, a tree reduction in shared memory.

struct Dims {
    m: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> dims: Dims;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) pair: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = pair.x;
    let j = pair.y;
    var sum = 0.0;
    for (var k = t; k < dims.len; k += 256u) {
        sum += x[i * dims.len + k] * x[j * dims.len + k];
    }
    partial[t] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            partial[t] += partial[t + stride];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        out[i * dims.m + j] = partial[0];
    }
}
