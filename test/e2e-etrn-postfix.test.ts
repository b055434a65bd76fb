/**
 * ETRN side by side with Debian's Postfix (a throwaway peer, bench/postfix-peer.sh): the same
 * dialogue gets the same replies from Postfix's smtpd and from Postactor's — the EHLO keywords
 * (ETRN after VRFY), the syntax errors, "@" and "#" forms, an address literal, a destination
 * fast_flush_domains does not list, check_etrn_access in smtpd_etrn_restrictions, ETRN inside
 * a MAIL transaction.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostfix } from '../bench/relay/postfix.js';
import type { MtaHandle } from '../bench/relay/mta.js';
import { needs } from './helpers/peers.js';
import { freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const NO_PEER = needs('/usr/sbin/postfix', "Debian's Postfix, the peer");

const STEPS = [
  'ETRN', 'ETRN a b', 'ETRN bad!name', 'ETRN other.test', 'ETRN @example.com', 'ETRN #example.com',
  'ETRN example.com', 'ETRN [127.0.0.1]', 'ETRN [IPv6:::1]', 'ETRN [::1]', 'ETRN blocked.example.com',
  'MAIL FROM:<a@example.org>', 'ETRN example.com', 'RSET',
];

describe('ETRN: the same replies as Postfix\'s smtpd', { skip: NO_PEER || (process.getuid?.() !== 0 ? 'Postfix\'s master needs root' : false) }, () => {
  let postfix: MtaHandle;
  let server: TestServer;
  let tables: string;

  before(async () => {
    // Postfix's smtpd (user postfix) reads the table: a directory it can reach.
    tables = mkdtempSync(join(tmpdir(), 'postactor-etrn-'));
    chmodSync(tables, 0o755);
    const access = join(tables, 'etrn_access');
    writeFileSync(access, 'blocked.example.com REJECT no thanks\n', { mode: 0o644 });
    const settings = [
      'fast_flush_domains = example.com',
      `smtpd_etrn_restrictions = check_etrn_access texthash:${access}, permit`,
      'smtpd_error_sleep_time = 0',
    ];
    const sinkPort = await freePort();
    postfix = await startPostfix({ sinkPort, port: await freePort(), extraMainCf: settings.join('\n') });
    server = await startServer({
      sinkPort,
      mainCf: settings.join('\n'),
      masterCfExtra: 'flush unix n - n 1000? 0 flush',
    });
  });
  after(async () => {
    await server?.stop();
    await postfix?.stop();
    rmSync(tables, { recursive: true, force: true });
  });

  async function replies(port: number): Promise<{ ehlo: string[]; out: string[] }> {
    const { smtp, greeting } = await SmtpDialogue.connect(port, { timeoutMs: 10_000 });
    assert.equal(greeting.code, 220);
    const e = await smtp.cmd('EHLO client.test');
    // The keywords after the host name; SIZE's value is each server's message_size_limit.
    const ehlo = e.lines.slice(1).map((l) => l.replace(/^SIZE \d+$/, 'SIZE'));
    const out: string[] = [];
    for (const step of STEPS) out.push((await smtp.cmd(step)).line);
    await smtp.cmd('QUIT');
    smtp.close();
    return { ehlo, out };
  }

  test('EHLO and every ETRN reply match', async () => {
    const fromPostfix = await replies(postfix.port);
    const fromPostactor = await replies(server.port);
    assert.deepEqual(fromPostactor.ehlo, fromPostfix.ehlo);
    assert.deepEqual(fromPostactor.out, fromPostfix.out);
    assert.ok(fromPostactor.out.includes('250 Queuing started'), fromPostactor.out.join('\n'));
    assert.ok(fromPostactor.out.includes('554 5.7.1 <blocked.example.com>: Etrn command rejected: no thanks'), fromPostactor.out.join('\n'));
  });
});
