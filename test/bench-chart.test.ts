/**
 * The benchmarks' charts (bench/chart/svg.ts): one well-formed, self-contained SVG with a panel
 * per chart, points inside their plot, text escaped, empty data said as such; and the relay
 * benchmark writes one next to its JSON (a run against the project's sink, no MTA: plumbing,
 * not a measurement).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { destinationConcurrency, percentileCurve, rate, renderSvg, ticks } from '../bench/chart/svg.js';
import { NODE, REPO_ROOT } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-chart-');

/** Every element closed, in order (the SVG is written without self-nesting surprises). */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) assert.equal(stack.pop(), m[2], `unbalanced </${m[2]}>`);
    else stack.push(m[2]!);
  }
  assert.deepEqual(stack, []);
  assert.doesNotMatch(svg.replace(/&(amp|lt|gt|quot);/g, ''), /&/, 'a bare & in the document');
}

test('renderSvg: panels with axes, legends and polylines inside the plot; text escaped; empty data said', () => {
  const svg = renderSvg('a <b> & c', [
    { title: 'throughput', xLabel: 'seconds', yLabel: 'per s', series: [{ name: 'postactor 1', points: [[0, 0], [1, 50], [2, 120], [3, 90]] }, { name: 'postfix "1"', points: [[0, 10], [3, 100]] }] },
    { title: 'concurrency', xLabel: 'seconds', yLabel: 'n', series: [{ name: 'smtp:[127.0.0.1]:25', points: [[0, 1], [1, 4], [2, 2]] }], steps: true },
    { title: 'nothing', xLabel: 'x', yLabel: 'y', series: [] },
  ]);
  assertWellFormed(svg);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="760" height="778" viewBox="0 0 760 778"/);
  assert.match(svg, /a &lt;b&gt; &amp; c/);
  assert.match(svg, /postfix &quot;1&quot;/);
  assert.equal([...svg.matchAll(/<polyline /g)].length, 3);
  assert.match(svg, />no data</);
  for (const m of svg.matchAll(/points="([^"]+)"/g)) {
    for (const pair of m[1]!.split(' ')) {
      const [x, y] = pair.split(',').map(Number);
      assert.ok(x! >= 0 && x! <= 526 && y! >= 0 && y! <= 178, `point ${pair} outside the plot`);
    }
  }
  // Steps: a gauge holds its value until the next sample (two points per sample after the first).
  const step = /stroke="#1f77b4" stroke-width="1.5" points="([^"]+)"/g;
  const polylines = [...svg.matchAll(step)].map((m) => m[1]!.split(' ').length);
  assert.deepEqual(polylines, [4, 5]);
});

test('a long series is thinned: the file stays small', () => {
  const points: [number, number][] = Array.from({ length: 100_000 }, (_, i) => [i / 10, Math.sin(i / 100) * 100]);
  const svg = renderSvg('big', [{ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 's', points }] }]);
  assert.ok(svg.length < 20_000, `${svg.length} bytes`);
});

test('ticks, rates, percentiles and the metrics page parser', () => {
  assert.deepEqual(ticks(0, 10), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(ticks(0, 0.3), [0, 0.1, 0.2, 0.3]);
  assert.deepEqual(ticks(5, 5), [5]);
  assert.deepEqual(rate([[0, 0], [0.5, 10], [1, 30], [1, 30]]), [[0.5, 20], [1, 40]]);
  assert.deepEqual(percentileCurve([1, 2, 3, 4], [0, 50, 100]), [[0, 1], [50, 2], [100, 4]]);
  assert.deepEqual(percentileCurve([]), []);
  const page = [
    '# TYPE postactor_destination_concurrency gauge',
    'postactor_destination_concurrency{transport="smtp",nexthop="[127.0.0.1]:2626"} 3',
    'postactor_destination_concurrency{transport="relay",nexthop="example.com"} 0',
    'postactor_destination_concurrency_limit{transport="smtp",nexthop="[127.0.0.1]:2626"} 20',
  ].join('\n');
  assert.deepEqual([...destinationConcurrency(page)], [['smtp:[127.0.0.1]:2626', 3], ['relay:example.com', 0]]);
});

test('bench/relay writes its chart next to its JSON', () => {
  const dir = tempDir();
  const json = join(dir, 'relay.json');
  const r = spawnSync(NODE, [join(REPO_ROOT, 'dist/bench/relay/run.js'), '--target', 'sink', '--messages', '200', '--sessions', '4', '--runs', '1', '--json', json], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.ok(existsSync(json));
  const svgFile = join(dir, 'relay.svg');
  assert.match(r.stdout, new RegExp(`chart: ${svgFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const svg = readFileSync(svgFile, 'utf8');
  assertWellFormed(svg);
  for (const title of ['throughput over time', 'acceptance latency distribution', 'per-destination concurrency']) assert.match(svg, new RegExp(title));
  assert.ok(statSync(svgFile).size < 50_000);
  const run = (JSON.parse(readFileSync(json, 'utf8')) as { runs: { timeline: { delivered: number }[] }[] }).runs[0]!;
  assert.equal(run.timeline.at(-1)!.delivered, 200, 'the timeline ends with every message delivered');
});
