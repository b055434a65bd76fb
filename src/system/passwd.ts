/**
 * getpwnam()/getgrnam() from /etc/passwd and /etc/group, for the daemons that run programs as
 * another user (spawn, pipe). Read at each call: the files are small, and an admin's change
 * takes effect without a reload, as with Postfix's daemons that look the user up per request.
 */
import { readFileSync } from 'node:fs';

export interface UserEntry { name: string; uid: number; gid: number; home: string; shell: string }
export interface GroupEntry { name: string; gid: number }

function fields(file: string, name: string): string[] | null {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch { return null; }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 3) return f;
  }
  return null;
}

export function userByName(name: string, file = '/etc/passwd'): UserEntry | null {
  const f = fields(file, name);
  if (!f || f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) return null;
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
}

export function groupByName(name: string, file = '/etc/group'): GroupEntry | null {
  const f = fields(file, name);
  if (!f || !/^\d+$/.test(f[2]!)) return null;
  return { name, gid: Number(f[2]) };
}
