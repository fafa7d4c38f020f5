// Runs @upscalerjs/esrgan-thick TF.js layers models in Node with the pure-JS CPU backend (no native code).
// Usage: node run_tfjs.js JOBS.json
// JOBS.json: [{"model": DIR, "input": FILE, "shape": [N, H, W], "output": FILE}, ...]
// Inputs are little-endian float32 NHWC (N,H,W,3) in [0,1]; outputs get (N,H*s,W*s,3), unclipped.
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

function first(inputs) { return Array.isArray(inputs) ? inputs[0] : inputs; }

// The package's custom layers: MultiplyBeta (x * 0.2) and PixelShuffle{s}x (depth_to_space, NHWC).
class MultiplyBeta extends tf.layers.Layer {
  constructor(config) { super(config || {}); this.beta = 0.2; }
  call(inputs) { return tf.mul(first(inputs), this.beta); }
  static get className() { return "MultiplyBeta"; }
}
tf.serialization.registerClass(MultiplyBeta);
for (const s of [2, 3, 4, 8]) {
  class PixelShuffle extends tf.layers.Layer {
    constructor(config) { super(config || {}); this.scale = s; }
    computeOutputShape(shape) {
      return [shape[0], shape[1] === null ? null : shape[1] * s, shape[2] === null ? null : shape[2] * s, 3];
    }
    call(inputs) { return tf.depthToSpace(first(inputs), s, "NHWC"); }
    static get className() { return `PixelShuffle${s}x`; }
  }
  tf.serialization.registerClass(PixelShuffle);
}

// An IOHandler reading model.json and its shards from disk (pure tfjs has no file:// loader).
function fileHandler(dir) {
  return {
    load: async () => {
      const meta = JSON.parse(fs.readFileSync(path.join(dir, "model.json"), "utf8"));
      const specs = [];
      const buffers = [];
      for (const group of meta.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return { modelTopology: meta.modelTopology, weightSpecs: specs, weightData, format: meta.format };
    },
  };
}

(async () => {
  await tf.setBackend("cpu");
  const jobs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const report = [];
  for (const job of jobs) {
    const model = await tf.loadLayersModel(fileHandler(job.model));
    const raw = fs.readFileSync(job.input);
    const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const [n, h, w] = job.shape;
    const x = tf.tensor4d(data, [n, h, w, 3]);
    const y = model.predict(x);
    const out = await y.data();
    fs.writeFileSync(job.output, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
    report.push({ model: job.model, shape: y.shape });
    tf.dispose([x, y]);
    model.dispose();
  }
  console.log(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, jobs: report }));
})().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
