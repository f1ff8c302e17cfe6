import { open, type FileHandle } from 'node:fs/promises';
import type { ThreadBodyRecord, ThreadHeaderRecord } from '../protocol/thread.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { checkHeader, corrupt, findLastLineStart, openIfExists, parseLine, parsesAsJson, readFully, readLines, writeAll } from './jsonl-lines.js';
import { UnknownRecords } from './unknown-records.js';

/** A thread file as read back: its header, its records in order, the warnings of lines skipped, and records of unknown kinds. */
export interface ThreadFile {
  header: ThreadHeaderRecord;
  records: ThreadBodyRecord[];
  /** One per torn last line skipped. */
  warnings: string[];
  unknown: UnknownRecords;
}

/**
 * Reads a thread file, or `undefined` when there is none. A torn last line is skipped (with a
 * warning returned); any other line that does not read back rejects with `PROTOCOL_VIOLATION`
 * naming the file and line.
 */
export async function readThreadFile(path: string, threadId: string): Promise<ThreadFile | undefined> {
  const handle = await openIfExists(path);
  if (handle === undefined) return undefined;
  let header: ThreadHeaderRecord | undefined;
  const records: ThreadBodyRecord[] = [];
  const warnings: string[] = [];
  const unknown = new UnknownRecords();
  try {
    for await (const line of readLines(handle, 0, 1, path)) {
      const parsed = parseLine(line, path);
      if (parsed.kind === 'header') {
        header = checkHeader(parsed.record, threadId, path);
        unknown.formatVersion(header.version);
      } else if (parsed.kind === 'body') records.push(parsed.record);
      else if (parsed.kind === 'unknown') unknown.add(parsed.type, `line ${line.number}`);
      else warnings.push(parsed.warning);
    }
  } finally {
    await handle.close();
  }
  if (header === undefined) throw corrupt(path, 1, 'the file is empty');
  return { header, records, warnings, unknown };
}

/**
 * Makes the file end with a newline before anything is appended: a last line that is complete
 * JSON only lost its newline and gets one; anything else there is a write torn by a crash (what
 * a load skipped) and is truncated away. With `fsync`, the repair is made durable.
 */
export async function repairTail(handle: FileHandle, path: string, options: { fsync: boolean; logger: Logger }): Promise<void> {
  const { size } = await handle.stat();
  const lineStart = await findLastLineStart(handle, size, path);
  if (lineStart === size) return;
  const torn = Buffer.alloc(size - lineStart);
  await readFully(handle, torn, lineStart);
  if (parsesAsJson(torn)) {
    await writeAll(handle, Buffer.from('\n'));
    options.logger.info('added the missing newline after the last record', { path });
  } else {
    await handle.truncate(lineStart);
    options.logger.warn('removed a torn last line (an interrupted write) before appending', { path, offset: lineStart, bytes: torn.length });
  }
  if (options.fsync) await handle.datasync();
}

/** Makes a new file's directory entry durable; not possible everywhere (Windows), so best effort. */
export async function syncDir(dir: string, logger: Logger): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    logger.debug('cannot sync the thread directory', { dir, error: errorMessage(error) });
  }
}
