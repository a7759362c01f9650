// GFLOP/s of baby GPT's matrix products (one half-batch of 384 rows, as each of the tab's two
// workers computes it) through gemm in this page's WebAssembly, beside the 128-bit FMA peak.
// Three rounds: V8 compiles with its baseline compiler first and optimises hot code later, so
// the last round is the steady figure. Then each product one at a time, timed alone, with the
// caches flushed before each (`evict`) and without: in a training step a product's operands
// were last written by other operations, so they are seldom in the nearer caches as they are
// when one product repeats.
async function measure() {
  const bytes = await (await fetch('wasm_gemm.wasm')).arrayBuffer();
  const { instance } = await WebAssembly.instantiate(bytes, {});
  const e = instance.exports;
  // name, m, k, n, A transposed, B transposed
  const shapes = [
    ['qkv', 384, 128, 384, 0, 0], ['attention out', 384, 128, 128, 0, 0], ['mlp up', 384, 128, 512, 0, 0],
    ['mlp down', 384, 512, 128, 0, 0], ['tied head', 384, 128, 67, 0, 1],
    ['dX qkv', 384, 384, 128, 0, 1], ['dW qkv', 128, 384, 384, 1, 0], ['dX mlp down', 384, 128, 512, 0, 1],
    ['dW mlp down', 512, 384, 128, 1, 0],
  ];
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const out = [];  // [name, GFLOP/s], in the order measured
    let t = performance.now();
    e.peak(50000);
    out.push(['128-bit FMA peak', 96 * 1024 * 50000 / ((performance.now() - t) / 1000) / 1e9]);
    for (const [name, m, k, n, at, bt] of shapes) {
      const reps = Math.max(5, Math.round(2e9 / (2 * m * k * n)));
      t = performance.now();
      e.product(m, k, n, at, bt, reps);
      out.push([name, 2 * m * k * n * reps / ((performance.now() - t) / 1000) / 1e9]);
    }
    rounds.push(out);
  }
  const single = [];  // [name, GFLOP/s with the caches flushed before each, GFLOP/s without]
  for (const [name, m, k, n, at, bt] of shapes) {
    const reps = 40;
    const timed = (flush) => {
      let ms = 0;
      for (let r = 0; r < reps; r++) {
        if (flush) e.evict();
        const t = performance.now();
        e.product(m, k, n, at, bt, 1);
        ms += performance.now() - t;
      }
      return 2 * m * k * n * reps / (ms / 1000) / 1e9;
    };
    single.push([name, timed(true), timed(false)]);
  }
  return { rounds, single };
}
