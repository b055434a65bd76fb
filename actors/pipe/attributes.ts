/**
 * pipe(8) command attributes: the master.cf words after "pipe" —
 *   flags=BDFORXhqu.>  user=name[:group]  size=bytes  eol=\n  null_sender=text  directory=path  argv=command …
 * argv= must come last: every word after it is the command. A bad attribute is a configuration
 * error (Postfix: fatal); the agent then defers every delivery with 4.3.5 and names the problem.
 */
import { groupByName, userByName } from '../../src/system/passwd.js';

export interface PipeAttributes {
  flags: Set<string>;
  user: string;
  uid: number;
  gid: number;
  sizeLimit: number;
  eol: string;
  nullSender: string;
  directory: string | null;
  argv: string[];
}

const FLAGS = 'BDFORXhqu.>';

/** The C escapes pipe(8) accepts in eol=: \a \b \f \n \r \t \v \ddd \\. */
export function unescape(s: string): string {
  const map: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };
  return s.replace(/\\([0-7]{1,3}|.)/g, (_, e: string) => (/^[0-7]/.test(e) ? String.fromCharCode(parseInt(e, 8)) : map[e] ?? e));
}

/** One passwd(5)/group(5) entry by name (files only: no NSS modules). */
export function parseAttributes(args: readonly string[], mailOwner: string): PipeAttributes | string {
  const a: PipeAttributes = { flags: new Set(), user: '', uid: -1, gid: -1, sizeLimit: 0, eol: '\n', nullSender: 'MAILER-DAEMON', directory: null, argv: [] };
  let user: string | null = null;
  let group: string | null = null;
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq).toLowerCase();
    const value = eq < 0 ? '' : arg.slice(eq + 1);
    if (name === 'flags') {
      for (const f of value) {
        if (!FLAGS.includes(f)) return `unknown flag: ${f}`;
        a.flags.add(f);
      }
    } else if (name === 'user') {
      const colon = value.indexOf(':');
      user = colon < 0 ? value : value.slice(0, colon);
      group = colon < 0 || colon === value.length - 1 ? null : value.slice(colon + 1);
    } else if (name === 'size') {
      if (!/^\d+$/.test(value)) return `bad size= value: ${value}`;
      a.sizeLimit = Number(value);
    } else if (name === 'eol') {
      a.eol = unescape(value);
    } else if (name === 'null_sender') {
      a.nullSender = value;
    } else if (name === 'directory') {
      a.directory = value;
    } else if (name === 'chroot') {
      return 'not supported: chroot= command-line attribute';
    } else if (name === 'argv') {
      a.argv = [value, ...args.slice(i + 1)].filter((w, k) => k > 0 || w.length > 0);
      break;
    } else {
      return `unknown attribute name: ${arg}`;
    }
  }
  if (user === null) return 'missing user= command-line attribute';
  if (a.argv.length === 0) return 'missing argv= command-line attribute';
  const pw = userByName(user);
  if (!pw) return `unknown username: ${user}`;
  a.user = user;
  a.uid = pw.uid;
  a.gid = pw.gid;
  if (group !== null) {
    const gr = groupByName(group);
    if (!gr) return `unknown group: ${group}`;
    a.gid = gr.gid;
  }
  if (a.uid === 0) return 'user= command-line attribute specifies root privileges';
  if (user === mailOwner) return `user= command-line attribute specifies mail system owner ${mailOwner}`;
  if (a.gid === 0) return 'user= command-line attribute specifies privileged group id 0';
  return a;
}
