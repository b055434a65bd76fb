/**
 * Line charts as one self-contained SVG file, without dependencies: the benchmarks write one
 * next to their JSON (throughput over time, latency distribution, per-destination concurrency),
 * small enough to open in a browser or show in the README. Each panel is a plot with axes, round
 * tick values, a legend and one polyline per series; long series are thinned to at most
 * MAX_POINTS points so that the file stays small.
 */

export interface Series {
  name: string;
  /** [x, y] pairs; non-finite values are skipped. */
  points: [number, number][];
}

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Draw points as steps (a value holds until the next sample): gauges such as concurrency. */
  steps?: boolean;
}

const WIDTH = 760;
const PANEL_HEIGHT = 250;
const MARGIN = { left: 64, right: 170, top: 30, bottom: 42 };
const MAX_POINTS = 400;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** Text for an SVG text node or attribute. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick values covering [min, max]: steps of 1, 2 or 5 × 10^n, about `count` of them. */
export function ticks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function label(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return String(+v.toPrecision(4));
}

/** At most `max` points, evenly picked, first and last kept. */
function thin(points: [number, number][], max: number): [number, number][] {
  if (points.length <= max) return points;
  const out: [number, number][] = [];
  for (let i = 0; i < max; i++) out.push(points[Math.round((i * (points.length - 1)) / (max - 1))]!);
  return out;
}

function panelSvg(p: Panel, top: number): string {
  const w = WIDTH - MARGIN.left - MARGIN.right;
  const h = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
  const series = p.series.map((s) => ({ ...s, points: thin(s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)), MAX_POINTS) }));
  const all = series.flatMap((s) => s.points);
  const out: string[] = [`<g transform="translate(${MARGIN.left},${top + MARGIN.top})">`];
  out.push(`<text x="${w / 2}" y="-12" text-anchor="middle" font-weight="bold">${escapeXml(p.title)}</text>`);
  out.push(`<rect width="${w}" height="${h}" fill="none" stroke="#888"/>`);
  if (all.length === 0) {
    out.push(`<text x="${w / 2}" y="${h / 2}" text-anchor="middle" fill="#888">no data</text></g>`);
    return out.join('\n');
  }
  const xMin = Math.min(...all.map(([x]) => x));
  const xMax = Math.max(...all.map(([x]) => x), xMin + 1e-9);
  const yMin = Math.min(0, ...all.map(([, y]) => y));
  const yMax = Math.max(...all.map(([, y]) => y), yMin + 1);
  const xt = ticks(xMin, xMax);
  const yt = ticks(yMin, yMax);
  const X = (x: number) => ((x - xMin) / (xMax - xMin)) * w;
  const Y = (y: number) => h - ((y - yMin) / (yMax - yMin)) * h;
  const r = (n: number) => Math.round(n * 10) / 10;
  for (const t of xt) {
    out.push(`<line x1="${r(X(t))}" x2="${r(X(t))}" y1="0" y2="${h}" stroke="#eee"/>`);
    out.push(`<text x="${r(X(t))}" y="${h + 16}" text-anchor="middle">${label(t)}</text>`);
  }
  for (const t of yt) {
    out.push(`<line x1="0" x2="${w}" y1="${r(Y(t))}" y2="${r(Y(t))}" stroke="#eee"/>`);
    out.push(`<text x="-6" y="${r(Y(t)) + 4}" text-anchor="end">${label(t)}</text>`);
  }
  out.push(`<text x="${w / 2}" y="${h + 34}" text-anchor="middle">${escapeXml(p.xLabel)}</text>`);
  out.push(`<text transform="translate(-48,${h / 2}) rotate(-90)" text-anchor="middle">${escapeXml(p.yLabel)}</text>`);
  for (const [i, s] of series.entries()) {
    const color = COLORS[i % COLORS.length]!;
    const pts: string[] = [];
    for (const [j, [x, y]] of s.points.entries()) {
      if (p.steps && j > 0) pts.push(`${r(X(x))},${r(Y(s.points[j - 1]![1]))}`);
      pts.push(`${r(X(x))},${r(Y(y))}`);
    }
    if (pts.length > 0) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
    out.push(`<line x1="${w + 12}" x2="${w + 30}" y1="${10 + i * 16}" y2="${10 + i * 16}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${w + 34}" y="${14 + i * 16}">${escapeXml(s.name)}</text>`);
  }
  out.push('</g>');
  return out.join('\n');
}

/** One SVG document: a title line and the panels one below the other. */
export function renderSvg(title: string, panels: Panel[]): string {
  const height = 28 + panels.length * PANEL_HEIGHT;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="18" font-size="13">${escapeXml(title)}</text>`,
    ...panels.map((p, i) => panelSvg(p, 28 + i * PANEL_HEIGHT)),
    '</svg>',
    '',
  ].join('\n');
}

/** A rate per second from cumulative [seconds, count] samples (the difference between neighbours). */
export function rate(samples: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i < samples.length; i++) {
    const [t0, c0] = samples[i - 1]!;
    const [t1, c1] = samples[i]!;
    if (t1 > t0) out.push([t1, (c1 - c0) / (t1 - t0)]);
  }
  return out;
}

/** The latency distribution as [percentile, value] pairs from sorted values. */
export function percentileCurve(sorted: number[], percentiles: readonly number[] = [0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]): [number, number][] {
  if (sorted.length === 0) return [];
  return percentiles.map((p) => [p, sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!]);
}

/**
 * Per-destination concurrency from a Postactor /metrics text: postactor_destination_concurrency
 * by "transport:nexthop" (bench samplers scrape the server under test with metrics_listen).
 */
export function destinationConcurrency(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^postactor_destination_concurrency\{([^}]*)\} (\S+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.set(`${labels['transport'] ?? ''}:${labels['nexthop'] ?? ''}`, Number(m[2]));
  }
  return out;
}
