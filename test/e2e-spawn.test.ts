/**
 * spawn(8): a policy server started per connection by a master.cf spawn service, as Debian's
 * configurations run policyd-spf:
 *
 *   policy unix - n n - 0 spawn user=nobody argv=/usr/bin/python3 /path/policy.py
 *
 * smtpd asks it through check_policy_service unix:private/policy; the script (a real program,
 * run as nobody when the tests run as root) answers on its standard output, which is the
 * connection. Plus: the time limit, an abnormal exit logged as Postfix's spawn logs it, and a
 * bad user= refused by `postactor check` before anything runs.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { loadConfig } from '../src/config/index.js';
import { checkConfig } from '../actors/master/index.js';
import { tempDirs } from './helpers/temp.js';
import { defaultMasterCf, freePort, sendRaw, startServer, type TestServer } from './helpers/server.js';

const tempDir = tempDirs('pa-spawn-check-');

const POLICY_PY = `
import sys
attrs = {}
for line in sys.stdin:
    line = line.rstrip('\\n')
    if line:
        k, _, v = line.partition('=')
        attrs[k] = v
        continue
    rcpt = attrs.get('recipient', '')
    if rcpt.startswith('deny'):
        out = 'action=REJECT spawned policy says no'
    elif rcpt.startswith('crash'):
        sys.exit(3)
    else:
        out = 'action=DUNNO'
    sys.stdout.write(out + '\\n\\n')
    sys.stdout.flush()
    attrs = {}
`;

describe('spawn: a policy server run per connection (check_policy_service unix:private/NAME)', () => {
  let dir: string;
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    // The script must be readable by "nobody": a directory of its own, not the checkout.
    dir = mkdtempSync(join(tmpdir(), 'pa-spawn-'));
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'policy.py'), POLICY_PY, { mode: 0o644 });
    writeFileSync(join(dir, 'sleeper.sh'), '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: {
        smtpd_recipient_restrictions: 'check_policy_service unix:private/policy, permit_mynetworks, reject_unauth_destination',
        smtpd_policy_service_timeout: '5s',
        slow_time_limit: '1s',
      },
      masterCfExtra: [
        `policy unix - n n - 0 spawn user=nobody argv=/usr/bin/python3 ${join(dir, 'policy.py')}`,
        `slow unix - n n - 1 spawn user=nobody argv=${join(dir, 'sleeper.sh')}`,
      ].join('\n'),
    });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the spawned program answers smtpd\'s policy requests: REJECT and DUNNO', async () => {
    const no = await sendRaw(server.port, 's@example.org', ['deny@example.com'], 'Subject: x\r\n\r\nx\r\n');
    assert.equal(no.line, '554 5.7.1 <deny@example.com>: Recipient address rejected: spawned policy says no');
    const yes = await sendRaw(server.port, 's@example.org', ['ok@example.com'], 'Subject: spawn ok\r\n\r\nx\r\n');
    assert.match(yes.line, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor((s) => s.messages >= 1, 20_000);
  });

  test('an abnormal exit is logged as Postfix\'s spawn logs it ("command … exit status N")', async () => {
    const r = await sendRaw(server.port, 's@example.org', ['crash@example.com'], 'Subject: x\r\n\r\nx\r\n');
    assert.match(r.line, /^4\d\d /); // the policy server went away: smtpd's policy failure reply
    await server.waitForLog(/postactor\/spawn\[\d+\]: warning: command \/usr\/bin\/python3 exit status 3/, 10_000);
  });

  test('<service>_time_limit kills a command that runs too long', async () => {
    const net = await import('node:net');
    const sock = net.connect(join(server.queueDir, 'private', 'slow'));
    sock.on('error', () => undefined);
    await server.waitForLog(/warning: .*sleeper\.sh: process id \d+: command time limit exceeded/, 15_000);
    await server.waitForLog(/warning: command .*sleeper\.sh killed by signal 9/, 5_000);
    sock.destroy();
  });
});

test('postactor check refuses a spawn service whose user= is root or missing, naming the line', async () => {
  const port = await freePort();
  for (const [args, text] of [
    ['user=root argv=/bin/true', 'request to deliver as root'],
    ['argv=/bin/true', 'missing user= attribute'],
    ['user=nobody', 'missing argv= attribute'],
    ['user=no-such-user-here argv=/bin/true', 'unknown user name: no-such-user-here'],
  ] as const) {
    const dir = tempDir({ 'main.cf': `queue_directory = ${tmpdir()}/pa-spawn-q\n`, 'master.cf': `${defaultMasterCf(port)}policy unix - n n - 0 spawn ${args}\n` });
    const problems = checkConfig(loadConfig(dir)).join('\n');
    assert.match(problems, new RegExp(`master\\.cf:\\d+: service "policy" \\(command spawn\\): ${text}`));
  }
});
