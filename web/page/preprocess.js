// A drawing -> the model's input, the way MNIST's digits were made (LeCun, Cortes & Burges): the ink's
// bounding box scaled into a `box` x `box` square keeping its aspect (area averaging, so grey levels
// at the edges), then placed in the `width` x `height` frame so that its centre of mass sits at the
// frame's centre. White ink on black, values in [0, 1]: what the model was trained on.
//
// Pure functions on plain arrays (no DOM): the page, Node and the tests run the same code, and
// tests/digit_reference.py is the same steps in numpy, held to these within 1/255.

/**
 * Add one stroke segment to the ink: a round brush of `radius` pixels from (ax, ay) to (bx, by).
 * A pixel's ink is the brush's coverage of its centre, min(1, max(0, radius + 0.5 - distance)), and
 * ink only grows (max), so the order strokes are drawn in does not matter.
 * @param {Float64Array} ink  height x width, row-major, values in [0, 1]; updated in place
 */
export function inkSegment(ink, width, height, radius, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - radius - 1));
  const x1 = Math.min(width - 1, Math.ceil(Math.max(ax, bx) + radius + 1));
  const y0 = Math.max(0, Math.floor(Math.min(ay, by) - radius - 1));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(ay, by) + radius + 1));
  for (let py = y0; py <= y1; py++) {
    const cy = py + 0.5;
    for (let px = x0; px <= x1; px++) {
      const cx = px + 0.5;
      let t = len2 > 0 ? ((cx - ax) * dx + (cy - ay) * dy) / len2 : 0;
      t = Math.min(1, Math.max(0, t));
      const ex = cx - (ax + t * dx), ey = cy - (ay + t * dy);
      const cover = Math.min(1, Math.max(0, radius + 0.5 - Math.sqrt(ex * ex + ey * ey)));
      const i = py * width + px;
      if (cover > ink[i]) ink[i] = cover;
    }
  }
}

/** Ink of whole strokes ([[[x, y], ...], ...], pixel units): every segment, a lone point as a dot. */
export function renderStrokes(strokes, width, height, radius) {
  const ink = new Float64Array(width * height);
  for (const stroke of strokes) {
    for (let k = 0; k < stroke.length; k++) {
      const [ax, ay] = stroke[Math.max(0, k - 1)], [bx, by] = stroke[k];
      inkSegment(ink, width, height, radius, ax, ay, bx, by);
    }
  }
  return ink;
}

/** Averaging weights of an area resample from n source pixels to m: w[i][k] = overlap of source pixel
 * k with output pixel i's span [i n/m, (i+1) n/m), divided by the span's length. */
function areaWeights(n, m) {
  const span = n / m, weights = [];
  for (let i = 0; i < m; i++) {
    const lo = i * span, hi = (i + 1) * span, row = new Float64Array(n);
    for (let k = Math.floor(lo); k < Math.min(n, Math.ceil(hi)); k++) {
      row[k] = (Math.min(hi, k + 1) - Math.max(lo, k)) / span;
    }
    weights.push(row);
  }
  return weights;
}

/**
 * The model's input for a drawing: Float32Array(height * width), or null when there is no ink.
 * 1. bounding box of the pixels with ink > 0;
 * 2. area-resampled to round(w s) x round(h s), s = box / max(w, h) (aspect kept; round = Math.round);
 * 3. centre of mass (cx, cy), pixel centres at i + 0.5, moved to the frame's centre: the resampled
 *    image's left edge goes to column Math.round(width / 2 - cx), likewise for rows; ink past the
 *    frame is dropped.
 * @param {Float64Array} ink  inkHeight x inkWidth, row-major, values in [0, 1]
 * @param {{height: number, width: number, box: number}} frame  e.g. MNIST: 28, 28, 20
 */
export function digitInput(ink, inkWidth, inkHeight, frame) {
  let x0 = inkWidth, x1 = -1, y0 = inkHeight, y1 = -1;
  for (let y = 0; y < inkHeight; y++) {
    for (let x = 0; x < inkWidth; x++) {
      if (ink[y * inkWidth + x] > 0) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1, scale = frame.box / Math.max(w, h);
  const ow = Math.max(1, Math.round(w * scale)), oh = Math.max(1, Math.round(h * scale));
  const wx = areaWeights(w, ow), wy = areaWeights(h, oh);
  const rows = [];  // h x ow: each crop row resampled along x
  for (let y = 0; y < h; y++) {
    const row = new Float64Array(ow), base = (y0 + y) * inkWidth + x0;
    for (let i = 0; i < ow; i++) {
      let sum = 0;
      for (let k = 0; k < w; k++) sum += wx[i][k] * ink[base + k];
      row[i] = sum;
    }
    rows.push(row);
  }
  const small = new Float64Array(oh * ow);  // oh x ow: then along y
  let mass = 0, mx = 0, my = 0;
  for (let j = 0; j < oh; j++) {
    for (let i = 0; i < ow; i++) {
      let sum = 0;
      for (let k = 0; k < h; k++) sum += wy[j][k] * rows[k][i];
      small[j * ow + i] = sum;
      mass += sum; mx += sum * (i + 0.5); my += sum * (j + 0.5);
    }
  }
  const left = Math.round(frame.width / 2 - mx / mass), top = Math.round(frame.height / 2 - my / mass);
  const out = new Float32Array(frame.height * frame.width);
  for (let j = 0; j < oh; j++) {
    const y = top + j;
    if (y < 0 || y >= frame.height) continue;
    for (let i = 0; i < ow; i++) {
      const x = left + i;
      if (x >= 0 && x < frame.width) out[y * frame.width + x] = Math.min(1, small[j * ow + i]);
    }
  }
  return out;
}
