import { writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { z } from 'zod';
import {
  THREAD_BODY_RECORD_TYPES,
  THREAD_ID_PATTERN,
  ThreadBodyRecordSchema,
  ThreadHeaderRecordSchema,
  ThreadRecordEnvelopeSchema,
  type ThreadBodyRecord,
  type ThreadEnvironment,
  type ThreadHeaderRecord,
} from '../protocol/thread.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { MAX_THREAD_RECORD_BYTES, promptPreview, type ThreadSummaryStatus } from './thread-store.js';

/** The JSON Lines format of a thread file: reading lines, parsing and checking records, summaries. */

const READ_CHUNK_BYTES = 64 * 1024;
/** The start of every `item` line we write (the schema puts `type` first); lets a summary skip items unparsed. */
const ITEM_LINE_PREFIX = Buffer.from('{"type":"item",');
const NEWLINE = 0x0a;

/** A summary folded up to `offset` (a line boundary), so the next `list()` reads only what was added. */
export interface SummaryState {
  ino: number;
  offset: number;
  nextLine: number;
  createdAt: string;
  environments: ThreadEnvironment[];
  lastStatus: ThreadSummaryStatus | undefined;
  lastTurnId: string | undefined;
  preview: string | undefined;
}

export interface Line {
  /** 1-based. */
  number: number;
  bytes: Buffer;
  /** False for a last line without a newline. */
  terminated: boolean;
  /** The file offset just past the line and its newline. */
  end: number;
}

/** A line read: the header, a record, a well-formed record of a kind this version does not know (see `unknown-records.ts`), or a line skipped. */
type ParsedLine =
  { kind: 'header'; record: ThreadHeaderRecord } | { kind: 'body'; record: ThreadBodyRecord } | { kind: 'unknown'; type: string } | { kind: 'skip'; warning: string };

/**
 * Folds a thread file into its summary, starting from a cached state when there is one. `complete`
 * is false when the last line had no newline (its effect is in `state` but must not be cached).
 */
export async function foldSummary(
  handle: FileHandle,
  path: string,
  threadId: string,
  ino: number,
  from: SummaryState | undefined,
): Promise<{ state: SummaryState; complete: boolean }> {
  let state = from === undefined ? undefined : { ...from };
  let complete = true;
  for await (const line of readLines(handle, from?.offset ?? 0, from?.nextLine ?? 1, path)) {
    if (state !== undefined && line.terminated && line.bytes.subarray(0, ITEM_LINE_PREFIX.length).equals(ITEM_LINE_PREFIX)) {
      // Items are the bulk of a file and change nothing in a summary.
      state.offset = line.end;
      state.nextLine = line.number + 1;
      continue;
    }
    const parsed = parseLine(line, path);
    if (parsed.kind === 'header') {
      const header = checkHeader(parsed.record, threadId, path);
      state = { ino, offset: 0, nextLine: 1, createdAt: header.createdAt, environments: header.environments, lastStatus: undefined, lastTurnId: undefined, preview: undefined };
    } else if (state !== undefined && parsed.kind === 'body') {
      foldRecord(state, parsed.record);
    }
    if (state === undefined) continue;
    if (line.terminated) {
      state.offset = line.end;
      state.nextLine = line.number + 1;
    } else {
      complete = false;
    }
  }
  if (state === undefined) throw corrupt(path, 1, 'the file is empty');
  return { state, complete };
}

/** The record types that change a summary; the others (items, compactions, instructions) only make the file longer. */
export function changesSummary(record: ThreadBodyRecord): boolean {
  return record.type === 'environments_changed' || record.type === 'turn_started' || record.type === 'turn_completed';
}

/** Folds one record into a summary (see {@link changesSummary}); does not move `offset`. */
export function foldRecord(state: Pick<SummaryState, 'environments' | 'lastStatus' | 'lastTurnId' | 'preview'>, record: ThreadBodyRecord): void {
  if (record.type === 'environments_changed') state.environments = record.environments;
  else if (record.type === 'turn_started') {
    state.lastStatus = 'incomplete';
    state.lastTurnId = record.turnId;
    state.preview ??= promptPreview(record.prompt);
  } else if (record.type === 'turn_completed') {
    state.lastStatus = record.status;
    state.lastTurnId = record.turnId;
  }
}

/** Parses one line; throws for anything but a valid record, a torn last line or a record of an unknown type. */
export function parseLine(line: Line, path: string): ParsedLine {
  const text = line.bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    if (!line.terminated && line.number > 1) {
      return {
        kind: 'skip',
        warning:
          `skipped a torn last line (line ${line.number} of ${path}, ${line.bytes.length} bytes without a newline: ` +
          'a write interrupted by a crash); it is removed before the next append',
      };
    }
    if (text.trim() === '' && line.number > 1) return { kind: 'skip', warning: `skipped blank line ${line.number} of ${path}` };
    throw corrupt(path, line.number, `not JSON (${errorMessage(error)})`);
  }
  const envelope = ThreadRecordEnvelopeSchema.safeParse(value);
  if (!envelope.success) throw corrupt(path, line.number, 'not an object with a string "type"');
  const type = envelope.data.type;
  if (line.number === 1) {
    if (type !== 'thread') throw corrupt(path, 1, `the first record is "${type}", not the "thread" header`);
    const header = ThreadHeaderRecordSchema.safeParse(value);
    if (!header.success) throw corrupt(path, 1, formatIssues(header.error));
    return { kind: 'header', record: header.data };
  }
  if (type === 'thread') throw corrupt(path, line.number, 'a second "thread" header');
  if (!isKnownBodyType(type)) return { kind: 'unknown', type };
  const record = ThreadBodyRecordSchema.safeParse(value);
  if (!record.success) throw corrupt(path, line.number, formatIssues(record.error));
  return { kind: 'body', record: record.data };
}

export function checkHeader(header: ThreadHeaderRecord, threadId: string, path: string): ThreadHeaderRecord {
  if (header.threadId !== threadId) throw corrupt(path, 1, `the header names thread "${header.threadId}"`);
  return header;
}

function isKnownBodyType(type: string): type is ThreadBodyRecord['type'] {
  const known: readonly string[] = THREAD_BODY_RECORD_TYPES;
  return known.includes(type);
}

export function corrupt(path: string, line: number, reason: string): LocalError {
  const what = line === 1 ? 'invalid thread header' : 'corrupt record';
  return new LocalError(LocalErrorCode.ProtocolViolation, `${what} at line ${line} of ${path}: ${reason}; the file was left untouched`);
}

export function checkThreadId(threadId: string): string {
  if (!THREAD_ID_PATTERN.test(threadId)) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `invalid thread id ${JSON.stringify(threadId)}: expected 1-128 characters of A-Z a-z 0-9 _ -`);
  }
  return threadId;
}

/** Parses `value` with `schema`; a failure is the caller's bug, reported as `INVALID_ARGUMENT`. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, threadId: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new LocalError(LocalErrorCode.InvalidArgument, `invalid record for thread ${threadId}: ${formatIssues(result.error)}`);
  }
  return result.data;
}

function formatIssues(error: z.ZodError): string {
  return error.issues.map((issue) => (issue.path.length === 0 ? issue.message : `${issue.path.map(String).join('.')}: ${issue.message}`)).join('; ');
}

/** One record as one line, refusing records beyond {@link MAX_THREAD_RECORD_BYTES}. */
export function serialize(record: { type: string }, path: string): Buffer {
  return serializedLine(JSON.stringify(record), record.type, path);
}

/** The JSON text of a record of `type` as one line, refusing records beyond {@link MAX_THREAD_RECORD_BYTES}. */
export function serializedLine(json: string, type: string, path: string): Buffer {
  const line = Buffer.from(`${json}\n`);
  const bytes = line.length - 1;
  if (bytes > MAX_THREAD_RECORD_BYTES) {
    throw new LocalError(
      LocalErrorCode.LimitExceeded,
      `a "${type}" record of ${bytes} bytes exceeds the ${MAX_THREAD_RECORD_BYTES}-byte (16 MiB) bound of one thread record (${path})`,
    );
  }
  return line;
}

/** Yields the lines of a file from `start` (a line boundary), each bounded by {@link MAX_THREAD_RECORD_BYTES}. */
export async function* readLines(handle: FileHandle, start: number, firstLine: number, path: string): AsyncGenerator<Line> {
  let position = start;
  let lineStart = start;
  let number = firstLine;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
    if (bytesRead === 0) break;
    position += bytesRead;
    const data = chunk.subarray(0, bytesRead);
    let from = 0;
    for (;;) {
      const newline = data.indexOf(NEWLINE, from);
      const piece = data.subarray(from, newline === -1 ? data.length : newline);
      pending.push(piece);
      pendingBytes += piece.length;
      if (pendingBytes > MAX_THREAD_RECORD_BYTES) throw corrupt(path, number, `the line is longer than ${MAX_THREAD_RECORD_BYTES} bytes`);
      if (newline === -1) break;
      const bytes = pending.length === 1 ? piece : Buffer.concat(pending, pendingBytes);
      const end = lineStart + pendingBytes + 1;
      pending = [];
      pendingBytes = 0;
      yield { number, bytes, terminated: true, end };
      number += 1;
      lineStart = end;
      from = newline + 1;
    }
  }
  if (pendingBytes > 0) yield { number, bytes: Buffer.concat(pending, pendingBytes), terminated: false, end: lineStart + pendingBytes };
}

/** The offset just past the last newline of a non-empty file, scanning backwards at most one record's length. */
export async function findLastLineStart(handle: FileHandle, size: number, path: string): Promise<number> {
  let end = size;
  while (end > 0 && size - end <= MAX_THREAD_RECORD_BYTES) {
    const begin = Math.max(0, end - READ_CHUNK_BYTES);
    const chunk = Buffer.alloc(end - begin);
    await readFully(handle, chunk, begin);
    const newline = chunk.lastIndexOf(NEWLINE);
    if (newline !== -1) return begin + newline + 1;
    end = begin;
  }
  if (end === 0) {
    const reason = size === 0 ? 'the file is empty' : 'the header line is incomplete';
    throw new LocalError(LocalErrorCode.ProtocolViolation, `cannot append to ${path}: ${reason}; the file was left untouched`);
  }
  throw new LocalError(LocalErrorCode.ProtocolViolation, `cannot append to ${path}: its last line is longer than any record; the file was left untouched`);
}

export async function readFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new LocalError(LocalErrorCode.ProtocolViolation, 'the file shrank while it was being read');
    done += bytesRead;
  }
}

export async function writeAll(handle: FileHandle, buffer: Buffer): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, done, buffer.length - done);
    done += bytesWritten;
  }
}

/**
 * Writes all of `buffer` at the file's end, synchronously (for small appends that wait for no
 * sync: a copy into the page cache costs microseconds, a round trip through libuv's thread pool
 * costs a wake-up of two threads).
 */
export function writeAllSync(handle: FileHandle, buffer: Buffer): void {
  let done = 0;
  while (done < buffer.length) done += writeSync(handle.fd, buffer, done, buffer.length - done);
}

export async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

export function parsesAsJson(bytes: Buffer): boolean {
  try {
    JSON.parse(bytes.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

export function errnoCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

/** `fn` over `items` with at most `limit` calls in flight, results in input order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let index = next++; index < items.length; index = next++) {
      const item = items[index];
      if (item !== undefined) results[index] = await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
