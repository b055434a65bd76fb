/**
 * Reads mailboxes back with an independent reader, Python's `mailbox` module: an mbox file or a
 * Maildir, each message as its From_ line (mbox), headers in order and body.
 */
import { execFileSync } from 'node:child_process';

export interface PyMessage { from: string | null; headers: [string, string][]; body: string }

export function readMailbox(kind: 'mbox' | 'Maildir', path: string): PyMessage[] {
  const script = `
import json, mailbox, sys
box = mailbox.mbox(sys.argv[1], create=False) if sys.argv[2] == 'mbox' else mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key in sorted(box.keys(), key=lambda k: str(k)):
    m = box[key]
    out.append({'from': m.get_from() if sys.argv[2] == 'mbox' else None, 'headers': [[k, v] for k, v in m.items()], 'body': m.get_payload()})
print(json.dumps(out))
`;
  return JSON.parse(execFileSync('python3', ['-c', script, path, kind], { encoding: 'utf8' })) as PyMessage[];
}

/** The values of one header field (case-insensitive name), in order. */
export const header = (m: PyMessage, name: string): string[] => m.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
