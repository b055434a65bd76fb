/**
 * Postfix's user access lists for the local commands (global/user_acl.c): authorized_submit_users
 * (sendmail), authorized_mailq_users (mailq, postqueue -p), authorized_flush_users (postqueue
 * -f/-s/-i, sendmail -q). The default "static:anyone" (any "static:" value) lets everyone in
 * without a passwd lookup. Otherwise the calling user's name ("unknown" when the uid has no
 * passwd entry) is matched against the list, left to right, first match wins: a name, a
 * "type:table" that has the name as a key, a "/file" of more items, each optionally negated
 * with "!". No match denies. mailq and flush let root and mail_owner through whatever the list
 * says; submission does not (as Postfix).
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';

/** The calling user's name if the list keeps them out, or null when it lets them in. */
export async function userAclDenied(acl: string): Promise<string | null> {
  if (acl.trim().toLowerCase().startsWith('static:')) return null;
  let name = 'unknown';
  try {
    name = userInfo().username || 'unknown';
  } catch {
    // no passwd entry: "unknown", which a list may name ("!unknown")
  }
  return (await aclAllows(acl, name)) ? null : name;
}

/** Whether the list lets this user name in (first match wins; no match denies). */
export async function aclAllows(acl: string, name: string): Promise<boolean> {
  if (acl.trim().toLowerCase().startsWith('static:')) return true;
  return (await matches(acl, name.toLowerCase(), 0)) === true;
}

/** true (allow), false (a "!" item matched), or null (no item matched). */
async function matches(list: string, name: string, depth: number): Promise<boolean | null> {
  for (const raw of list.split(/[\s,]+/).filter(Boolean)) {
    const negate = raw.startsWith('!');
    const item = negate ? raw.slice(1) : raw;
    let hit: boolean | null;
    if (item.startsWith('/')) {
      // A file of more items (Postfix's match lists read "/file/name" patterns from the file).
      if (depth > 10) throw new Error(`${item}: too many nested files`);
      hit = await matches(readFileSync(item, 'utf8').replace(/#.*$/gm, ''), name, depth + 1);
      if (hit === null) continue;
      return negate ? !hit : hit;
    }
    if (item.includes(':')) {
      const { openTable } = await import('../maps/index.js');
      const table = openTable(item);
      hit = (await table.lookup(name)).found;
    } else hit = item.toLowerCase() === name;
    if (hit) return !negate;
  }
  return null;
}

/** Postfix's texts when a list refuses the caller (sendmail, postqueue), exit status EX_NOPERM (77). */
export const ACL_REFUSALS = {
  submit: 'is not allowed to submit mail',
  mailq: 'is not allowed to view the mail queue',
  flush: 'is not allowed to flush the mail queue',
} as const;

/**
 * The check of mailq and postqueue: root and mail_owner may always list and flush; anyone else
 * as the list says. The refusal text, or null.
 */
export async function queueAclRefusal(kind: 'mailq' | 'flush', acl: string, mailOwner: string): Promise<string | null> {
  if (acl.trim().toLowerCase().startsWith('static:')) return null;
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return null;
  const { userByName } = await import('./passwd.js');
  if (userByName(mailOwner)?.uid === uid) return null;
  const denied = await userAclDenied(acl);
  return denied === null ? null : `User ${denied}(${uid}) ${ACL_REFUSALS[kind]}`;
}
