// What classify.mjs and tag.mjs share: the command line, transformers.js pointed at the
// LOCAL bundle with no network, and the pipeline loaded one thread at a time.
import path from 'node:path';
import { env, pipeline } from '@huggingface/transformers';

// [pipeline of `task` over the bundle named on the command line, dtype, bundle path]
export async function localPipeline(task, script, inputs) {
  const [bundleArg, dtype = 'fp32'] = process.argv.slice(2);
  if (!bundleArg) {
    console.error(`usage: node ${script} BUNDLE_DIR [fp32|q8|int8|...] < ${inputs}`);
    process.exit(2);
  }
  const bundle = path.resolve(bundleArg);
  env.allowRemoteModels = false; // never reach the hub
  env.allowLocalModels = true;
  env.localModelPath = path.dirname(bundle) + path.sep;
  env.useBrowserCache = false;
  env.useFSCache = false;
  const pipe = await pipeline(task, path.basename(bundle), {
    dtype,
    device: 'cpu',
    session_options: { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 },
  });
  return [pipe, dtype, bundle];
}
