/**
 * The tests before the 220 greeting (Postfix's postscreen_early.c), in parallel for
 * postscreen_greet_wait: the pregreet test (the "220-" teaser is sent, and a client that
 * talks before the real greeting is logged PREGREET) and the DNSBL lookups (through the
 * dnsblog service). When only the DNS answers are awaited, the wait ends as soon as they are
 * in. Then the DNSBL score is judged, and the client goes to smtpd, to the built-in SMTP
 * engine (deep tests, or an enforced refusal), or is dropped.
 */
import { dnsblScore, type DnsblAnswer } from './dnsbl.js';
import { escapeText } from './misc.js';
import type { Session } from './state.js';
import { DNSBL, PREGR, TEST_COUNT, anyFail, deepPending } from './tests.js';

/** What the early tests need from the thread's postscreen. */
export interface EarlyContext {
  /** Asks every DNSBL domain about the address; each answer is delivered as it arrives. */
  dnsblLookup(addr: string, onAnswer: (domain: string, answer: DnsblAnswer) => void): number;
  replyName(domain: string): string;
  /** The deep tests (smtpd.ts). */
  smtpdTests(s: Session): void;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export function earlyTests(s: Session, ctx: EarlyContext): void {
  const settings = s.ctx.settings;
  const st = s.st;
  const answers = new Map<string, DnsblAnswer>();
  let pending = 0;
  let timer: NodeJS.Timeout | null = null;
  let ended = false;
  const onData = (chunk: Buffer) => pregreet(chunk);
  const onClose = () => {
    if (!ended) s.hangupEvent();
  };
  const cleanup = () => {
    ended = true;
    if (timer) clearTimeout(timer);
    s.socket.off('data', onData);
    // Keep what arrives from now on in the socket (for smtpd, or the deep tests to read).
    s.socket.pause();
    s.socket.off('close', onClose);
    s.socket.off('end', onClose);
  };
  s.beginTests('tests before SMTP handshake', cleanup);

  const earlyDone = () => (!st.todo[PREGR] || st.done[PREGR]) && (!st.todo[DNSBL] || st.done[DNSBL]);

  /** psc_allowlist_non_dnsbl: a good enough DNSWL score passes the other tests too. */
  const allowlistNonDnsbl = () => {
    const score = s.dnsbl!;
    if (anyFail(st) || score.score >= settings.dnsblThreshold || settings.dnsblAllowlistThreshold >= 0 || score.score > settings.dnsblAllowlistThreshold) return;
    const until = nowSeconds() + score.ttl;
    for (let i = 0; i < TEST_COUNT; i++) {
      if (i === DNSBL) continue;
      if (st.todo[i] && !st.pass[i]) {
        st.done[i] = true;
        st.pass[i] = true;
      }
      if (st.expire[i]! < until) st.expire[i] = until;
    }
  };
  const retrieve = () => {
    if (s.dnsbl === null) {
      s.dnsbl = dnsblScore(settings.dnsblSites, answers, ctx.replyName, settings.dnsblMinTtl, settings.dnsblMaxTtl);
      allowlistNonDnsbl();
    }
  };

  /** EVENT_TIME: the greet wait is over (or every early test is done). */
  const finish = () => {
    if (ended) return;
    cleanup();
    if (st.todo[PREGR] && !st.fail[PREGR] && !st.done[PREGR]) {
      st.expire[PREGR] = nowSeconds() + settings.greetTtl;
      st.pass[PREGR] = true;
    }
    // greet_action ignore: not a failure, but not a pass either: tested again next time.
    if (st.fail[PREGR] && settings.greetAction === 'ignore') st.fail[PREGR] = false;
    if (st.todo[DNSBL]) {
      retrieve();
      const score = s.dnsbl!;
      if (score.score < settings.dnsblThreshold) {
        st.expire[DNSBL] = nowSeconds() + score.ttl;
        st.pass[DNSBL] = true;
      } else {
        s.ctx.log.info(`DNSBL rank ${score.score} for ${s.who}`);
        st.fail[DNSBL] = true;
        const text = (code: string) => `${code} 5.7.1 Service unavailable; client [${s.addr}] blocked using ${score.name}\r\n`;
        switch (settings.dnsblAction) {
          case 'drop': return s.drop(text('521'));
          case 'enforce': s.enforce(text('550')); break;
          case 'ignore': st.fail[DNSBL] = false; break;
        }
      }
    }
    if (s.noforward || deepPending(st)) ctx.smtpdTests(s);
    else s.conclude();
  };

  /** The client spoke before its turn (only the first time counts). */
  const pregreet = (chunk: Buffer) => {
    s.readAhead.push(chunk);
    if (st.done[PREGR] || st.fail[PREGR]) return;
    // Postfix peeks at most PSC_READ_BUF_SIZE - 1 bytes.
    s.ctx.log.info(`PREGREET ${Math.min(chunk.length, 1023)} after ${s.elapsed()} from ${s.who}: ${escapeText(chunk, 100)}`);
    st.fail[PREGR] = true;
    switch (settings.greetAction) {
      case 'drop':
        return s.drop('521 5.5.1 Protocol error\r\n');
      case 'enforce':
        s.enforce('550 5.5.1 Protocol error\r\n');
        break;
      case 'ignore':
        break;
    }
    st.done[PREGR] = true;
    if (Date.now() - s.started >= settings.greetWait * 1000 || earlyDone()) finish();
  };

  if (st.todo[PREGR] && settings.greetBanner !== '') s.send(`220-${settings.greetBanner}\r\n`);
  if (st.todo[DNSBL]) {
    pending = ctx.dnsblLookup(s.addr, (domain, answer) => {
      if (ended) return;
      answers.set(domain, answer);
      if (--pending > 0) return;
      retrieve();
      st.done[DNSBL] = true;
      if (earlyDone()) setImmediate(finish);
    });
  }
  // Reading is what notices a pregreet; without the pregreet test the client is not read.
  if (st.todo[PREGR]) s.socket.on('data', onData);
  s.socket.on('close', onClose);
  s.socket.on('end', onClose);
  timer = setTimeout(finish, settings.greetWait * 1000);
}
