/**
 * A list of milters (smtpd_milters) for one SMTP session, as Postfix's milter.c runs them:
 * each event goes to every milter in order and the first verdict that is not "continue"
 * ends it. Also reads the milter settings from the configuration: the list (plain endpoints
 * or `{ endpoint, name = value, … }` with per-milter connect_timeout, command_timeout,
 * content_timeout, default_action, protocol) and the per-stage macro lists.
 */
import type { Config } from '../config/index.js';
import { valuesOf, type Params } from '../config/declared.js';
import { Milter, type ConnectInfo, type Edit, type MacroSource, type MilterSettings, type Stage, type Verdict } from './milter.js';
import { SOFT_BOUNCE_PARAMS } from '../delivery/soft-bounce.js';

export type { Edit, Verdict, MacroSource, ConnectInfo } from './milter.js';

const MACRO_PARAMS = {
  connect: 'milter_connect_macros', helo: 'milter_helo_macros', mail: 'milter_mail_macros',
  rcpt: 'milter_rcpt_macros', data: 'milter_data_macros', eoh: 'milter_end_of_header_macros',
  eom: 'milter_end_of_data_macros', unknown: 'milter_unknown_command_macros',
} as const satisfies Record<Stage, string>;

/** What the milter settings read (smtpd and cleanup spread these into theirs; given a configuration, they are read here). */
export const MILTER_PARAMS = {
  'milter_connect_macros': 'list',
  'milter_helo_macros': 'list',
  'milter_mail_macros': 'list',
  'milter_rcpt_macros': 'list',
  'milter_data_macros': 'list',
  'milter_end_of_header_macros': 'list',
  'milter_end_of_data_macros': 'list',
  'milter_unknown_command_macros': 'list',
  'milter_connect_timeout': 'time',
  'milter_command_timeout': 'time',
  'milter_content_timeout': 'time',
  'milter_default_action': 'str',
  'milter_protocol': 'str',
  'queue_directory': 'str',
  ...SOFT_BOUNCE_PARAMS,
} as const;

/** Splits a milter list: words separated by space/comma, a `{ … }` group is one entry. */
export function splitMilterList(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (/[\s,]/.test(ch)) { i++; continue; }
    if (ch === '{') {
      const end = text.indexOf('}', i);
      if (end < 0) throw new Error(`missing '}' in "${text}"`);
      out.push(text.slice(i, end + 1));
      i = end + 1;
      continue;
    }
    let j = i;
    while (j < text.length && !/[\s,]/.test(text[j]!)) j++;
    out.push(text.slice(i, j));
    i = j;
  }
  return out;
}

/** The settings of each milter in `list` (the value of smtpd_milters), from the values read. */
export function milterSettings(from: Config | Params<typeof MILTER_PARAMS>, list: string, warn: (t: string) => void): MilterSettings[] {
  const v = valuesOf(from, MILTER_PARAMS, 'milter');
  const macros = {} as Record<Stage, string[]>;
  for (const [stage, param] of Object.entries(MACRO_PARAMS)) macros[stage as Stage] = v[param];
  const base = {
    connectTimeout: v.milter_connect_timeout,
    commandTimeout: v.milter_command_timeout,
    contentTimeout: v.milter_content_timeout,
    defaultAction: v.milter_default_action,
    protocol: v.milter_protocol,
    queueDirectory: v.queue_directory,
    softBounce: v.soft_bounce,
    macros,
    warn,
  };
  return splitMilterList(list).map((entry) => {
    if (!entry.startsWith('{')) return { ...base, endpoint: entry };
    const parts = entry.slice(1, -1).split(',').map((p) => p.trim()).filter(Boolean);
    const endpoint = parts.shift() ?? '';
    const s: MilterSettings = { ...base, endpoint };
    for (const p of parts) {
      const eq = p.indexOf('=');
      const key = p.slice(0, eq).trim();
      const value = p.slice(eq + 1).trim();
      const secs = () => timeSeconds(value, `${key} = ${value}`);
      if (key === 'connect_timeout') s.connectTimeout = secs();
      else if (key === 'command_timeout') s.commandTimeout = secs();
      else if (key === 'content_timeout') s.contentTimeout = secs();
      else if (key === 'default_action') s.defaultAction = value;
      else if (key === 'protocol') s.protocol = value;
      else throw new Error(`unknown milter attribute "${key}" in "${entry}"`);
    }
    return s;
  });
}

function timeSeconds(v: string, what: string): number {
  const m = /^(\d+)([smhdw]?)$/.exec(v);
  if (!m) throw new Error(`bad time value: ${what}`);
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 } as Record<string, number>)[m[2]!]!;
}

/** The milters of one SMTP session. */
export class Milters {
  readonly list: Milter[];
  constructor(settings: MilterSettings[]) {
    this.list = settings.map((s) => new Milter(s));
  }

  /**
   * Runs one event through the milters in order; the first verdict other than continue wins.
   * One promise per event: the milters' steps are callbacks (see Milter).
   */
  private each(fn: (m: Milter, done: (v: Verdict) => void) => void): Promise<Verdict> {
    return new Promise((resolve) => this.eachCb(fn, resolve));
  }

  private eachCb(fn: (m: Milter, done: (v: Verdict) => void) => void, done: (v: Verdict) => void): void {
    let i = 0;
    const next = (v: Verdict): void => {
      if (v !== null && v !== 'skip') return done(v);
      if (i === this.list.length) return done(null);
      fn(this.list[i++]!, next);
    };
    next(null);
  }

  connect(peer: ConnectInfo, macros: MacroSource): Promise<Verdict> {
    return new Promise((resolve) => {
      // Every milter is connected (in parallel) before the first hears CONNECT.
      let opening = this.list.length;
      const opened = () => {
        if (--opening === 0) this.eachCb((m, done) => m.connectCb(peer, macros, done), resolve);
      };
      if (opening === 0) return resolve(null);
      for (const m of this.list) m.openCb(opened);
    });
  }
  helo(name: string, macros: MacroSource): Promise<Verdict> { return this.each((m, done) => m.heloCb(name, macros, done)); }
  mail(sender: string, args: string[], macros: MacroSource): Promise<Verdict> { return this.each((m, done) => m.mailCb(sender, args, macros, done)); }
  rcpt(recipient: string, args: string[], macros: MacroSource): Promise<Verdict> { return this.each((m, done) => m.rcptCb(recipient, args, macros, done)); }
  data(macros: MacroSource): Promise<Verdict> { return this.each((m, done) => m.dataCb(macros, done)); }
  unknown(command: string, macros: MacroSource): Promise<Verdict> { return this.each((m, done) => m.unknownCb(command, macros, done)); }

  /**
   * The message through each milter in turn; each later milter sees the message as the
   * earlier ones edited it (Postfix: cleanup re-reads the queue file). `apply` folds one
   * milter's edits into the message and returns the new headers and body.
   */
  content(headers: [string, string][], body: Buffer, macros: MacroSource,
    apply: (edits: Edit[]) => { headers: [string, string][]; body: Buffer }): Promise<Verdict> {
    return new Promise((resolve, reject) => {
      let i = 0;
      const next = (): void => {
        if (i === this.list.length) return resolve(null);
        this.list[i++]!.contentCb(headers, body, macros, ({ verdict, edits }) => {
          if (verdict !== null && verdict !== 'H') return resolve(verdict);
          if (verdict === 'H') edits.push({ op: 'quarantine', reason: 'default action' });
          if (edits.length) {
            try {
              ({ headers, body } = apply(edits));
            } catch (err) {
              return reject(err as Error);
            }
          }
          next();
        });
      };
      next();
    });
  }

  abort(): void { for (const m of this.list) m.abort(); }
  quit(): void { for (const m of this.list) m.quit(); }
}
