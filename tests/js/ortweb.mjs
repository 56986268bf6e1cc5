// Run an ONNX classifier with onnxruntime-web's WASM backend, in Node.
//
//   node ortweb.mjs MODEL.onnx [MODEL2.onnx ...] < feeds.json
//
// feeds.json: a JSON list of rows, each {"input_ids": [...], "attention_mask": [...],
// "token_type_ids": [...]} (unpadded token ids; keys the model does not take are dropped).
// Each row is one session call of shape [1, n] (int64 -> BigInt64Array).
// Output: one JSON line per model, in argument order:
//   {"model": path, "inputs": [...], "logits": [[...], ...], "ms": ...}
// (several models in one call share the WASM module's start-up, about 2 s.)
import fs from 'node:fs';
import * as ort from 'onnxruntime-web';

const models = process.argv.slice(2);
if (!models.length) {
  console.error('usage: node ortweb.mjs MODEL.onnx [MODEL2.onnx ...] < feeds.json');
  process.exit(2);
}
ort.env.wasm.numThreads = 1; // deterministic, and no worker threads in Node
ort.env.logLevel = 'error';

const rows = JSON.parse(fs.readFileSync(0, 'utf8'));
for (const modelPath of models) {
  const session = await ort.InferenceSession.create(fs.readFileSync(modelPath), {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const t0 = performance.now();
  const logits = [];
  for (const row of rows) {
    const feeds = {};
    for (const name of session.inputNames) {
      let v = row[name];
      if (v === undefined) {
        if (name === 'token_type_ids') v = row.input_ids.map(() => 0);
        else if (name === 'attention_mask') v = row.input_ids.map(() => 1);
        else throw new Error(`feed has no ${name}, which ${modelPath} takes`);
      }
      feeds[name] = new ort.Tensor('int64', BigInt64Array.from(v, (x) => BigInt(x)), [1, v.length]);
    }
    const res = await session.run(feeds);
    logits.push(Array.from(res[session.outputNames[0]].data, Number));
  }
  const ms = performance.now() - t0;
  const inputs = session.inputNames;
  await session.release();
  process.stdout.write(JSON.stringify({ model: modelPath, inputs, logits, ms }) + '\n');
}
