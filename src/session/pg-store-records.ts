import { z } from 'zod';
import {
  THREAD_BODY_RECORD_TYPES,
  ThreadBodyRecordSchema,
  ThreadHeaderRecordSchema,
  ThreadRecordEnvelopeSchema,
  type ThreadBodyRecord,
  type ThreadHeaderRecord,
} from '../protocol/thread.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { parseJson, type RecordRowSchema } from './pg-store-sql.js';
import { UnknownRecords } from './unknown-records.js';

/**
 * The rows of a thread of the PostgreSQL store (`pg-thread-store.ts`) read back as its records: the
 * header from `cmx_threads`, the body from `cmx_thread_records`, each checked against the schemas
 * of `protocol/thread.ts`.
 */

/** A thread read back: what `PgThreadStore.load` answers, and the records it skipped. */
export interface StoredThread {
  header: ThreadHeaderRecord;
  records: ThreadBodyRecord[];
  /** Records of kinds this version does not know, left out of `records`. */
  unknown: UnknownRecords;
}

/**
 * Reads a thread's header and its body rows (in `seq` order) back. A record of a type this version
 * does not know is left out and counted in `unknown`; any other record that does not read back
 * throws `PROTOCOL_VIOLATION` naming the thread, `where` it is stored and the record's `seq`.
 */
export function readStoredThread(threadId: string, where: string, headerText: string, rows: readonly z.output<typeof RecordRowSchema>[]): StoredThread {
  const header = parseHeader(threadId, where, headerText);
  const unknown = new UnknownRecords();
  unknown.formatVersion(header.version);
  const records: ThreadBodyRecord[] = [];
  for (const { seq, record } of rows) {
    const parsed = parseRecord(threadId, where, seq, record);
    if ('unknownType' in parsed) unknown.add(parsed.unknownType, `record ${seq}`);
    else records.push(parsed);
  }
  return { header, records, unknown };
}

function parseHeader(threadId: string, where: string, text: string): ThreadHeaderRecord {
  const header = ThreadHeaderRecordSchema.safeParse(parseJson(text));
  if (!header.success) throw corrupt(threadId, where, 'the header', z.prettifyError(header.error));
  if (header.data.threadId !== threadId) throw corrupt(threadId, where, 'the header', `it names thread "${header.data.threadId}"`);
  return header.data;
}

/** One stored record, or the type of a well-formed record of a kind this version does not know (see `unknown-records.ts`). */
function parseRecord(threadId: string, where: string, seq: string, text: string): ThreadBodyRecord | { unknownType: string } {
  const value = parseJson(text);
  const envelope = ThreadRecordEnvelopeSchema.safeParse(value);
  if (!envelope.success) throw corrupt(threadId, where, `record ${seq}`, 'not an object with a string "type"');
  const known: readonly string[] = THREAD_BODY_RECORD_TYPES;
  if (!known.includes(envelope.data.type)) return { unknownType: envelope.data.type };
  const record = ThreadBodyRecordSchema.safeParse(value);
  if (!record.success) throw corrupt(threadId, where, `record ${seq}`, z.prettifyError(record.error).replaceAll('\n', ' '));
  return record.data;
}

function corrupt(threadId: string, where: string, what: string, reason: string): LocalError {
  return new LocalError(LocalErrorCode.ProtocolViolation, `${what} of thread ${threadId} in ${where} does not read back: ${reason}; it was left untouched`);
}
