/**
 * One postscreen session (Postfix's postscreen_state.c and psc_conclude/psc_hangup_event of
 * postscreen_misc.c): the client's socket, its test state, the replies an enforced or dropped
 * session ends with, and the end of every session — log the verdict, update the cache, and
 * either hand the socket to smtpd or say the final reply and hang up.
 */
import type * as net from 'node:net';
import type { DnsblScore } from './dnsbl.js';
import type { Endpoints } from './haproxy.js';
import { formatDelta } from './misc.js';
import type { PostscreenSettings } from './settings.js';
import { anyFail, anyPass, newState, printTests, type TestState } from './tests.js';

/** What a session needs from the thread's postscreen (index.ts). */
export interface SessionContext {
  settings: PostscreenSettings;
  log: { info(text: string): void; warn(text: string): void };
  cacheUpdate(addr: string, entry: string): void;
  /** Gives the socket (with any bytes read ahead put back) to this thread's smtpd, with the endpoints postscreen saw. */
  handOff(socket: net.Socket, endpoints: Endpoints): void;
  /** The session ended (counts one connection fewer for the client). */
  release(addr: string): void;
}

export class Session {
  readonly st: TestState = newState();
  noforward = false;
  hangup = false;
  finalReply = '421 4.3.2 Service currently unavailable\r\n';
  rcptReply = '450 4.3.2 Service currently unavailable\r\n';
  testName = '';
  started = Date.now();
  dnsbl: DnsblScore | null = null;
  /** Bytes read from the client before the hand-off (the pregreet), given back to smtpd. */
  readonly readAhead: Buffer[] = [];
  finished = false;
  /** Cleanup of the current phase (timers, listeners), run when the session ends. */
  private phaseCleanup: (() => void) | null = null;

  constructor(readonly ctx: SessionContext, readonly socket: net.Socket, readonly endpoints: Endpoints) {}

  get addr(): string {
    return this.endpoints.clientAddr;
  }

  get port(): number {
    return this.endpoints.clientPort;
  }

  /** "[addr]:port", as every postscreen log line names the client. */
  get who(): string {
    return `[${this.addr}]:${this.port}`;
  }

  send(text: string): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(this.softened(text));
  }

  /**
   * soft_bounce (postscreen_send.c): a reply's "5" code and "5" status class become "4"; the
   * reject log line uses it too, so it shows what the client got.
   */
  softened(text: string): string {
    if (!this.ctx.settings.softBounce) return text;
    return `${text[0] === '5' ? '4' : text.slice(0, 1)}${text.slice(1, 4)}${text[4] === '5' ? '4' : text.slice(4, 5)}${text.slice(5)}`;
  }

  beginTests(name: string, cleanup: () => void): void {
    this.testName = name;
    this.started = Date.now();
    this.phaseCleanup = cleanup;
  }

  elapsed(): string {
    return formatDelta(Date.now() - this.started);
  }

  /** PSC_DROP_SESSION_STATE: end now with this reply. */
  drop(reply: string): void {
    this.noforward = true;
    this.finalReply = reply;
    this.conclude();
  }

  /** PSC_ENFORCE_SESSION_STATE: go on with the tests, then refuse every RCPT with this reply. */
  enforce(reply: string): void {
    this.rcptReply = reply;
    this.noforward = true;
  }

  /** psc_hangup_event: the client went away (never a failed test). */
  hangupEvent(): void {
    if (this.finished) return;
    this.hangup = true;
    this.ctx.log.info(`HANGUP after ${this.elapsed()} from ${this.who} in ${this.testName}`);
    this.noforward = true;
    this.conclude();
  }

  /** psc_conclude. */
  conclude(): void {
    if (this.finished) return;
    this.finished = true;
    this.phaseCleanup?.();
    this.phaseCleanup = null;
    const st = this.st;
    // No partial credit for a client that failed something.
    if (anyFail(st)) st.pass.fill(false);
    const passed = anyPass(st);
    if (passed && st.pass.every((p, i) => p === st.todo[i])) {
      this.ctx.log.info(`PASS ${st.isNew ? 'NEW' : 'OLD'} ${this.who}`);
    }
    if (passed && this.ctx.settings.cache) this.ctx.cacheUpdate(this.addr, printTests(this.ctx.settings, st));
    this.ctx.release(this.addr);
    if (!this.noforward) {
      if (this.readAhead.length > 0) this.socket.unshift(Buffer.concat(this.readAhead));
      this.ctx.handOff(this.socket, this.endpoints);
      return;
    }
    if (!this.hangup) this.send(this.finalReply);
    this.ctx.log.info(`DISCONNECT ${this.who}`);
    this.socket.end();
    // A client that does not close its side is not waited for.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
