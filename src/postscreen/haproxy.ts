/**
 * The haproxy PROXY protocol, server side (Postfix's global/haproxy_srvr.c, used by
 * postscreen_upstream_proxy_protocol and smtpd_upstream_proxy_protocol): version 1 (the text
 * line "PROXY TCP4|TCP6 client server cport sport", or "PROXY UNKNOWN") and version 2 (the
 * binary header), read before anything else within the proxy timeout. The endpoints it names
 * replace the socket's own; "UNKNOWN" (v1) and LOCAL (v2) keep the socket's. Bytes after the
 * header are put back into the socket for the SMTP session.
 *
 * Failures are logged as Postfix logs them ("warning: haproxy read: …") and answered
 * "421 4.3.2 No system resources", as postscreen and smtpd do.
 */
import { isIP } from 'node:net';
import type * as net from 'node:net';
import { canonicalIp } from '../address/interfaces.js';
import { escapeText } from './misc.js';

export interface Endpoints { clientAddr: string; clientPort: number; serverAddr: string; serverPort: number }

const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
/** The longest v1 line (RFC-less but haproxy's own limit: 107 bytes with CRLF). */
const V1_MAX = 107;

const unmapped = (a: string) => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a.toLowerCase());

/** Parses a v1 line (without the line end); endpoints, null for UNKNOWN, or the error text. */
function parseV1(line: string): Endpoints | null | string {
  const t = line.split(' ');
  if (t[0] !== 'PROXY') return 'bad or missing protocol header';
  const proto = (t[1] ?? '').toUpperCase();
  if (proto === 'UNKNOWN') return null;
  if (proto !== 'TCP4' && proto !== 'TCP6') return 'bad or missing protocol type';
  const family = proto === 'TCP4' ? 4 : 6;
  const ok = (a: string | undefined) => a !== undefined && isIP(a) === family;
  if (!ok(t[2])) return 'bad or missing client address';
  if (!ok(t[3])) return 'bad or missing server address';
  const port = (p: string | undefined) => (p !== undefined && /^\d{1,5}$/.test(p) && Number(p) <= 65535 ? Number(p) : null);
  const cport = port(t[4]);
  if (cport === null) return 'bad or missing client port';
  const sport = port(t[5]);
  if (sport === null) return 'bad or missing server port';
  return { clientAddr: unmapped(t[2]!), clientPort: cport, serverAddr: unmapped(t[3]!), serverPort: sport };
}

/** Parses a whole v2 header; endpoints, null for LOCAL or an unspecified family, or the error text. */
function parseV2(h: Buffer): Endpoints | null | string {
  if ((h[12]! & 0xf0) !== 0x20) return 'unrecognized protocol version';
  const command = h[12]! & 0x0f;
  if (command === 0) return null;
  if (command !== 1) return 'bad command in proxy header';
  const family = h[13]! >> 4;
  const body = h.subarray(16);
  if (family === 1) {
    if (body.length < 12) return 'short address field';
    const ip = (o: number) => `${body[o]}.${body[o + 1]}.${body[o + 2]}.${body[o + 3]}`;
    return { clientAddr: ip(0), serverAddr: ip(4), clientPort: body.readUInt16BE(8), serverPort: body.readUInt16BE(10) };
  }
  if (family === 2) {
    if (body.length < 36) return 'short address field';
    const ip = (o: number) => unmapped(canonicalIp(Array.from({ length: 8 }, (_, i) => body.readUInt16BE(o + 2 * i).toString(16)).join(':')) ?? '::');
    return { clientAddr: ip(0), serverAddr: ip(16), clientPort: body.readUInt16BE(32), serverPort: body.readUInt16BE(34) };
  }
  if (family === 0) return null;
  return 'unsupported network protocol';
}

/**
 * Reads the PROXY header from a socket. Resolves with the endpoints (the socket's own for
 * UNKNOWN/LOCAL), or null after logging the failure (the caller answers 421 and closes).
 */
export function readProxyHeader(socket: net.Socket, timeoutSeconds: number, warn: (text: string) => void): Promise<Endpoints | null> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const own = (): Endpoints => ({
      clientAddr: unmapped(socket.remoteAddress ?? ''), clientPort: socket.remotePort ?? 0,
      serverAddr: unmapped(socket.localAddress ?? ''), serverPort: socket.localPort ?? 0,
    });
    const finish = (r: Endpoints | null | string, used: number) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      if (typeof r === 'string') {
        warn(`haproxy read: ${r}: ${escapeText(buf.subarray(0, Math.min(buf.length, 100)))}`);
        return resolve(null);
      }
      const rest = buf.subarray(used);
      if (rest.length > 0) socket.unshift(rest);
      resolve(r ?? own());
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 12 && buf.subarray(0, 12).equals(V2_SIGNATURE)) {
        if (buf.length < 16) return;
        const total = 16 + buf.readUInt16BE(14);
        if (buf.length < total) return;
        return finish(parseV2(buf.subarray(0, total)), total);
      }
      if (buf.length < 12 && V2_SIGNATURE.subarray(0, buf.length).equals(buf)) return;
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > V1_MAX) finish('missing protocol header terminator', 0);
        return;
      }
      finish(parseV1(buf.subarray(0, nl).toString('latin1').replace(/\r$/, '')), nl + 1);
    };
    const onEnd = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      warn('haproxy read: EOF');
      resolve(null);
    };
    const timer = setTimeout(() => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      warn('haproxy read: time limit exceeded');
      resolve(null);
    }, timeoutSeconds * 1000);
    socket.on('data', onData);
    socket.on('end', onEnd);
  });
}
