/**
 * Real milters for the tests: a small filter on Debian's python3-milter (pymilter, on
 * libmilter) and OpenDKIM, each started as a child process on a loopback port in a temp dir,
 * plus python3-dkim to verify a signature against the key opendkim-genkey made.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';

import { freePort } from './server.js';
import { needs } from './peers.js';
import { startOpenDkim as startBenchOpenDkim } from '../../bench/relay/milter.js';

export const PYTHON = '/usr/bin/python3';
/** `skip` for a test that needs pymilter: a reason outside CI when it is missing; under CI it runs (and fails loudly). */
export const NEEDS_PYMILTER = needs('/usr/lib/python3/dist-packages/Milter/__init__.py', "Debian's python3-milter");
const OPENDKIM = '/usr/sbin/opendkim';
const GENKEY = '/usr/sbin/opendkim-genkey';
/** `skip` for a test that needs OpenDKIM and python3-dkim (as NEEDS_PYMILTER). */
export const NEEDS_OPENDKIM = needs(OPENDKIM, "Debian's opendkim") || needs(GENKEY, "Debian's opendkim-tools") || needs('/usr/lib/python3/dist-packages/dkim/__init__.py', "Debian's python3-dkim");

/**
 * The test filter. By recipient: reject, discard, multi-line tempfail. By Subject at end of
 * message: reject, quarantine, redirect (delete the recipients, add one with NOTIFY=NEVER,
 * change the sender with RET=HDRS); every accepted message gets X-Test-Milter (the queue ID),
 * X-Test-Client ({client_addr} / {client_name}) and X-Test-Default (a macro only
 * milter_macro_defaults answers), and a changed Subject. An unknown SMTP command starting with
 * XMILTERTEST is refused with the filter's own reply; a header X-Reject-At-Header is refused
 * when it is seen (before end of headers).
 */
const MILTER_PY = `
import sys, Milter

class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ''
        self.rcpts = []

    def envrcpt(self, to, *params):
        if to.strip('<>').startswith('milter-reject'):
            self.setreply('550', '5.7.1', 'Recipient refused by test milter')
            return Milter.REJECT
        if to.strip('<>').startswith('milter-discard'):
            return Milter.DISCARD
        if to.strip('<>').startswith('milter-multi'):
            self.setreply('450', '4.7.1', 'first line', 'second line')
            return Milter.TEMPFAIL
        self.rcpts.append(to)
        return Milter.CONTINUE

    def unknown(self, cmd):
        if cmd.upper().startswith('XMILTERTEST'):
            self.setreply('550', '5.5.1', 'unknown command refused by test milter')
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        if name.lower() == 'subject':
            self.subject = value
        if name.lower() == 'x-reject-at-header':
            self.setreply('550', '5.7.1', 'Header refused by test milter')
            return Milter.REJECT
        return Milter.CONTINUE

    def eom(self):
        if 'reject-me' in self.subject:
            self.setreply('550', '5.7.1', 'Message refused by test milter')
            return Milter.REJECT
        if 'tempfail-me' in self.subject:
            self.setreply('451', '4.7.1', 'Try again later, says the test milter')
            return Milter.TEMPFAIL
        if 'hold-me' in self.subject:
            self.quarantine('held by test milter')
        if 'redirect-me' in self.subject:
            for r in self.rcpts:
                self.delrcpt(r)
            self.addrcpt('<redirected@example.net>', 'NOTIFY=NEVER')
            self.chgfrom('<changed-sender@example.org>', 'RET=HDRS')
        self.addheader('X-Test-Milter', 'queue-id=' + (self.getsymval('i') or 'none'))
        self.addheader('X-Test-Client', '%s %s' % (self.getsymval('{client_addr}'), self.getsymval('{client_name}')))
        self.addheader('X-Test-Default', str(self.getsymval('{test_default}')))
        self.chgheader('Subject', 1, 'changed by milter: ' + self.subject)
        return Milter.ACCEPT

Milter.factory = TestMilter
Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.ADDRCPT | Milter.ADDRCPT_PAR | Milter.DELRCPT | Milter.CHGFROM | Milter.QUARANTINE)
Milter.runmilter('postactor-test', sys.argv[1], 30)
`;

/**
 * main.cf settings that make the test filter's macros come: {client_addr} and {client_name}
 * at end of data, and {test_default}, answered only by milter_macro_defaults.
 */
export const TEST_MILTER_MACROS = {
  milter_end_of_data_macros: 'i {client_addr} {client_name} {test_default}',
  milter_macro_defaults: '{ test_default = from macro defaults }',
};

export async function waitListening(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`milter did not listen on ${port} within ${timeoutMs} ms`);
}

export interface RunningMilter { port: number; child: ChildProcess }

/** Starts the pymilter test filter (its script written into `dir`). */
export async function startTestMilter(dir: string): Promise<RunningMilter> {
  writeFileSync(join(dir, 'test_filter.py'), MILTER_PY);
  const port = await freePort();
  const child = spawn(PYTHON, [join(dir, 'test_filter.py'), `inet:${port}@127.0.0.1`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  await waitListening(port, 10000).catch((e: Error) => { throw new Error(`${e.message}: ${err}`); });
  return { port, child };
}

/** Starts OpenDKIM signing for example.org (selector "test") for 127.0.0.0/8, with a key made in `dir`. */
export async function startOpenDkim(dir: string): Promise<RunningMilter> {
  const d = await startBenchOpenDkim('example.org', dir);
  return { port: d.port, child: d.child };
}

/**
 * python3-dkim's verdict on `message` with the key in `dir` (startOpenDkim's), and on the same
 * message with `original` in the body replaced: "True\nFalse" when the signature holds and the
 * check is not vacuous.
 */
export function verifyDkim(dir: string, message: Buffer, original: string): string {
  const txt = [...readFileSync(join(dir, 'test.txt'), 'utf8').matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
  writeFileSync(join(dir, 'message.eml'), message);
  const verify = spawnSync(PYTHON, ['-c', [
    'import sys, dkim',
    `txt = ${JSON.stringify(txt)}.encode()`,
    'msg = open(sys.argv[1], "rb").read()',
    'print(dkim.verify(msg, dnsfunc=lambda name, timeout=5: txt))',
    `print(dkim.verify(msg.replace(${JSON.stringify(original)}.encode(), b"something else"), dnsfunc=lambda name, timeout=5: txt))`,
  ].join('\n'), join(dir, 'message.eml')], { encoding: 'utf8' });
  assert.equal(verify.status, 0, verify.stderr);
  return verify.stdout.trim();
}
