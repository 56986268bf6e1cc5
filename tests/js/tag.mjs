// Tag texts with transformers.js's token-classification pipeline, from a LOCAL edgetune
// bundle, with no network.
//
//   node tag.mjs BUNDLE_DIR [DTYPE] < texts.json
//
// BUNDLE_DIR needs the transformers.js layout (see classify.mjs). texts.json: a JSON list of
// strings. Output: one JSON line per text, in input order:
//   {"index": i, "ids": [...], "logits": [[...] per token], "pipeline": [{entity, score, index, word}]}
// Each text is run alone (batch of 1, unpadded), as edgetune's runtime runs dynamic int8.
// transformers.js 3.x's pipeline has no aggregation and no character offsets: it returns one
// entry per token whose tag is not O (edgetune's aggregation "none"), indexed in the full
// sequence ([CLS] is 0).
import fs from 'node:fs';
import { localPipeline } from './local.mjs';

const [tagger] = await localPipeline('token-classification', 'tag.mjs', 'texts.json');
const texts = JSON.parse(fs.readFileSync(0, 'utf8'));

const out = [];
for (let i = 0; i < texts.length; i++) {
  const inputs = tagger.tokenizer([texts[i]], { truncation: true });
  const { logits } = await tagger.model(inputs);
  const [, n, k] = logits.dims;
  const z = Array.from(logits.data, Number);
  const rows = Array.from({ length: n }, (_, t) => z.slice(t * k, (t + 1) * k));
  out.push(
    JSON.stringify({
      index: i,
      ids: Array.from(inputs.input_ids.data, Number),
      logits: rows,
      pipeline: await tagger(texts[i]),
    }),
  );
}
process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
