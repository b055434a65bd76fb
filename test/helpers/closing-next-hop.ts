/**
 * A raw TCP next hop on 127.0.0.1 for the smtp client's failure paths (no SMTP library: the
 * point is what it does wrong on purpose).
 */
import * as net from 'node:net';

/**
 * A raw next hop that answers MAIL FROM with "421 4.3.2 Service shutting down" and hangs up
 * at once, without reading or answering the pipelined RCPT and DATA.
 */
export async function closingAtMail(pipelining: boolean): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write('220 mx.test ESMTP\r\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const verb = buf.slice(0, 4).toUpperCase();
        buf = buf.slice(i + 2);
        if (verb === 'EHLO') s.write(pipelining ? '250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n' : '250-mx.test\r\n250 8BITMIME\r\n');
        else if (verb === 'MAIL') { s.end('421 4.3.2 Service shutting down\r\n'); return; }
        else if (verb === 'QUIT') { s.end('221 bye\r\n'); return; }
        else s.write('500 5.5.2 what\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}
