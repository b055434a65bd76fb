/**
 * A client of Dovecot's authentication protocol (auth-client, protocol 1.x), as Postfix's
 * xsasl_dovecot_server speaks it: the server side of SMTP AUTH hands every SASL exchange to
 * Dovecot, which knows the users and the mechanisms.
 *
 *   new DovecotAuth(path, { timeoutMs })   path: "inet:host:port", "unix:/path" or "/path"
 *   mechanisms()                           the handshake's MECH lines (private ones left out)
 *   start({ mech, service, lip, rip, secured, resp })   AUTH: CONT, OK or FAIL
 *   next(id, response)                     CONT: the client's answer to a challenge
 *
 * The wire: TAB-separated lines ending in LF. We send "VERSION 1 0" and "CPID <pid>"; Dovecot
 * answers VERSION, MECH…, SPID, CUID, COOKIE, DONE. A socket that sends SPID before any MECH is
 * auth-master or auth-userdb, not auth-client ("Connected to wrong auth socket").
 *
 * Unlike Postfix (one smtpd process, one session at a time, one connection), one smtpd thread
 * runs many sessions at once, so requests share one connection and are told apart by their id.
 * A lost connection fails the requests in flight as temporary failures ("Connection lost to
 * authentication server", Postfix's words); the next request connects again.
 *
 * Diagnostics: connection problems are Errors whose message is Postfix's warning text
 * ("SASL: Connect to Dovecot auth socket '…' failed: …"), for the caller to log.
 */
import * as net from 'node:net';

/** One mechanism Dovecot offers, with its flags ("plaintext", "anonymous", …). */
export interface Mechanism { name: string; flags: ReadonlySet<string> }

export interface AuthRequest {
  mech: string;
  service: string;
  /** Server (local) and client (remote) IP addresses; '' when unknown. */
  lip: string;
  rip: string;
  /** The SMTP session is encrypted (TLS). */
  secured: boolean;
  /** The initial response, base64, as the client sent it ('=' for an empty one). */
  resp?: string;
}

/** What Dovecot says to an AUTH or CONT. */
export type AuthStep =
  | { kind: 'cont'; id: number; challenge: string }
  | { kind: 'ok'; id: number; user: string | null; fields: Record<string, string> }
  | { kind: 'fail'; id: number; reason: string | null; user: string | null; temp: boolean };

/** A temporary failure: the auth server cannot be reached or went away (SMTP 454). */
export class AuthUnavailable extends Error {}

const MAJOR = 1;
const MINOR = 0;

/** Dovecot's tab-escaping (\001 + char) undone. */
export function unescapeValue(v: string): string {
  if (!v.includes('\x01')) return v;
  return v.replace(/\x01(.)/gs, (_, c: string) => ({ '0': '\0', '1': '\x01', t: '\t', r: '\r', n: '\n' } as Record<string, string>)[c] ?? c);
}

/** Splits "name=value" / "flag" arguments into a record (flags map to ''). */
function fieldsOf(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i < 0) out[a] = '';
    else out[a.slice(0, i)] = unescapeValue(a.slice(i + 1));
  }
  return out;
}

/** The base64 alphabet (Postfix checks it before anything goes to Dovecot). */
export function isBase64(s: string): boolean {
  return /^[A-Za-z0-9+/]*={0,2}$/.test(s) && s.length > 0;
}

interface Connection {
  socket: net.Socket;
  mechanisms: Mechanism[];
}

export class DovecotAuth {
  private conn: Promise<Connection> | null = null;
  /** The connection `conn` resolved to, once its handshake is done. */
  private live: Connection | null = null;
  private readonly pending = new Map<number, (step: AuthStep | Error) => void>();
  private nextId = 0;

  constructor(readonly path: string, private readonly opts: { timeoutMs: number } = { timeoutMs: 10_000 }) {}

  /** The mechanisms Dovecot offers (connecting if needed), private ones left out. */
  async mechanisms(): Promise<Mechanism[]> {
    return (await this.connection()).mechanisms;
  }

  /** Sends AUTH; resolves with Dovecot's answer. Rejects with AuthUnavailable. */
  async start(req: AuthRequest): Promise<AuthStep> {
    const conn = await this.connection();
    const id = ++this.nextId;
    // resp= must be the last parameter; Postfix sends no lport/rport/session.
    let line = `AUTH\t${id}\t${req.mech}\tservice=${req.service}\tnologin\tlip=${req.lip}\trip=${req.rip}`;
    if (req.secured) line += '\tsecured';
    if (req.resp !== undefined) line += `\tresp=${req.resp === '=' ? '' : req.resp}`;
    return this.send(conn, id, line);
  }

  /** Answers a CONT challenge of request id. */
  async next(id: number, response: string): Promise<AuthStep> {
    const conn = await this.connection();
    return this.send(conn, id, `CONT\t${id}\t${response}`);
  }

  close(): void {
    void this.conn?.then((c) => c.socket.destroy(), () => undefined);
    this.conn = null;
    this.live = null;
  }

  private send(conn: Connection, id: number, line: string): Promise<AuthStep> {
    return new Promise<AuthStep>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new AuthUnavailable('Connection lost to authentication server'));
        this.drop(conn);
      }, this.opts.timeoutMs);
      this.pending.set(id, (step) => {
        clearTimeout(timer);
        this.pending.delete(id);
        if (step instanceof Error) reject(step);
        else resolve(step);
      });
      conn.socket.write(`${line}\n`);
    });
  }

  /** Forgets a broken connection and fails what was waiting on it. */
  private drop(conn: Connection): void {
    conn.socket.destroy();
    if (this.live === conn) {
      this.live = null;
      this.conn = null;
    }
    for (const done of [...this.pending.values()]) done(new AuthUnavailable('Connection lost to authentication server'));
  }

  private connection(): Promise<Connection> {
    if (!this.conn) {
      this.conn = this.handshake();
      this.conn.catch(() => { this.conn = null; });
    }
    return this.conn;
  }

  private handshake(): Promise<Connection> {
    return new Promise<Connection>((resolve, reject) => {
      let target: net.NetConnectOpts;
      if (this.path.startsWith('inet:')) {
        const hp = this.path.slice(5);
        const i = hp.lastIndexOf(':');
        target = { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
      } else {
        target = { path: this.path.startsWith('unix:') ? this.path.slice(5) : this.path };
      }
      const socket = net.connect(target);
      const mechanisms: Mechanism[] = [];
      let handshaking = true;
      let sawMech = false;
      let buf = '';
      const fail = (text: string) => {
        if (!handshaking) return;
        handshaking = false;
        clearTimeout(timer);
        socket.destroy();
        reject(new AuthUnavailable(text));
      };
      const timer = setTimeout(() => fail(`SASL: Connect to Dovecot auth socket '${this.path}' failed: timed out`), this.opts.timeoutMs);
      socket.setNoDelay?.(true);
      socket.on('connect', () => socket.write(`VERSION\t${MAJOR}\t${MINOR}\nCPID\t${process.pid}\n`));
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (handshaking) fail(`SASL: Connect to Dovecot auth socket '${this.path}' failed: ${err.code ?? err.message}`);
      });
      socket.on('close', () => {
        if (handshaking) return fail(`SASL: Connect to Dovecot auth socket '${this.path}' failed: connection closed during handshake`);
        this.drop(conn);
      });
      const conn: Connection = { socket, mechanisms };
      socket.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (handshaking) handshakeLine(line);
          else this.reply(line);
        }
      });
      const handshakeLine = (line: string) => {
        const [cmd, ...args] = line.split('\t');
        switch (cmd) {
          case 'VERSION':
            if (Number(args[0]) !== MAJOR) fail(`SASL: Protocol version mismatch (${args[0]} vs. ${MAJOR})`);
            return;
          case 'MECH': {
            sawMech = true;
            const flags = new Set(args.slice(1).map((f) => f.toLowerCase()));
            if (args[0] && !flags.has('private')) mechanisms.push({ name: args[0].toUpperCase(), flags });
            return;
          }
          case 'SPID':
            if (!sawMech) fail('SASL: Connected to wrong auth socket (auth-master instead of auth-client)');
            return;
          case 'DONE':
            handshaking = false;
            clearTimeout(timer);
            this.live = conn;
            resolve(conn);
            return;
          default:
            return; // CUID, COOKIE and anything newer: not needed
        }
      };
    });
  }

  /** One reply line after the handshake: OK, CONT or FAIL for a request in flight. */
  private reply(line: string): void {
    const [cmd, idText, ...args] = line.split('\t');
    const id = Number(idText);
    const done = this.pending.get(id);
    if (!done) return; // another request's, or unknown: skipped, as Postfix does
    switch (cmd) {
      case 'OK': {
        const fields = fieldsOf(args);
        // Dovecot's current protocol: an OK that says nologin or proxy is not a login here.
        if ('nologin' in fields || 'proxy' in fields) {
          return done({ kind: 'fail', id, reason: fields['reason'] ?? null, user: fields['user'] ?? null, temp: false });
        }
        return done({ kind: 'ok', id, user: fields['user'] ?? null, fields });
      }
      case 'CONT':
        // A CONT without its data field is a broken server (Postfix: "Authentication backend error").
        if (args[0] === undefined) return done({ kind: 'fail', id, reason: 'Authentication backend error', user: null, temp: false });
        return done({ kind: 'cont', id, challenge: args[0] });
      case 'FAIL': {
        const fields = fieldsOf(args);
        return done({ kind: 'fail', id, reason: fields['reason'] ?? null, user: fields['user'] ?? null, temp: 'temp' in fields || fields['code'] === 'temp_fail' });
      }
      default:
        return;
    }
  }
}
