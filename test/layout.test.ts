/**
 * The dependency rule of the layout: bin → actors → src. Nothing in src/ imports an actor, and
 * actors share code through src/ (as Postfix's daemons share src/global), never through each
 * other: an actor imports its own folder, actors/protocol.ts (the messages between actors) and
 * src/. master imports the other actors' metadata (actors/<name>/meta.ts: kind, commands,
 * threads; src/runtime/service-meta.ts) and names their entry files (actors/<name>/index.ts) by
 * path to start them in threads, never importing them: their code stays out of master's thread.
 * Nothing else of theirs. Checked on the sources, so a new import that breaks the rule fails
 * here, not in review.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
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

/** Every module specifier a file imports (static, side-effect only, and dynamic). */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
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

/** The actor folder a path under actors/ belongs to ('' for actors/protocol.ts and other top-level files). */
function actorOf(path: string): string {
  const rel = relative(join(REPO_ROOT, 'actors'), path);
  return rel.startsWith('..') || !rel.includes(sep) ? '' : rel.split(sep)[0]!;
}

test("an actor imports no other actor's code (only actors/protocol.ts is shared)", () => {
  const bad: string[] = [];
  for (const f of sources(join(REPO_ROOT, 'actors'))) {
    for (const spec of imports(f)) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(f), spec);
      if (!target.startsWith(join(REPO_ROOT, 'actors') + sep)) continue;
      const other = actorOf(target);
      // master reads each service's metadata from its meta.ts (not its entry file: that would
      // load the service's code into master's thread).
      if (actorOf(f) === 'master' && other !== '' && relative(join(REPO_ROOT, 'actors', other), target) === 'meta.js') continue;
      if (other === '' ? relative(join(REPO_ROOT, 'actors'), target) !== 'protocol.js' : other !== actorOf(f)) {
        bad.push(`${relative(REPO_ROOT, f)}: ${spec}`);
      }
    }
  }
  assert.deepEqual(bad, []);
});

test("an actor names another actor's files only to start its entry file (index.js), and master its metadata (meta.js)", () => {
  const bad: string[] = [];
  for (const f of sources(join(REPO_ROOT, 'actors'))) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/['"`](\.\.\/[^'"`\s]+)['"`]/g)) {
      const target = resolve(dirname(f), m[1]!);
      const other = actorOf(target);
      if (other === '' || other === actorOf(f)) continue;
      const file = relative(join(REPO_ROOT, 'actors', other), target);
      if (file !== 'index.js' && !(file === 'meta.js' && actorOf(f) === 'master')) bad.push(`${relative(REPO_ROOT, f)}: ${m[1]}`);
    }
  }
  assert.deepEqual(bad, []);
});

test("master's thread loads no actor's code: each actor's metadata (meta.ts) imports only types", () => {
  const bad: string[] = [];
  for (const f of sources(join(REPO_ROOT, 'actors'))) {
    if (f.split(sep).pop() !== 'meta.ts' || actorOf(f) === '') continue;
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/^import\s+(?!type\s)[^;]*;/gm)) bad.push(`${relative(REPO_ROOT, f)}: ${m[0]}`);
    if (/\bimport\s*\(/.test(text)) bad.push(`${relative(REPO_ROOT, f)}: a dynamic import`);
  }
  assert.deepEqual(bad, []);
});
