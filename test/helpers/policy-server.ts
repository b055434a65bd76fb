/**
 * A Postfix policy server (SMTPD_POLICY_README's protocol: name=value lines, an empty line)
 * that records every request and answers `action=DUNNO`, for tests that check the attributes
 * smtpd sends. Listen on it with `server.listen(0, '127.0.0.1')`.
 */
import * as net from 'node:net';

export function recordingPolicyServer(): { server: net.Server; requests: Map<string, string>[] } {
  const requests: Map<string, string>[] = [];
  const server = net.createServer((c) => {
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        requests.push(new Map(buf.slice(0, end).split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string])));
        buf = buf.slice(end + 2);
        c.write('action=DUNNO\n\n');
      }
    });
    c.on('error', () => undefined);
  });
  return { server, requests };
}
