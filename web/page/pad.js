// The drawing pad: pointer strokes (mouse, pen or finger) into ink, shown white on black as MNIST's
// digits are. The ink is preprocess.js's grid at the canvas's own resolution; CSS scales the canvas.

import { inkSegment } from './preprocess.js';

export const INK_SIZE = 280;  // the ink grid's pixels per side (10x MNIST's 28)
export const BRUSH_RADIUS = 10;  // pixels of the ink grid: after scaling, about MNIST's 2-3 pixel strokes

export class Pad {
  /** @param {HTMLCanvasElement} canvas  INK_SIZE x INK_SIZE; `onInk()` is called as the ink changes */
  constructor(canvas, onInk) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d');
    this.onInk = onInk;
    this.clear();
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    for (const type of ['pointerup', 'pointercancel']) canvas.addEventListener(type, (e) => this.up(e));
  }

  clear() {
    this.ink = new Float64Array(INK_SIZE * INK_SIZE);
    this.strokes = [];  // [[[x, y], ...], ...] in ink pixels: what the tests feed the Python reference
    this.drawing = null;  // the pointerId drawing now (Firefox's mouse is 0: never test it for truth)
    this.paint();
  }

  point(event) {  // the pointer in ink pixels, whatever size CSS gives the canvas
    const box = this.canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * INK_SIZE / box.width, (event.clientY - box.top) * INK_SIZE / box.height];
  }

  down(event) {  // one pointer draws at a time (a second finger is ignored); the main button only
    if (this.drawing !== null || event.button !== 0) return;
    this.canvas.setPointerCapture(event.pointerId);
    this.drawing = event.pointerId;
    this.strokes.push([this.point(event)]);
    this.extend();
  }

  move(event) {
    if (this.drawing !== event.pointerId) return;
    const coalesced = event.getCoalescedEvents?.();
    for (const e of coalesced?.length ? coalesced : [event]) this.strokes.at(-1).push(this.point(e));
    this.extend();
  }

  up(event) {
    if (this.drawing !== event.pointerId) return;
    this.drawing = null;
    this.onInk(true);
  }

  extend() {  // ink the stroke's new segments, up to its last point
    const stroke = this.strokes.at(-1);
    stroke.inked ??= 0;
    for (let k = stroke.inked; k < stroke.length; k++) {
      const [ax, ay] = stroke[Math.max(0, k - 1)], [bx, by] = stroke[k];
      inkSegment(this.ink, INK_SIZE, INK_SIZE, BRUSH_RADIUS, ax, ay, bx, by);
    }
    stroke.inked = stroke.length;
    this.paint();
    this.onInk(false);
  }

  paint() {
    const image = this.context.createImageData(INK_SIZE, INK_SIZE);
    for (let i = 0; i < this.ink.length; i++) {
      const v = Math.round(255 * this.ink[i]);
      image.data.set([v, v, v, 255], 4 * i);
    }
    this.context.putImageData(image, 0, 0);
  }
}

/** Show a model input (values in [0, 1], height x width) on a small canvas: what the model sees. */
export function showInput(canvas, input, width, height) {
  const context = canvas.getContext('2d'), image = context.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const v = Math.round(255 * (input ? input[i] : 0));
    image.data.set([v, v, v, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
}
