// Difference statistics between engine outputs and goldens (test-side arithmetic only).

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates as a failure
  }
  return m;
}

/** Relative L2 difference ||a - b|| / ||b|| of two rows. */
export function relRow(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** argmax, lowest index on ties */
export function argmax(a: ArrayLike<number>, off = 0, n = a.length): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
  return best;
}

/** Row-wise statistics of logits-like [rows, width] arrays; accumulate over several prompts. */
export class RowStats {
  maxAbs = 0;
  sumSqDiff = 0;
  sumSqRef = 0;
  minCos = 1;
  top1Agree = 0;
  rows = 0;

  add(got: ArrayLike<number>, ref: ArrayLike<number>, width: number): this {
    this.maxAbs = Math.max(this.maxAbs, maxAbsDiff(got, ref));
    const rows = ref.length / width;
    for (let r = 0; r < rows; r++) {
      let dot = 0;
      let ng = 0;
      let nr = 0;
      for (let i = r * width; i < (r + 1) * width; i++) {
        const d = got[i] - ref[i];
        this.sumSqDiff += d * d;
        this.sumSqRef += ref[i] * ref[i];
        dot += got[i] * ref[i];
        ng += got[i] * got[i];
        nr += ref[i] * ref[i];
      }
      this.minCos = Math.min(this.minCos, dot / Math.sqrt(ng * nr));
      if (argmax(got, r * width, width) === argmax(ref, r * width, width)) this.top1Agree++;
      this.rows++;
    }
    return this;
  }

  get relRms(): number {
    return Math.sqrt(this.sumSqDiff / this.sumSqRef);
  }
}

export const fmt = (x: number): string => (x === 0 ? '0' : x < 1e-3 || x >= 1e4 ? x.toExponential(2) : x.toPrecision(3));
