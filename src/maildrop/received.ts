/**
 * The Received header of a local submission, which pickup adds to a message it takes from the
 * maildrop queue (Postfix's cleanup adds it for pickup's messages: "from userid").
 */
import { mailDate } from '../time/mail-date.js';

/** Postfix pickup's Received header: "Received: by HOST (NAME, from userid UID)" + "\tid QID; DATE". */
export function pickupReceivedHeader(myhostname: string, mailName: string, uid: number, queueId: string, date: number, eol: string): string {
  return `Received: by ${myhostname} (${mailName}, from userid ${uid})${eol}\tid ${queueId}; ${mailDate(date)}${eol}`;
}
