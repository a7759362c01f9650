// Orders the eigenpairs the Jacobi kernel leaves: eigenvalue t (the diagonal of `a`) goes to its
// rank (largest first, ties by index) and eigenvector t (column t of `v`) to that column,
// signed so that its largest-magnitude component is positive (the CPU reference does the same).
// One thread per eigenpair. (A separate dispatch, not a tail of the Jacobi kernel: lavapipe
// lost the writes of a long single-workgroup kernel's last phase.)
//
// a: [d, d], v: [d, d] -> values: [d], vectors: [d, d]

struct Dims {
    d: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> vectors: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let d = dims.d;
    let t = id.x;
    if (t >= d) {
        return;
    }
    let mine = a[t * d + t];
    var rank = 0u;
    for (var j = 0u; j < d; j++) {
        let other = a[j * d + j];
        if (other > mine || (other == mine && j < t)) {
            rank++;
        }
    }
    values[rank] = mine;
    var big = 0.0;
    for (var r = 0u; r < d; r++) {
        let x = v[r * d + t];
        if (abs(x) > abs(big)) {
            big = x;
        }
    }
    let sign = select(1.0, -1.0, big < 0.0);
    for (var r = 0u; r < d; r++) {
        vectors[r * d + rank] = sign * v[r * d + t];
    }
}
