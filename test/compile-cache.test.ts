/**
 * Node's compile cache for the server's threads (src/runtime/compile-cache.ts): the directory
 * is this user's alone (made 0700, refused when it is a symlink, another kind of file, or open
 * to others), a running server's threads fill it, and a server whose cache cannot be used still
 * starts and delivers, saying so once in the maillog. The server finds the directory under its
 * TMPDIR, which each test points at a directory of its own.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileCacheDirectory } from '../src/runtime/compile-cache.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { deliveredWithSubject, sendWithSubject, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-compile-cache-test-');
const uid = process.getuid!();
const cacheIn = (base: string) => join(base, `postactor-compile-cache-${uid}`);

const send = sendWithSubject;

/** Files under dir, at any depth. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

test('the cache directory is made 0700 and owned by the user; one open to others, a symlink or a file is refused', () => {
  const base = tempDir();
  const made = compileCacheDirectory(base);
  assert.deepEqual(made, { dir: cacheIn(base) });
  const st = lstatSync(cacheIn(base));
  assert.ok(st.isDirectory());
  assert.equal(st.mode & 0o777, 0o700);
  assert.equal(st.uid, uid);
  assert.deepEqual(compileCacheDirectory(base), made, 'an existing safe directory is used again');

  chmodSync(cacheIn(base), 0o755);
  const open = compileCacheDirectory(base);
  assert.ok('problem' in open && /accessible to others \(mode 755\)/.test(open.problem), JSON.stringify(open));

  const linked = tempDir();
  const target = join(linked, 'elsewhere');
  mkdirSync(target, { mode: 0o700 });
  symlinkSync(target, cacheIn(linked));
  const link = compileCacheDirectory(linked);
  assert.ok('problem' in link && /symbolic link/.test(link.problem), JSON.stringify(link));

  const file = tempDir();
  writeFileSync(cacheIn(file), 'not a directory');
  const f = compileCacheDirectory(file);
  assert.ok('problem' in f && /not a directory/.test(f.problem), JSON.stringify(f));

  const missing = compileCacheDirectory(join(file, 'no', 'such', 'dir'));
  assert.ok('problem' in missing && /ENOENT/.test(missing.problem), JSON.stringify(missing));
});

/** A server with TMPDIR=base that has relayed one message (subject) to a sink; both end with the test. */
async function relayOnce(t: TestContext, base: string, subject: string): Promise<TestServer> {
  const sink = new SmtpSink({ keepMessages: true });
  const sinkPort = await sink.listen(0);
  const server = await startServer({ sinkPort, env: { TMPDIR: base } });
  t.after(async () => {
    await server.stop();
    await sink.close();
  });
  await send(server, subject);
  await deliveredWithSubject(sink, subject, 60_000);
  return server;
}

test("a server's threads fill the cache in a 0700 directory of the user", async (t) => {
  const base = tempDir();
  const server = await relayOnce(t, base, 'cached');
  const dir = cacheIn(base);
  const st = lstatSync(dir);
  assert.equal(st.mode & 0o777, 0o700);
  assert.equal(st.uid, uid);
  // Each thread writes what it compiled shortly after its modules are loaded.
  const deadline = Date.now() + 30_000;
  while (filesUnder(dir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.ok(filesUnder(dir).length > 0, 'no cache entry written');
  for (const f of filesUnder(dir)) assert.equal(lstatSync(f).mode & 0o077, 0, `${f} is accessible to others`);
  assert.ok(!server.logLines().some((l) => /compile cache not used/.test(l)));
});

test('a server whose cache cannot be used starts, delivers, and says so once in the maillog', async (t) => {
  const base = tempDir();
  // Not writable for any user, root included: the name is taken by a file.
  writeFileSync(cacheIn(base), 'not a directory');
  const server = await relayOnce(t, base, 'uncached');
  const said = server.logLines().filter((l) => /compile cache not used/.test(l));
  assert.equal(said.length, 1, said.join('\n'));
  assert.match(said[0]!, /\/master\[\d+\]: compile cache not used: .*postactor-compile-cache-\d+ is not a directory; threads start without it/);
  assert.ok(existsSync(cacheIn(base)) && lstatSync(cacheIn(base)).isFile(), 'the file is left alone');
});
