// How long a step's gradients take to go from one worker to the other in this browser: a
// worker and the worker it starts (as the lab's training worker and its helper) each "compute"
// for 50 ms (a busy loop), post 3.3 MB (baby GPT's gradients) in a transferred ArrayBuffer,
// copy what they receive (as the lab copies it into its module's memory) and wait for the
// other's: the split step's exchange (docs/performance.md, "In the tab"). The transit is
// measured from just before `postMessage` to the receiver's handler, on one clock
// (`performance.timeOrigin + now()`), both through the worker objects and through a
// MessageChannel. Returns, for each way and each side, the median, 90th percentile, mean and
// largest transit in ms, the first five exchanges left out.
async function measure() {
  const common = `
    const now = () => performance.timeOrigin + performance.now();
    const spin = (ms) => { const t = performance.now(); let x = 0; while (performance.now() - t < ms) { x += Math.sqrt(x + 1); } };
    const SIZE = 3300000, WARMUP = 5;
    // where what arrives is copied, made once (the lab copies into its module's memory)
    const memory = new Uint8Array(SIZE);
    let port = null, pending = null, got = false, spare = new ArrayBuffer(SIZE);
    const transits = [];
    function received(e) {
      const buf = e.data;
      transits.push(now() - new Float64Array(buf, 0, 1)[0]);
      memory.set(new Uint8Array(buf));
      spare = buf;
      if (pending) { const r = pending; pending = null; r(); } else { got = true; }
    }
    async function exchange(steps) {
      transits.length = 0;
      for (let i = 0; i < steps; i++) {
        spin(50);
        const buf = spare; spare = null;
        new Float64Array(buf, 0, 1)[0] = now();
        port.postMessage(buf, [buf]);
        if (!got) await new Promise((r) => pending = r);
        got = false;
      }
      // (the first few wait for the other side to start and for V8 to optimise this code)
      const t = transits.slice(WARMUP).sort((a, b) => a - b);
      const mean = t.reduce((s, x) => s + x, 0) / t.length;
      return { median: t[t.length >> 1], p90: t[Math.floor(t.length * 0.9)], mean, max: t[t.length - 1] };
    }`;
  const childSrc = common + `
    onmessage = async (e) => {
      if (e.data instanceof ArrayBuffer) return received(e);
      if (e.data.port) { port = e.data.port; port.onmessage = received; }
      if (e.data.parent) { port = self; }
      if (e.data.steps) { postMessage({ done: await exchange(e.data.steps) }); }
    };`;
  const parentSrc = common + `
    onmessage = async (e) => {
      const out = {};
      for (const way of ['worker', 'channel']) {
        const child = new Worker(URL.createObjectURL(new Blob([${JSON.stringify(childSrc)}])));
        let childDone;
        const done = new Promise((r) => childDone = r);
        child.onmessage = (m) => { if (m.data instanceof ArrayBuffer) received(m); else if (m.data.done) childDone(m.data.done); };
        if (way === 'channel') {
          const ch = new MessageChannel();
          child.postMessage({ port: ch.port2 }, [ch.port2]);
          port = ch.port1;
          port.onmessage = received;
        } else {
          child.postMessage({ parent: true });
          port = child;
        }
        got = false; pending = null; spare = new ArrayBuffer(SIZE);
        child.postMessage({ steps: e.data });
        const parent = await exchange(e.data);
        out[way] = { parent, child: await done };
        child.terminate();
      }
      postMessage(out);
    };`;
  const parent = new Worker(URL.createObjectURL(new Blob([parentSrc])));
  return await new Promise((res) => { parent.onmessage = (e) => res(e.data); parent.postMessage(60); });
}
