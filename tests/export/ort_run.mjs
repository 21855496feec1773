// Runs ONNX models exported by kdbench in ONNX Runtime's WebAssembly build
// (onnxruntime-web under Node, no browser) on the inputs the test wrote, one
// sample at a time (batch 1, as the test's kdbench reference runs), and
// writes each model's probabilities and logits as little-endian float32.
//
// usage: node ort_run.mjs ORT_DIR INPUT.f32 N FEATURES OUT_DIR NAME=DIMS...
//   ORT_DIR   the folder npm installed onnxruntime-web into (has node_modules/)
//   INPUT.f32 N x FEATURES float32 pixels scaled x/255
//   NAME=DIMS model OUT_DIR/NAME.onnx with input dims per sample ("784" or
//             "1,28,28"); writes OUT_DIR/NAME.probs.f32 and NAME.logits.f32
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [ortDir, inputPath, nArg, featArg, outDir, ...models] = process.argv.slice(2);
if (!models.length) {
  console.error('usage: node ort_run.mjs ORT_DIR INPUT.f32 N FEATURES OUT_DIR NAME=DIMS...');
  process.exit(2);
}
const require = createRequire(join(ortDir, 'package.json'));
const ort = await import(pathToFileURL(require.resolve('onnxruntime-web')).href);
ort.env.wasm.numThreads = 1; // no worker threads: deterministic and cheap to start
ort.env.logLevel = 'error';

const n = Number(nArg), feat = Number(featArg);
const buf = readFileSync(inputPath);
const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
if (x.length !== n * feat) throw new Error(`input has ${x.length} floats, ${n * feat} expected`);

const t0 = Date.now();
for (const spec of models) {
  const [name, dimsText] = spec.split('=');
  const dims = dimsText.split(',').map(Number);
  const session = await ort.InferenceSession.create(join(outDir, name + '.onnx'));
  let probs = null, logits = null;
  for (let i = 0; i < n; i++) {
    const input = new ort.Tensor('float32', x.slice(i * feat, (i + 1) * feat), [1, ...dims]);
    const r = await session.run({ input });
    const k = r.probs.data.length;
    if (!probs) { probs = new Float32Array(n * k); logits = new Float32Array(n * k); }
    probs.set(r.probs.data, i * k);
    logits.set(r.logits.data, i * k);
  }
  writeFileSync(join(outDir, name + '.probs.f32'), Buffer.from(probs.buffer));
  writeFileSync(join(outDir, name + '.logits.f32'), Buffer.from(logits.buffer));
  await session.release();
  console.log(`ort ${ort.env.versions.web}: ${name}: ${n} samples, probs[0] = ` +
              Array.from(probs.slice(0, probs.length / n), (v) => v.toFixed(4)).join(' '));
}
console.log(`ort: ${models.length} models x ${n} samples in ${Date.now() - t0} ms`);
