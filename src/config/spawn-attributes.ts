/**
 * The command attributes of a master.cf spawn(8) service, as Postfix's spawn reads them:
 * `user=name[:group]` (required), then `argv=command …` (required, last). The command may not
 * run as root, as $mail_owner, or with group 0 or $mail_owner's group. Read by the spawn actor
 * at start and by `postactor check`, so a bad line is refused before anything listens.
 */
import { groupByName, userByName } from '../system/passwd.js';

export interface SpawnAttributes { user: string; uid: number; gid: number; argv: string[] }

/** The attributes, or what is wrong with them (Postfix's fatal texts). */
export function parseSpawnAttributes(args: readonly string[], mailOwner: string): SpawnAttributes | string {
  let user: string | null = null;
  let group: string | null = null;
  let argv: string[] | null = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const lower = arg.toLowerCase();
    if (lower.startsWith('user=')) {
      const v = arg.slice(5);
      const colon = v.indexOf(':');
      user = colon < 0 ? v : v.slice(0, colon);
      group = colon < 0 || colon === v.length - 1 ? null : v.slice(colon + 1);
    } else if (lower.startsWith('argv=')) {
      argv = [arg.slice(5), ...args.slice(i + 1)].filter((w, k) => k > 0 || w.length > 0);
      break;
    } else {
      return `unknown attribute name: ${arg}`;
    }
  }
  if (user === null) return 'missing user= attribute';
  if (argv === null || argv.length === 0) return 'missing argv= attribute';
  const pw = userByName(user);
  if (!pw) return `unknown user name: ${user}`;
  let gid = pw.gid;
  if (group !== null) {
    const gr = groupByName(group);
    if (!gr) return `unknown group name: ${group}`;
    gid = gr.gid;
  }
  const owner = userByName(mailOwner);
  if (pw.uid === 0) return 'request to deliver as root';
  if (owner && pw.uid === owner.uid) return 'request to deliver as mail system owner';
  if (gid === 0) return `request to use privileged group id ${gid}`;
  if (owner && gid === owner.gid) return `request to use mail system owner group id ${gid}`;
  return { user, uid: pw.uid, gid, argv };
}
