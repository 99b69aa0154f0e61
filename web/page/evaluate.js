// The evaluation panel: held-out rows through the model in this browser, held to the probabilities
// Python's ONNX Runtime computed for the same rows (page.json "evaluation", written by `make web`).

const TYPES = { uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array };

/** A typed array from a file of page.json's evaluation spec; gzip is undone here unless the server
 * already did (some send .gz with Content-Encoding: gzip, and the browser decodes it). */
export async function fetchArray(url, dtype) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  let bytes = new Uint8Array(await response.arrayBuffer());
  const decoded = /gzip/.test(response.headers.get('content-encoding') ?? '');
  if (!decoded && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return new TYPES[dtype](bytes.buffer, bytes.byteOffset, bytes.byteLength / TYPES[dtype].BYTES_PER_ELEMENT);
}

/** The rows as the model's float32 inputs (stored / divide, rounded to float32 as Python's were). */
export async function loadRows(spec) {
  const stored = await fetchArray(spec.inputs.file, spec.inputs.dtype);
  const inputs = new Float32Array(stored.length);
  for (let i = 0; i < stored.length; i++) inputs[i] = stored[i] / spec.inputs.divide;
  return { inputs, labels: await fetchArray(spec.labels.file, spec.labels.dtype), sampleSize: spec.inputs.shape[1] };
}

/** Nearest-rank percentile of ascending `sorted`, q in [0, 1]. */
export function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export function argmax(values, offset, count) {
  let best = 0;
  for (let c = 1; c < count; c++) if (values[offset + c] > values[offset + best]) best = c;
  return best;
}

/**
 * Run the first `count` rows one call each (the page's call shape, and the reference's), after
 * `warmup` untimed calls. Only `session.run` is timed; tensors are built before.
 * Returns accuracy, agreement and max |Δp| against `reference` (N x classes float32), p50/p99 in ms.
 */
export async function evaluate(ort, session, model, rows, reference, count, { warmup = 20, onProgress } = {}) {
  const classes = model.classes.length, shape = [1, ...model.input_shape];
  const tensor = (i) => ({ [model.input_name]: new ort.Tensor('float32', rows.inputs.subarray(i * rows.sampleSize, (i + 1) * rows.sampleSize), shape) });
  for (let i = 0; i < Math.min(warmup, count); i++) await session.run(tensor(i));
  const times = new Float64Array(count);
  let correct = 0, referenceCorrect = 0, agree = 0, maxAbs = 0;
  for (let i = 0; i < count; i++) {
    const feeds = tensor(i);
    const started = performance.now();
    const output = await session.run(feeds);
    times[i] = performance.now() - started;
    const probs = output[model.output_name].data, offset = i * classes;
    const top = argmax(probs, 0, classes), referenceTop = argmax(reference, offset, classes);
    correct += top === rows.labels[i];
    referenceCorrect += referenceTop === rows.labels[i];
    agree += top === referenceTop;
    for (let c = 0; c < classes; c++) maxAbs = Math.max(maxAbs, Math.abs(probs[c] - reference[offset + c]));
    if (onProgress && i % 250 === 249) await onProgress(i + 1);
  }
  times.sort();
  return {
    rows: count, correct, accuracy: correct / count, referenceAccuracy: referenceCorrect / count,
    agree, agreement: agree / count, maxAbs, p50: percentile(times, 0.5), p99: percentile(times, 0.99),
  };
}

/** Verdicts against page.json's targets. The reference variant (fp32): argmax agreement, max |Δp| and
 * accuracy equal to Python's on the same rows (on every row, Python's is the model card's); a variant:
 * argmax agreement (its accuracy is shown beside Python's, a quantised kernel may round differently). */
export function verdicts(result, variant, evaluation, referenceVariant) {
  const reference = variant === referenceVariant;
  const target = reference ? evaluation.targets[referenceVariant] : evaluation.targets.variant;
  const checks = [{ name: 'argmax agreement', ok: result.agreement >= target.min_agreement, want: `≥ ${(100 * target.min_agreement).toFixed(1)}%` }];
  if (reference) {
    checks.push({ name: 'max |Δp|', ok: result.maxAbs <= target.max_abs, want: `≤ ${target.max_abs.toExponential(0)}` });
    checks.push({ name: 'accuracy', ok: result.correct === Math.round(result.referenceAccuracy * result.rows), want: "= Python's" });
  }
  return checks;
}
