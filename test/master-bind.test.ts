/**
 * A master.cf service whose address is taken: start-up stops, and both the maillog and the
 * start-up error name the address and the reason once, as Postfix's "fatal: bind 127.0.0.1
 * port N: Address already in use".
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { freePort, startServer } from './helpers/server.js';

test('a taken smtpd address stops start-up with "bind 127.0.0.1 port N: Address already in use", named on stderr and logged once', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
  try {
    await assert.rejects(startServer({ port }), (err: Error) => {
      const expected = `bind 127.0.0.1 port ${port}: Address already in use`;
      // The error master prints (its stderr) gives the reason, not only an exit status.
      const stderr = err.message.split('maillog tail:')[0]!;
      assert.match(stderr, new RegExp(`fatal: 127\\.0\\.0\\.1:${port}: worker exited with status 1 during start-up: smtpd: ${expected}`));
      const log = err.message.split('maillog tail:')[1] ?? '';
      assert.equal(log.split('\n').filter((l) => l.includes(expected)).length, 1, log);
      assert.doesNotMatch(log, /EADDRINUSE/);
      return true;
    });
  } finally {
    taken.close();
  }
});
