// One sample typed or pasted as numbers, for models whose contract is a vector (Otto: 93 counts).

/**
 * Parse a pasted CSV row into `count` values. Accepts the values alone, or a row of the training
 * file: an id first and/or a label last (Kaggle's train.csv: id, feat_1..feat_93, target).
 * Returns {values: Float32Array, label: string | null} or throws an Error saying what is wrong.
 */
export function parseRow(text, count, range) {
  const cells = text.trim().split(/[,;\t ]+/).filter((cell) => cell !== '');
  let label = null;
  if (cells.length === count + 2 || (cells.length === count + 1 && isNaN(Number(cells[cells.length - 1])))) {
    label = cells.pop();
  }
  if (cells.length === count + 1) cells.shift();  // the id
  if (cells.length !== count) throw new Error(`expected ${count} values (optionally an id first, a label last), got ${cells.length}`);
  return { values: checkValues(cells.map(Number), range), label };
}

/** The values as float32, refused when not finite or outside the contract's [min, max]. */
export function checkValues(numbers, range) {
  numbers.forEach((value, i) => {
    if (!Number.isFinite(value)) throw new Error(`value ${i + 1} is not a number`);
    if (value < range.min || (range.max !== null && value > range.max)) {
      throw new Error(`value ${i + 1} (${value}) is outside the model's range [${range.min}, ${range.max ?? '∞'}]`);
    }
  });
  return Float32Array.from(numbers);
}
