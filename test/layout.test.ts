/**
 * The dependency rule of the layout: bin → actors → src. Nothing in src/ imports an actor, and
 * actors share code through src/ (an actor may import another actor's protocol types only
 * through actors/protocol.ts). Checked on the sources, so a new import that breaks the rule
 * fails here, not in review.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

import { REPO_ROOT } from './helpers/server.js';

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports (static and dynamic). */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
}

test('nothing in src/ imports from actors/ or bin/', () => {
  const bad: string[] = [];
  for (const f of sources(join(REPO_ROOT, 'src'))) {
    for (const spec of imports(f)) if (/(^|\/)(actors|bin)\//.test(spec)) bad.push(`${relative(REPO_ROOT, f)}: ${spec}`);
  }
  assert.deepEqual(bad, []);
});

test('actors import nothing from bin/', () => {
  const bad: string[] = [];
  for (const f of sources(join(REPO_ROOT, 'actors'))) {
    for (const spec of imports(f)) if (/(^|\/)bin\//.test(spec)) bad.push(`${relative(REPO_ROOT, f)}: ${spec}`);
  }
  assert.deepEqual(bad, []);
});
