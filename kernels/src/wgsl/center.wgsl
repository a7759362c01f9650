// Subtracts each column's mean from a row-major matrix, in place.
// x: [rows, cols] starting at `offset` (several matrices share one buffer).
// One thread per column.

struct Dims {
    rows: u32,
    cols: u32,
    offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> dims: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let col = id.x;
    if (col >= dims.cols) {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < dims.rows; r++) {
        sum += x[dims.offset + r * dims.cols + col];
    }
    let mean = sum / f32(dims.rows);
    for (var r = 0u; r < dims.rows; r++) {
        let i = dims.offset + r * dims.cols + col;
        x[i] = x[i] - mean;
    }
}
