// The page: the bundle's model (page.json, written by `make web`) run by ONNX Runtime Web's wasm
// backend on this device. Try it: draw a digit (image models) or type/paste a row (vector models);
// evaluate: held-out rows, checked against Python's ONNX Runtime. `?threads=N` asks for N threads
// (granted only when the page is cross-origin isolated, as `make serve` serves it).

import * as ort from './ort/ort.wasm.bundle.min.mjs';
import { evaluate, fetchArray, loadRows, verdicts } from './evaluate.js';
import { checkValues, parseRow } from './fields.js';
import { INK_SIZE, Pad, showInput } from './pad.js';
import { digitInput } from './preprocess.js';

const $ = (id) => document.getElementById(id);
const page = { sessions: new Map(), references: new Map(), rows: null, input: null, busy: false, again: false };
window.mlpPage = page;  // for the console and the tests: spec, variant, input, last results

async function main() {
  page.spec = await (await fetch('page.json')).json();
  const { model } = page.spec;
  document.title = `${model.model_name} in the browser`;
  $('model').textContent = `${model.model_name} v${model.version} (${model.dataset})`;
  $('runtime').textContent = `onnxruntime-web ${page.spec.runtime.version}, wasm`;
  const asked = Number(new URLSearchParams(location.search).get('threads')) || 0;  // 0: ORT's choice
  ort.env.wasm.numThreads = crossOriginIsolated ? asked : 1;  // threads need SharedArrayBuffer
  buildVariants();
  buildBars();
  (page.spec.input.kind === 'drawing' ? buildPad : buildFields)();
  buildEvaluation();
  await useVariant(page.spec.default_variant);
  $('threads').textContent = `${ort.env.wasm.numThreads} (${crossOriginIsolated ? 'cross-origin isolated'
    : isSecureContext ? 'not cross-origin isolated, so one; `make serve` sends the headers that allow more'
      : 'not a secure context, so one: threads need localhost or HTTPS'})`;
  document.body.dataset.ready = 'true';
}

function buildVariants() {
  const select = $('variant');
  const names = Object.keys(page.spec.variants);  // page.json's keys are sorted: the reference first
  for (const name of [page.spec.reference_variant, ...names.filter((n) => n !== page.spec.reference_variant)]) select.add(new Option(name, name));
  select.value = page.spec.default_variant;
  select.addEventListener('change', () => useVariant(select.value));
}

async function session(variant) {
  if (!page.sessions.has(variant)) {
    const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
    page.sessions.set(variant, await ort.InferenceSession.create(page.spec.variants[variant].file, options));
  }
  return page.sessions.get(variant);
}

async function useVariant(variant) {
  $('variant').disabled = true;
  try {
    await session(variant);
    page.variant = variant;
    $('eval-result').replaceChildren();
    await predict();
  } catch (error) {
    showError(error);
  } finally {
    $('variant').disabled = false;
    $('variant').value = page.variant;
  }
}

/** Run the current input; calls that arrive while one runs are folded into one more run after it. */
async function predict() {
  if (!page.variant) return;  // inputs built before the first session: useVariant predicts once it is up
  if (page.busy) { page.again = true; return; }
  page.busy = true;
  try {
    do {
      page.again = false;
      const { model } = page.spec, input = page.input, variant = page.variant;  // as they were when the call began
      if (!input) { showProbabilities(null, 0, variant); continue; }
      const feeds = { [model.input_name]: new ort.Tensor('float32', input, [1, ...model.input_shape]) };
      const started = performance.now();
      const output = await (await session(variant)).run(feeds);
      showProbabilities(output[model.output_name].data, performance.now() - started, variant);
    } while (page.again);
  } catch (error) {
    showError(error);
  } finally {
    page.busy = false;
  }
}

function buildBars() {
  for (const name of page.spec.model.classes) {
    const row = document.createElement('div');
    row.className = 'bar';
    row.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
    row.querySelector('.label').textContent = name;
    $('bars').append(row);
  }
}

function showProbabilities(probs, ms, variant) {
  const rows = $('bars').children;
  let top = 0;
  for (let c = 0; c < rows.length; c++) {
    const p = probs ? probs[c] : 0;
    if (probs && p > probs[top]) top = c;
    rows[c].querySelector('.fill').style.width = `${(100 * p).toFixed(1)}%`;
    rows[c].querySelector('.value').textContent = probs ? `${(100 * p).toFixed(1)}%` : '';
  }
  for (let c = 0; c < rows.length; c++) rows[c].classList.toggle('top', Boolean(probs) && c === top);
  $('top-class').textContent = probs ? page.spec.model.classes[top] : '–';
  $('top-prob').textContent = probs ? `${(100 * probs[top]).toFixed(1)}%` : '';
  $('call').textContent = probs ? `${variant}, ${ms.toFixed(2)} ms` : variant;
  page.last = probs ? { top: page.spec.model.classes[top], probs: Array.from(probs), variant } : null;
  $('error').textContent = '';
}

function buildPad() {
  const { height, width, box } = page.spec.input;
  $('drawing').hidden = false;
  const seen = $('seen');
  [seen.width, seen.height] = [width, height];
  const pad = new Pad($('pad'), () => {
    page.input = digitInput(pad.ink, INK_SIZE, INK_SIZE, { height, width, box });
    showInput(seen, page.input, width, height);
    predict();
  });
  page.pad = pad;
  $('clear').addEventListener('click', () => { pad.clear(); page.input = null; showInput(seen, null, width, height); predict(); });
}

function buildFields() {
  const { model, input } = page.spec, range = { min: model.input_min, max: model.input_max };
  $('fields').hidden = false;
  for (const name of input.fields) {
    const label = document.createElement('label');
    label.innerHTML = '<span></span><input type="number" min="0" step="any" value="0">';
    label.querySelector('span').textContent = name;
    $('field-grid').append(label);
  }
  const boxes = [...$('field-grid').querySelectorAll('input')];
  const update = () => {
    try {
      page.input = checkValues(boxes.map((b) => Number(b.value)), range);
      predict();
    } catch (error) { showError(error); }
  };
  boxes.forEach((b) => b.addEventListener('input', update));
  $('use-row').addEventListener('click', () => {
    try {
      const { values, label } = parseRow($('row').value, input.fields.length, range);
      values.forEach((v, i) => { boxes[i].value = String(v); });
      $('row-label').textContent = label ? `label in the row: ${label}` : '';
      update();
    } catch (error) { showError(error); }
  });
  update();
}

function buildEvaluation() {
  const { rows } = page.spec.evaluation, select = $('eval-rows');
  for (const count of new Set([100, 1000, rows].filter((n) => n <= rows))) select.add(new Option(`${count} rows`, count));
  select.value = String(Math.min(1000, rows));
  $('eval-split').textContent = `${rows} held-out rows (${page.spec.evaluation.split})`;
  $('evaluate').addEventListener('click', () => runEvaluation(Number(select.value)).catch(showError));
}

async function runEvaluation(count) {
  const { spec } = page, variant = page.variant;
  $('evaluate').disabled = $('variant').disabled = true;
  $('eval-result').replaceChildren();
  try {
    page.rows ??= await loadRows(spec.evaluation);
    const file = spec.evaluation.reference[variant];
    if (!page.references.has(variant)) page.references.set(variant, await fetchArray(file.file, file.dtype));
    const progress = async (done) => { $('eval-progress').textContent = `${done} / ${count}`; await new Promise((r) => setTimeout(r)); };
    const result = await evaluate(ort, await session(variant), spec.model, page.rows, page.references.get(variant), count, { onProgress: progress });
    result.variant = variant;
    result.checks = verdicts(result, variant, spec.evaluation, spec.reference_variant);
    const everyRow = count === spec.evaluation.rows && spec.evaluation.every_row;  // the card's rows
    result.cardAccuracy = everyRow ? spec.variants[variant].card_accuracy : null;
    page.lastEvaluation = result;
    showEvaluation(result);
  } finally {
    $('evaluate').disabled = $('variant').disabled = false;
    $('eval-progress').textContent = '';
  }
}

function showEvaluation(r) {
  const pct = (x) => `${(100 * x).toFixed(2)}%`;
  const lines = [
    ['variant', r.variant],
    ['rows', `${r.rows}, one call each`],
    ['accuracy', `${pct(r.accuracy)} (Python ORT: ${pct(r.referenceAccuracy)}${r.cardAccuracy == null ? '' : `; model card: ${pct(r.cardAccuracy)}`})`],
    ['argmax agreement with Python', `${r.agree} / ${r.rows} (${pct(r.agreement)})`],
    ['max |Δp| vs Python', r.maxAbs.toExponential(2)],
    ['latency per call', `p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms (timer: ${crossOriginIsolated ? '5' : '100'} µs steps)`],
    ...r.checks.map((c) => [c.name, `${c.ok ? 'meets' : 'MISSES'} target (${c.want})`]),
  ];
  const table = document.createElement('table');
  for (const [name, value] of lines) table.insertRow().append(...[name, value].map((text) => Object.assign(document.createElement('td'), { textContent: text })));
  table.dataset.verdict = r.checks.every((c) => c.ok) ? 'pass' : 'fail';
  $('eval-result').replaceChildren(table);
}

function showError(error) {
  console.error(error);
  $('error').textContent = String(error.message ?? error);
}

main().catch(showError);
