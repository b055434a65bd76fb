/**
 * postscreen's built-in SMTP engine (Postfix's postscreen_smtpd.c). It never accepts mail: it
 * runs the deep tests (command pipelining, non-SMTP commands, bare newlines) and answers an
 * enforced client's RCPT with the refusal it earned. A client that passes the deep tests is
 * still not handed to smtpd in mid-session (the SMTP state cannot move with the socket): its
 * RCPT gets "450 4.3.2 Service currently unavailable" and it must come back, which is why
 * Postfix's documentation warns that these tests delay new clients.
 */
import { nonSmtpCommand } from '../smtpd/forbidden.js';
import { escapeText } from './misc.js';
import type { Session } from './state.js';
import { BARLF, NSMTP, PIPEL, PREGR, anyFail } from './tests.js';

const nowSeconds = () => Math.floor(Date.now() / 1000);
/** psc_min_ttl: how long an "ignore" deep test result lasts (the shortest test TTL). */
const minTtl = (s: Session) => {
  const t = s.ctx.settings;
  return Math.min(t.greetTtl, t.dnsblMinTtl, t.pipelining.ttl, t.nonSmtp.ttl, t.bareNewline.ttl);
};

type Handler = (s: Engine, args: string) => void;
interface Command { name: string; handler: Handler; enabled: boolean; payload?: boolean }

/** psc_extract_addr, simplified: "<addr> params" or "addr"; null when the brackets do not match. */
function extractAddr(text: string): string | null {
  const t = text.trim();
  if (t.startsWith('<')) {
    const end = t.indexOf('>');
    return end < 0 ? null : t.slice(1, end);
  }
  if (t.includes('<') || t.includes('>')) return null;
  return t.split(/\s+/)[0] ?? '';
}

class Engine {
  helo: string | null = null;
  sender: string | null = null;
  protocol = 'SMTP';
  where = 'CONNECT';
  commands = 0;
  line: number[] = [];
  sawCr = false;
  timer: NodeJS.Timeout | null = null;
  ended = false;
  /** The input already buffered after the current command (the pipelining test shows it). */
  pendingText = '';

  constructor(readonly s: Session) {}

  reply(text: string): void {
    this.s.send(text);
  }

  /** PSC_CLEAR_EVENT_DROP_SESSION_STATE. */
  drop(text: string): void {
    this.ended = true;
    this.s.drop(text);
  }
}

const COMMANDS: Command[] = [
  { name: 'HELO', enabled: true, handler: (e, args) => {
    const name = args.split(' ').filter(Boolean)[0];
    if (!name) return e.reply('501 Syntax: HELO hostname\r\n');
    e.helo = name;
    e.sender = null;
    e.reply(`250 ${e.s.ctx.settings.hostname}\r\n`);
  } },
  { name: 'EHLO', enabled: true, handler: (e, args) => {
    const name = args.split(' ').filter(Boolean)[0];
    if (!name) return e.reply('501 Syntax: EHLO hostname\r\n');
    e.helo = name;
    e.sender = null;
    e.protocol = 'ESMTP';
    const set = e.s.ctx.settings;
    const lines = [
      set.hostname,
      set.sizeLimit > 0 ? `SIZE ${set.sizeLimit}` : 'SIZE',
      ...(set.vrfyDisabled ? [] : ['VRFY']),
      'ETRN', 'ENHANCEDSTATUSCODES', '8BITMIME', 'DSN',
      ...(set.smtputf8 ? ['SMTPUTF8'] : []),
      'CHUNKING',
    ];
    e.reply(lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join(''));
  } },
  // STARTTLS needs tlsproxy, which is not built: answered as when TLS is off.
  { name: 'STARTTLS', enabled: true, handler: (e) => e.reply('502 5.5.1 Error: command not implemented\r\n') },
  { name: 'XCLIENT', enabled: false, handler: () => undefined },
  { name: 'XFORWARD', enabled: false, handler: () => undefined },
  { name: 'AUTH', enabled: false, handler: () => undefined },
  { name: 'MAIL', enabled: true, handler: (e, args) => {
    if (e.s.ctx.settings.heloRequired && e.helo === null) return e.reply('503 5.5.1 Error: send HELO/EHLO first\r\n');
    if (e.sender !== null) return e.reply('503 5.5.1 Error: nested MAIL command\r\n');
    const colon = args.indexOf(':');
    if (colon < 0) return e.reply('501 5.5.4 Syntax: MAIL FROM:<address>\r\n');
    const addr = extractAddr(args.slice(colon + 1));
    if (addr === null) return e.reply('501 5.1.7 Bad sender address syntax\r\n');
    e.sender = addr;
    e.reply('250 2.1.0 Ok\r\n');
  } },
  { name: 'RCPT', enabled: true, handler: (e, args) => {
    if (e.sender === null) return e.reply('503 5.5.1 Error: need MAIL command\r\n');
    const colon = args.indexOf(':');
    if (colon < 0) return e.reply('501 5.5.4 Syntax: RCPT TO:<address>\r\n');
    const addr = extractAddr(args.slice(colon + 1));
    if (addr === null) return e.reply('501 5.1.3 Bad recipient address syntax\r\n');
    const r = e.s.rcptReply;
    e.s.ctx.log.info(`NOQUEUE: reject: RCPT from ${e.s.who}: ${e.s.softened(r).slice(0, -2)}; from=<${e.sender}>, to=<${addr}>, proto=${e.protocol}, helo=<${e.helo ?? ''}>`);
    e.reply(r);
  } },
  { name: 'DATA', enabled: true, handler: (e, args) => {
    e.s.ctx.log.info(`DATA without valid RCPT from ${e.s.who}`);
    if (args.trim() !== '') return e.drop('501 5.5.4 Syntax: DATA\r\n');
    if (e.sender === null) return e.drop('503 5.5.1 Error: need RCPT command\r\n');
    e.drop('554 5.5.1 Error: no valid recipients\r\n');
  } },
  { name: 'BDAT', enabled: true, payload: true, handler: (e, args) => {
    e.s.ctx.log.info(`BDAT without valid RCPT from ${e.s.who}`);
    if (args.trim() === '') return e.drop('501 5.5.4 Syntax: BDAT count [LAST]\r\n');
    if (e.sender === null) return e.drop('554 5.5.1 Error: need MAIL command\r\n');
    e.drop('554 5.5.1 Error: no valid recipients\r\n');
  } },
  { name: 'RSET', enabled: true, handler: (e) => {
    e.sender = null;
    e.reply('250 2.0.0 Ok\r\n');
  } },
  { name: 'NOOP', enabled: true, handler: (e) => e.reply('250 2.0.0 Ok\r\n') },
  { name: 'VRFY', enabled: true, handler: (e, args) => {
    if (args.trim() === '') return e.reply('501 5.5.4 Syntax: VRFY address\r\n');
    if (e.s.ctx.settings.vrfyDisabled) return e.reply('502 5.5.1 VRFY command is disabled\r\n');
    e.reply(e.s.rcptReply);
  } },
  { name: 'ETRN', enabled: true, handler: (e, args) => {
    if (e.s.ctx.settings.heloRequired && e.helo === null) return e.reply('503 5.5.1 Error: send HELO/EHLO first\r\n');
    if (args.trim() === '') return e.reply('500 Syntax: ETRN domain\r\n');
    e.reply('458 Unable to queue messages\r\n');
  } },
  { name: 'QUIT', enabled: true, handler: (e) => e.drop('221 2.0.0 Bye\r\n') },
];

/** A deep test failed: log was written by the caller; apply the test's action. False: the session ended. */
function failDeep(e: Engine, i: number, action: 'ignore' | 'enforce' | 'drop', dropReply: string): boolean {
  const st = e.s.st;
  st.fail[i] = true;
  st.pass[i] = false;
  st.expire[i] = 1;
  st.skip[i] = true;
  switch (action) {
    case 'drop':
      e.drop(dropReply);
      return false;
    case 'enforce':
      e.s.enforce('550 5.5.1 Protocol error\r\n');
      return true;
    case 'ignore':
      // Not a failure; "passed" until something else expires.
      st.fail[i] = false;
      st.pass[i] = true;
      st.expire[i] = nowSeconds() + minTtl(e.s);
      return true;
  }
}

const testing = (e: Engine, i: number) => e.s.st.todo[i] && !e.s.st.skip[i];

/** One complete command line; `more` says whether more input is already buffered. */
function command(e: Engine, text: string, more: boolean): void {
  const s = e.s;
  const settings = s.ctx.settings;
  const word = text.split(' ').find((w) => w !== '') ?? '';
  const args = text.slice(text.indexOf(word) + word.length);
  const saved = e.where;
  const cmd = COMMANDS.find((c) => c.name === word.toUpperCase());
  e.where = cmd ? cmd.name : 'UNIMPLEMENTED';
  // Non-SMTP command test.
  if (testing(e, NSMTP) && !cmd
    && nonSmtpCommand(word, settings.forbiddenCommands)) {
    s.ctx.log.info(`NON-SMTP COMMAND from ${s.who} after ${saved}: ${word.replace(/[^\x20-\x7e]/g, '?')} ${escapeText(Buffer.from(text, 'latin1'), 100)}`);
    if (!failDeep(e, NSMTP, settings.nonSmtp.action, '521 5.7.0 Error: I can break rules, too. Goodbye.\r\n')) return;
  }
  // Command pipelining test (not announced by this engine, so any is improper).
  if (!cmd?.payload && testing(e, PIPEL) && more) {
    s.ctx.log.info(`COMMAND PIPELINING from ${s.who} after ${word.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)}: ${escapeText(Buffer.from(e.pendingText, 'latin1'), 100)}`);
    if (!failDeep(e, PIPEL, settings.pipelining.action, '521 5.5.1 Protocol error\r\n')) return;
  }
  // The deep tests pass when the client gets as far as RCPT (it may still fail them later).
  if (cmd?.name === 'RCPT') {
    for (const [i, ttl] of [[BARLF, settings.bareNewline.ttl], [NSMTP, settings.nonSmtp.ttl], [PIPEL, settings.pipelining.ttl]] as const) {
      if (s.st.todo[i] && !s.st.pass[i] && !s.st.fail[i]) {
        s.st.pass[i] = true;
        s.st.expire[i] = nowSeconds() + ttl;
      }
    }
  }
  if (++e.commands > settings.commandCountLimit && cmd?.name !== 'QUIT') {
    s.ctx.log.info(`COMMAND COUNT LIMIT from ${s.who} after ${saved}`);
    return e.drop(`421 ${settings.hostname} Service unavailable - try again later\r\n`);
  }
  if (!cmd || !cmd.enabled) return e.reply('502 5.5.2 Error: command not recognized\r\n');
  cmd.handler(e, args);
}

/** psc_smtpd_tests: the 220 greeting, then commands until the client quits, fails or times out. */
export function smtpdTests(s: Session): void {
  const settings = s.ctx.settings;
  const e = new Engine(s);
  const limit = settings.commandTimeLimit * 1000;
  const arm = () => {
    if (e.timer) clearTimeout(e.timer);
    e.timer = setTimeout(() => {
      s.ctx.log.info(`COMMAND TIME LIMIT from ${s.who} after ${e.where}`);
      e.drop(`421 4.4.2 ${settings.hostname} Error: timeout exceeded\r\n`);
    }, limit);
  };
  const onData = (chunk: Buffer) => read(chunk);
  const onClose = () => {
    if (!e.ended) {
      e.ended = true;
      s.hangupEvent();
    }
  };
  s.beginTests('tests after SMTP handshake', () => {
    e.ended = true;
    if (e.timer) clearTimeout(e.timer);
    s.socket.off('data', onData);
    s.socket.off('close', onClose);
    s.socket.off('end', onClose);
  });
  // A client that failed something is tested on all counts; nothing it passes is kept anyway.
  if (anyFail(s.st)) for (const i of [PIPEL, NSMTP, BARLF]) s.st.todo[i] = true;
  // A pregreeting client already talks: it gets no greeting from the engine.
  if (!s.st.fail[PREGR]) s.send(`220 ${settings.smtpdBanner}\r\n`);

  const read = (chunk: Buffer) => {
    for (let at = 0; at < chunk.length && !e.ended; at++) {
      const ch = chunk[at]!;
      if (e.line.length >= settings.lineLengthLimit) {
        s.ctx.log.info(`COMMAND LENGTH LIMIT from ${s.who} after ${e.where}`);
        return e.drop(`421 ${settings.hostname} Service unavailable - try again later\r\n`);
      }
      if (ch !== 0x0a) {
        e.line.push(ch);
        continue;
      }
      const crlf = e.line.length > 0 && e.line[e.line.length - 1] === 0x0d;
      if (crlf) e.line.pop();
      else if (testing(e, BARLF)) {
        s.ctx.log.info(`BARE NEWLINE from ${s.who} after ${escapeText(Uint8Array.from(e.line), 100)}`);
        if (!failDeep(e, BARLF, settings.bareNewline.action, '521 5.5.1 Protocol error\r\n')) return;
      }
      const text = Buffer.from(e.line).toString('latin1');
      e.line = [];
      e.pendingText = chunk.subarray(at + 1).toString('latin1');
      command(e, text, at + 1 < chunk.length);
      if (!e.ended) arm();
    }
  };
  // The bytes read during the greet wait (a pregreet) come first.
  const early = Buffer.concat(s.readAhead);
  s.readAhead.length = 0;
  s.socket.on('data', onData);
  s.socket.on('close', onClose);
  s.socket.on('end', onClose);
  arm();
  if (early.length > 0) read(early);
  s.socket.resume();
}
