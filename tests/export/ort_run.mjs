// Runs ONNX models exported by kdbench in ONNX Runtime's WebAssembly build
// (onnxruntime-web under Node, no browser) on the inputs the test wrote, all
// N samples in one batch (as the test's kdbench reference runs them: dynamic
// int8 takes one range per batch on both sides), prints the first sample's
// probabilities, and writes each model's probabilities and logits as
// little-endian float32.
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
  const r = await session.run({ input: new ort.Tensor('float32', x, [n, ...dims]) });
  const probs = r.probs.data, logits = r.logits.data;
  if (probs.length % n || logits.length !== probs.length)
    throw new Error(`${name}: ${probs.length} probabilities for ${n} samples`);
  writeFileSync(join(outDir, name + '.probs.f32'), Buffer.from(probs.buffer, probs.byteOffset, probs.byteLength));
  writeFileSync(join(outDir, name + '.logits.f32'), Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
  await session.release();
  console.log(`ort ${ort.env.versions.web}: ${name}: ${n} samples, probs[0] = ` +
              Array.from(probs.slice(0, probs.length / n), (v) => v.toFixed(4)).join(' '));
}
console.log(`ort: ${models.length} models x ${n} samples in ${Date.now() - t0} ms`);
