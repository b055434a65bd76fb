/**
 * Temporary directories for one test file: `const tempDir = tempDirs('postactor-x-')` gives a
 * maker of fresh directories (optionally filled with files), all removed when the file's tests
 * end.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

export function tempDirs(prefix: string): (files?: Record<string, string>) => string {
  const made: string[] = [];
  after(() => {
    for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  });
  return (files = {}) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    made.push(dir);
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    return dir;
  };
}
