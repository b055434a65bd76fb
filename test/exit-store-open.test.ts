/**
 * A command that exits on a fatal error while its queue store is open must exit, not hang.
 * process.exit() during an lmdb-js write batch hung Node for ever (its thread pool is joined at
 * exit, and lmdb-js's write worker waits for the exiting JavaScript thread): about one run in
 * three when the fatal error follows a write, one in eight even after the write was awaited.
 * The shared exit path (src/queue/command-line.ts: fatal, usage errors) now closes the open
 * stores first. Each child here is a command in miniature on the real store and the real
 * fatal(): it writes (awaited, or still in flight) and dies; two run at a time (each on its own
 * store) to load the machine. Bounded: 40 children, each killed after 10 s (a hang), stopping at the first hang.
 * What was written must be in the store afterwards: the close before the exit commits it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';

import { QueueStore } from '../src/queue/store.js';
import { NODE, REPO_ROOT } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-exit-');
const url = (rel: string) => pathToFileURL(join(REPO_ROOT, 'dist', rel)).href;

/** The child: argv = store directory, mode (await | inflight), delay (ms before the fatal error), domain. */
const CHILD = `
import { QueueStore } from ${JSON.stringify(url('src/queue/store.js'))};
import { fatal } from ${JSON.stringify(url('src/queue/command-line.js'))};
const [dir, mode, delay, domain] = process.argv.slice(1);
const store = QueueStore.open(dir);
const write = store.putStsPolicy(domain, { fetched: 1 });
if (mode === 'await') await write;
else write.catch(() => undefined);
if (Number(delay) > 0) await new Promise((r) => setTimeout(r, Number(delay) - 1));
fatal('exit-test', 'open queue file: No such file or directory');
`;

interface Ran { code: number | null; signal: string | null; stderr: string; hung: boolean }

function run(args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(NODE, ['--input-type=module', '-e', CHILD, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let hung = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      hung = true;
      child.kill('SIGKILL');
    }, 10_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, hung });
    });
  });
}

test('a fatal error with the queue store open exits (40 runs, none may hang) and keeps what was written', { timeout: 120_000 }, async () => {
  // Two children at a time, each on a store of its own: only one process may write a store at
  // a time (lmdb-js loses writes when processes take turns on one: docs/architecture.md).
  const dirs = [tempDir(), tempDir()];
  for (const dir of dirs) await QueueStore.open(dir).close();
  const domains: string[][] = [[], []];
  for (let i = 0; i < 20; i++) {
    const pair = [0, 1].map((j) => {
      const n = 2 * i + j;
      const domain = `run${n}.example`;
      domains[j]!.push(domain);
      return run([dirs[j]!, n % 4 === 0 ? 'await' : 'inflight', String(n % 3), domain]);
    });
    for (const r of await Promise.all(pair)) {
      assert.equal(r.hung, false, `run ${i}: the process hung on exit (killed after 10 s)`);
      assert.equal(r.code, 1, `run ${i}: exit status ${r.code} (${r.signal}): ${r.stderr}`);
      assert.equal(r.stderr, 'exit-test: fatal: open queue file: No such file or directory\n');
    }
  }
  for (const [j, dir] of dirs.entries()) {
    const store = QueueStore.open(dir, { readOnly: true });
    try {
      for (const d of domains[j]!) assert.ok(store.stsPolicy(d), `${d}: the write made before the fatal error is lost`);
    } finally {
      await store.close();
    }
  }
});
