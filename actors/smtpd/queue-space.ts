/**
 * Postfix's smtpd_check_queue: at MAIL FROM, refuse mail the queue's file system has no room
 * for, before the client sends it (452 4.3.1 Insufficient system storage, a temporary error, so
 * the client retries later). The rule, in file system blocks as Postfix counts them: refuse when
 * the free blocks are at most queue_minfree, or at most 1.5 × message_size_limit.
 * (With message_size_limit = 0, "no limit", only queue_minfree and an empty disk count.)
 * One statfs per MAIL, as Postfix's smtpd does.
 */
import { statfsSync } from 'node:fs';
import type { PolicyRequest } from '../../src/smtpd/policy.js';

/** Postfix's smtpd_space_multf: free space wanted per message_size_limit. */
const SPACE_MULTIPLIER = 1.5;

export interface QueueSpaceRefusal {
  code: 452;
  text: string;
  /** The warning Postfix logs, and its "reject:" line. */
  warning: string;
  reject: string;
}

export class QueueSpace {
  constructor(private readonly queueDirectory: string, private readonly minFree: number, private readonly sizeLimit: number) {}

  /**
   * The refusal for a MAIL FROM (with its log lines), or null when the queue has room. The
   * request (for the log lines) is made only for a refusal.
   */
  check(request: () => PolicyRequest): QueueSpaceRefusal | null {
    let blockSize: number;
    let free: number;
    try {
      const fs = statfsSync(this.queueDirectory);
      blockSize = fs.bsize;
      free = fs.bavail;
    } catch {
      return null; // not knowable here: the write at end of DATA is what counts
    }
    const blocks = (bytes: number) => Math.floor(bytes / blockSize);
    if (blocks(this.minFree) < free && blocks(this.sizeLimit) < free / SPACE_MULTIPLIER) return null;
    const r = request();
    const reply = '452 4.3.1 Insufficient system storage';
    let reject = `${r.queueId ?? 'NOQUEUE'}: reject: MAIL from ${r.clientName}[${r.clientAddr}]: ${reply};`;
    if (r.sender !== null) reject += ` from=<${r.sender}>`;
    reject += ` proto=${r.protocol}`;
    if (r.helo) reject += ` helo=<${r.helo}>`;
    return {
      code: 452,
      text: '4.3.1 Insufficient system storage',
      warning: `not enough free space in mail queue: ${free * blockSize} bytes < ${SPACE_MULTIPLIER}*message size limit`,
      reject,
    };
  }
}
