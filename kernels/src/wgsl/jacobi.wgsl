// Eigen-decomposition of a symmetric matrix by parallel cyclic Jacobi (Brent & Luk's
// round-robin ordering): each round rotates d/2 disjoint index pairs at once, so a sweep is
// d − 1 rounds instead of d(d − 1)/2 sequential rotations. One round = three dispatches of the
// entry points below, in order; the launcher records all rounds of all sweeps in one pass.
// (One long single-workgroup kernel with barriers between the phases lost writes on lavapipe
// beyond d ≈ 80; separate dispatches are synchronised by WebGPU itself.)
//
// a: [d, d] symmetric; its diagonal becomes the eigenvalues (unordered)
// v: [d, d] starts as the identity, becomes the eigenvectors (columns, same order);
//    `sort_eigen.wgsl` orders them
// pairs: [d/2] this round's index pairs and rotations
// state: [1] rounds done so far (the round number modulo d − 1 picks the pairs)

struct Dims {
    d: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct Pair {
    p: u32,
    q: u32,
    c: f32,
    s: f32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> pairs: array<Pair>;
@group(0) @binding(3) var<storage, read_write> state: array<u32>;
@group(0) @binding(4) var<uniform> dims: Dims;

// Players: d rounded up to even; index d (when d is odd) is a bye.
fn players() -> u32 {
    return dims.d + (dims.d & 1u);
}

// Phase 1, one thread per pair: the circle method (player m − 1 stays, the others turn) and
// Numerical Recipes' rotation that zeroes a[p, q].
@compute @workgroup_size(64)
fn rotations(@builtin(global_invocation_id) id: vec3<u32>) {
    let d = dims.d;
    let m = players();
    let t = id.x;
    if (t >= m / 2u) {
        return;
    }
    let round = state[0] % (m - 1u);
    var p: u32;
    var q: u32;
    if (t == 0u) {
        p = m - 1u;
        q = round;
    } else {
        p = (round + t) % (m - 1u);
        q = (round + (m - 1u) - t) % (m - 1u);
    }
    let lo = min(p, q);
    let hi = max(p, q);
    var c = 1.0;
    var s = 0.0;
    if (hi < d) {
        let apq = a[lo * d + hi];
        let app = a[lo * d + lo];
        let aqq = a[hi * d + hi];
        if (abs(apq) > 1e-30) {
            let theta = (aqq - app) / (2.0 * apq);
            var tn = 1.0 / (abs(theta) + sqrt(theta * theta + 1.0));
            if (theta < 0.0) {
                tn = -tn;
            }
            c = 1.0 / sqrt(tn * tn + 1.0);
            s = tn * c;
        }
    }
    pairs[t] = Pair(lo, hi, c, s);
}

// (x, y) rotated by the pair's angle: (c·x − s·y, s·x + c·y), the update of entries p and q.
fn rotate(pair: Pair, x: f32, y: f32) -> vec2<f32> {
    return vec2<f32>(pair.c * x - pair.s * y, pair.s * x + pair.c * y);
}

// Phase 2, one thread per row k: a ← a J and v ← v J (columns p, q of row k).
@compute @workgroup_size(64)
fn columns(@builtin(global_invocation_id) id: vec3<u32>) {
    let d = dims.d;
    let k = id.x;
    if (k >= d) {
        return;
    }
    for (var i = 0u; i < players() / 2u; i++) {
        let pair = pairs[i];
        if (pair.q < d) {
            let ak = rotate(pair, a[k * d + pair.p], a[k * d + pair.q]);
            a[k * d + pair.p] = ak.x;
            a[k * d + pair.q] = ak.y;
            let vk = rotate(pair, v[k * d + pair.p], v[k * d + pair.q]);
            v[k * d + pair.p] = vk.x;
            v[k * d + pair.q] = vk.y;
        }
    }
}

// Phase 3, one thread per column k: a ← Jᵀ a (rows p, q of column k); thread 0 counts the round.
@compute @workgroup_size(64)
fn rows(@builtin(global_invocation_id) id: vec3<u32>) {
    let d = dims.d;
    let k = id.x;
    if (k >= d) {
        return;
    }
    for (var i = 0u; i < players() / 2u; i++) {
        let pair = pairs[i];
        if (pair.q < d) {
            let ak = rotate(pair, a[pair.p * d + k], a[pair.q * d + k]);
            a[pair.p * d + k] = ak.x;
            a[pair.q * d + k] = ak.y;
        }
    }
    if (k == 0u) {
        state[0] = state[0] + 1u;
    }
}
