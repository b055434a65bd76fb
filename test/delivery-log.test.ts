/**
 * The delivery agents' status line (src/delivery/log.ts, src/delivery/agent.ts report()), as
 * Postfix's log_adhoc.c writes it: the delays of an agent that connects to nothing (local,
 * virtual, discard, error) put its delivery's time in the fourth field ("delays=a/b/0/d"), and
 * a verify service probe's lines are held for qmgr instead of logged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from '../src/log/maillog.js';
import { loadConfig } from '../src/config/index.js';
import { report, type AgentContext } from '../src/delivery/agent.js';
import type { DeliveryRequest } from '../src/delivery/request.js';
import { EMBEDDED_MASTER_CF } from '../src/config/embedded.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-delivery-log-');

function context(lines: string[]): AgentContext {
  const log = { info: (t: string) => void lines.push(t), warn: (t: string) => void lines.push(`warning: ${t}`), error: () => undefined, fatal: () => undefined, tag: () => 'postactor/local' } as Logger;
  const config = loadConfig(tempDir({ 'main.cf': `queue_directory = ${tempDir()}\n`, 'master.cf': EMBEDDED_MASTER_CF }));
  return { config, store: null as never, log, service: 'local', line: undefined };
}

function request(extra: Partial<DeliveryRequest> = {}): DeliveryRequest {
  const now = Date.now();
  return {
    queueId: 'ABC123', transport: 'local', nexthop: 'example.com', sender: 's@example.org',
    recipients: [{ index: 0, address: 'u@example.com' }], arrival: now - 4000, activated: now - 3000, size: 10, ...extra,
  } as DeliveryRequest;
}

test('an agent without timings of its own logs its delivery\'s time as the fourth delay (Postfix\'s local: delays=a/b/0/d)', () => {
  const lines: string[] = [];
  const req = request();
  const started = Date.now() - 2000;
  report(context(lines), req, [{ index: 0, status: 'sent', dsn: '2.0.0', reason: 'delivered to mailbox', relay: 'local' }], started);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^ABC123: to=<u@example\.com>, relay=local, delay=4(\.0\d)?, delays=1(\.0\d)?\/1(\.0\d)?\/0\/2(\.0\d)?, dsn=2\.0\.0, status=sent \(delivered to mailbox\)$/);
});

test('a verify service probe\'s status line is held for qmgr, not logged', () => {
  const lines: string[] = [];
  const reply = report(context(lines), request({ verify: true, probe: true }), [{ index: 0, status: 'bounced', dsn: '5.1.1', reason: 'unknown user', relay: 'local' }], Date.now());
  assert.deepEqual(lines, []);
  assert.equal(reply.probeLines?.length, 1);
  assert.equal(reply.probeLines![0]!.tag, 'postactor/local');
  assert.equal(reply.probeLines![0]!.outcome.reason, 'unknown user');
});
