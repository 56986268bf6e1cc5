// Classify texts with transformers.js, from a LOCAL edgetune bundle, with no network.
//
//   node classify.mjs BUNDLE_DIR [DTYPE] < texts.json
//
// BUNDLE_DIR needs the transformers.js layout: onnx/model.onnx (dtype fp32),
// onnx/model_quantized.onnx (q8), onnx/model_int8.onnx (int8), next to the bundle's
// config.json (with id2label), tokenizer.json and tokenizer_config.json.
// texts.json: a JSON list of strings, or of [text, pair] lists.
// Output: one JSON line per text, in input order:
//   {"index": i, "label": ..., "score": ..., "logits": [...], "pipeline": {"label", "score"}}
// Each text is run alone (batch of 1, unpadded), as edgetune's runtime runs dynamic int8.
// In Node, transformers.js runs the graph with onnxruntime-node (native CPU).
//
// Truncation: transformers.js 3.x truncates AFTER adding special tokens (a long text loses its
// final [SEP]; of a pair, only the second text is cut), unlike the Rust tokenizers that wrote
// tokenizer.json. "logits"/"label" come from encode() below, which truncates the way the Rust
// tokenizers do (longest first, special tokens kept); "pipeline" is the stock pipeline, as an
// app would call it, with transformers.js's own truncation.
import fs from 'node:fs';
import path from 'node:path';
import { Tensor } from '@huggingface/transformers';
import { localPipeline } from './local.mjs';

const [clf, , bundle] = await localPipeline('text-classification', 'classify.mjs', 'texts.json');
const rows = JSON.parse(fs.readFileSync(0, 'utf8'));
let maxLength;
try {
  maxLength = JSON.parse(fs.readFileSync(path.join(bundle, 'edgetune.json'), 'utf8')).max_length;
} catch {
  maxLength = undefined; // the tokenizer's model_max_length
}

const id2label = clf.model.config.id2label;

// Tokens of text (and pair), truncated to maxLength like the Rust tokenizers' LongestFirst.
function encode(tok, text, pair, maxLength) {
  const a = tok._encode_text(text);
  const b = pair === undefined ? null : tok._encode_text(pair);
  const post = (x, y) =>
    tok.post_processor
      ? tok.post_processor(x, y, { add_special_tokens: true })
      : { tokens: [...x, ...(y ?? [])] };
  if (maxLength) {
    const budget = maxLength - post([], b === null ? null : []).tokens.length;
    if (b === null) a.length = Math.min(a.length, budget);
    else if (a.length + b.length > budget) {
      // The shorter text keeps up to half the budget (the first text on a tie), the longer
      // one the rest: what the Rust tokenizers' LongestFirst gives.
      const half = Math.floor(budget / 2);
      if (a.length > b.length) {
        b.length = Math.min(b.length, half);
        a.length = Math.min(a.length, budget - b.length);
      } else {
        a.length = Math.min(a.length, half);
        b.length = Math.min(b.length, budget - a.length);
      }
    }
  }
  const { tokens, token_type_ids } = post(a, b);
  const ids = tok.model.convert_tokens_to_ids(tokens);
  const tensor = (v) => new Tensor('int64', BigInt64Array.from(v, (x) => BigInt(x)), [1, v.length]);
  return {
    input_ids: tensor(ids),
    attention_mask: tensor(ids.map(() => 1)),
    token_type_ids: tensor(token_type_ids ?? ids.map(() => 0)),
  };
}

const out = [];
for (let i = 0; i < rows.length; i++) {
  const [text, pair] = Array.isArray(rows[i]) ? rows[i] : [rows[i], undefined];
  const enc = encode(clf.tokenizer, text, pair, maxLength ?? clf.tokenizer.model_max_length);
  const { logits } = await clf.model(enc);
  const z = Array.from(logits.data, Number);
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  const best = z.indexOf(m);
  // The stock pipeline too (single texts only: it takes no pairs this way).
  const pipe = pair === undefined ? (await clf(text))[0] : null;
  out.push(
    JSON.stringify({
      index: i,
      label: id2label[best],
      score: e[best] / s,
      logits: z,
      ids: Array.from(enc.input_ids.data, Number),
      pipeline: pipe,
    }),
  );
}
process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
