// The smtp client's TLS session cache is shared by threads: a session one thread stores is
// offered by another (src/smtp/tls-sessions.ts), and expires after its timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { TlsSessionCache } from '../src/smtp/tls-sessions.js';

const MODULE = new URL('../src/smtp/tls-sessions.js', import.meta.url).href;

test('a session stored by another thread is offered here; a dropped one is gone', async () => {
  const here = new TlsSessionCache('smtp', 60_000);
  try {
    const w = new Worker(`
      const { TlsSessionCache } = await import(${JSON.stringify(MODULE)});
      const { parentPort } = await import('node:worker_threads');
      const c = new TlsSessionCache('smtp', 60_000);
      c.set('peer|policy', Buffer.from('session-bytes'));
      c.set('other', Buffer.from('x'));
      c.delete('other');
      setTimeout(() => { c.close(); parentPort.postMessage('done'); }, 50);
    `, { eval: true, type: 'module' } as never);
    await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    await w.terminate();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(here.get('peer|policy')?.toString(), 'session-bytes');
    assert.equal(here.get('other'), undefined);
  } finally {
    here.close();
  }
});

test('an entry expires after the cache timeout; lmtp and smtp caches are separate', async () => {
  const a = new TlsSessionCache('smtp', 30);
  const b = new TlsSessionCache('lmtp', 60_000);
  try {
    a.set('k', Buffer.from('s'));
    assert.equal(a.get('k')?.toString(), 's');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(a.get('k'), undefined);
    assert.equal(b.get('k'), undefined);
  } finally {
    a.close();
    b.close();
  }
});
