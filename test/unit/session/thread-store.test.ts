import { appendFile, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { THREAD_RECORD_VERSION, type ThreadBodyRecord } from '../../../src/protocol/thread.js';
import { DEFAULT_MAX_OPEN_THREAD_FILES, JsonlThreadStore as ThreadStore, openThreadFilesFor, type ThreadStoreOptions } from '../../../src/session/jsonl-thread-store.js';
import { MAX_THREAD_RECORD_BYTES, type LoadedThread, type NewThreadHeader } from '../../../src/session/thread-store.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { createLogger } from '../../../src/util/logger.js';

const AT = '2025-01-02T03:04:05.000Z';

let tmp: string;
let dir: string;
const stores: ThreadStore[] = [];

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'thread-store-'));
  dir = join(tmp, 'threads');
});

afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await rm(tmp, { recursive: true, force: true });
});

function newStore(options: Partial<ThreadStoreOptions> = {}): ThreadStore {
  const store = new ThreadStore({ dir, now: () => Date.parse(AT), ...options });
  stores.push(store);
  return store;
}

function header(threadId: string): NewThreadHeader {
  return {
    threadId,
    createdAt: AT,
    config: {
      model: 'gpt-5-codex',
      modelProvider: 'openai',
      approvalPolicy: 'on-request',
      sandbox: 'workspace-write',
      cwd: '/work',
      configOverrides: { model_reasoning_effort: 'high' },
    },
    environments: [{ id: 'local', cwd: '/work' }],
  };
}

function item(turnId: string, text: string): ThreadBodyRecord {
  return { type: 'item', at: AT, turnId, item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] } };
}

function itemTexts(loaded: LoadedThread | undefined): string[] {
  return (loaded?.records ?? []).flatMap((record) => {
    if (record.type !== 'item') return [];
    const content = record.item.content;
    if (!Array.isArray(content)) return [];
    return content.flatMap((part: unknown) => (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string' ? [part.text] : []));
  });
}

/** The rejection of `promise`, checked to be a LocalError with `code`. */
async function localError(promise: Promise<unknown>, code: LocalErrorCode): Promise<LocalError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    const local = error as LocalError;
    expect(local.code).toBe(code);
    return local;
  }
  throw new Error(`expected a LocalError ${code}`);
}

/** Writes a thread file by hand: a valid header, then `lines` verbatim. */
async function writeThreadFile(threadId: string, lines: string): Promise<string> {
  const store = newStore();
  await store.create(header(threadId));
  await store.close();
  const path = join(dir, `${threadId}.jsonl`);
  await appendFile(path, lines);
  return path;
}

describe('ThreadStore', () => {
  it('round-trips a thread: header, records in order, all record types', async () => {
    const store = newStore();
    await store.create(header('t1'));
    await store.append('t1', { type: 'turn_started', turnId: 'u1', prompt: 'hello', environments: [{ id: 'local', cwd: '/work' }] });
    await store.append('t1', item('u1', 'hello'));
    await store.append('t1', {
      type: 'item',
      turnId: 'u1',
      item: { type: 'function_call', name: 'exec_command', arguments: '{"cmd":"ls"}', call_id: 'c1', extra: { kept: true } },
    });
    await store.append('t1', { type: 'turn_completed', turnId: 'u1', status: 'completed', lastAgentMessage: null });
    await store.append('t1', { type: 'environments_changed', environments: [] });

    const loaded = await store.load('t1');
    expect(loaded?.warnings).toEqual([]);
    expect(loaded?.header).toEqual({ type: 'thread', version: THREAD_RECORD_VERSION, at: AT, ...header('t1') });
    expect(loaded?.records.map((record) => record.type)).toEqual(['turn_started', 'item', 'item', 'turn_completed', 'environments_changed']);
    expect(loaded?.records[0]).toEqual({ type: 'turn_started', at: AT, turnId: 'u1', prompt: 'hello', environments: [{ id: 'local', cwd: '/work' }] });
    // Items are kept whole, unknown fields included: they go back to the model as they were.
    expect(loaded?.records[2]).toMatchObject({ item: { type: 'function_call', call_id: 'c1', extra: { kept: true } } });
    expect(loaded?.records[3]).toEqual({ type: 'turn_completed', at: AT, turnId: 'u1', status: 'completed', lastAgentMessage: null });

    const text = await readFile(join(dir, 't1.jsonl'), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.trimEnd().split('\n')).toHaveLength(6);
    if (process.platform !== 'win32') {
      expect((await stat(join(dir, 't1.jsonl'))).mode & 0o777).toBe(0o600);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
    }
  });

  it('returns undefined for a thread without a file', async () => {
    expect(await newStore().load('missing')).toBeUndefined();
  });

  it('keeps the call order of concurrent appends per thread, across threads', async () => {
    const store = newStore();
    await Promise.all([store.create(header('a')), store.create(header('b'))]);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 100; i += 1) {
      writes.push(store.append('a', item('u', `a${i}`)));
      writes.push(store.append('b', item('u', `b${i}`)));
    }
    await Promise.all(writes);
    const expected = (prefix: string): string[] => Array.from({ length: 100 }, (_, i) => `${prefix}${i}`);
    expect(itemTexts(await store.load('a'))).toEqual(expected('a'));
    expect(itemTexts(await store.load('b'))).toEqual(expected('b'));
  });

  it('orders a create and appends issued without waiting', async () => {
    const store = newStore();
    const pending = [store.create(header('quick')), store.append('quick', item('u', 'one')), store.append('quick', item('u', 'two'))];
    await Promise.all(pending);
    expect(itemTexts(await store.load('quick'))).toEqual(['one', 'two']);
  });

  it('writes appends made at once together, but never past a load issued between them', async () => {
    const store = newStore();
    await store.create(header('batch'));
    const first = [store.append('batch', item('u', 'one')), store.append('batch', item('u', 'two'))];
    const loading = store.load('batch');
    const later = store.append('batch', item('u', 'three'));
    await Promise.all([...first, later]);
    expect(itemTexts(await loading)).toEqual(['one', 'two']);
    expect(itemTexts(await store.load('batch'))).toEqual(['one', 'two', 'three']);
  });

  it('rejects every append of a write that fails', async () => {
    const store = newStore();
    const results = await Promise.allSettled([store.append('ghost', item('u', 'x')), store.append('ghost', item('u', 'y'))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: LocalErrorCode.NotFound });
  });

  it('loads in a new store what the previous one wrote (a restart)', async () => {
    const first = newStore();
    await first.create(header('r1'));
    await first.append('r1', item('u1', 'before restart'));
    await first.close();

    const second = newStore();
    const loaded = await second.load('r1');
    expect(loaded?.header.threadId).toBe('r1');
    expect(itemTexts(loaded)).toEqual(['before restart']);
    await second.append('r1', item('u2', 'after restart'));
    expect(itemTexts(await newStore().load('r1'))).toEqual(['before restart', 'after restart']);
  });

  it('skips a torn last line with a warning and cuts it off before the next append', async () => {
    const lines: string[] = [];
    const logger = createLogger({ write: (line) => lines.push(line), level: 'warn' });
    const path = await writeThreadFile('torn', `${JSON.stringify(item('u1', 'kept'))}\n{"type":"item","at":"2025-01-`);

    const store = newStore({ logger });
    const loaded = await store.load('torn');
    expect(itemTexts(loaded)).toEqual(['kept']);
    expect(loaded?.warnings).toHaveLength(1);
    expect(loaded?.warnings[0]).toContain('torn last line (line 3 of');
    expect(lines.join('')).toContain('torn last line');
    // Loading alone changes nothing.
    expect(await readFile(path, 'utf8')).toMatch(/"at":"2025-01-$/);

    await store.append('torn', item('u2', 'next'));
    const text = await readFile(path, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    for (const line of text.trimEnd().split('\n')) expect(() => JSON.parse(line) as unknown).not.toThrow();
    const reloaded = await newStore().load('torn');
    expect(reloaded?.warnings).toEqual([]);
    expect(itemTexts(reloaded)).toEqual(['kept', 'next']);
  });

  it('keeps a complete last record that only lost its newline', async () => {
    const path = await writeThreadFile('nonl', JSON.stringify(item('u1', 'complete')));
    const store = newStore();
    expect(itemTexts(await store.load('nonl'))).toEqual(['complete']);
    await store.append('nonl', item('u1', 'after'));
    expect((await readFile(path, 'utf8')).endsWith('\n')).toBe(true);
    expect(itemTexts(await newStore().load('nonl'))).toEqual(['complete', 'after']);
  });

  it('rejects a corrupt line in the middle, naming the file and line, and leaves the file untouched', async () => {
    const path = await writeThreadFile(
      'bad',
      [JSON.stringify(item('u', 'one')), JSON.stringify(item('u', 'two')), '{"type":"item", oops', JSON.stringify(item('u', 'four')), ''].join('\n'),
    );
    const before = await readFile(path);
    const store = newStore();
    const error = await localError(store.load('bad'), LocalErrorCode.ProtocolViolation);
    expect(error.message).toContain(`corrupt record at line 4 of ${path}: not JSON`);
    expect(error.message).toContain('the file was left untouched');
    expect(await readFile(path)).toEqual(before);
  });

  it('rejects a record of a known type that does not validate', async () => {
    const path = await writeThreadFile('invalid', `${JSON.stringify({ type: 'turn_completed', at: AT, turnId: 'u', status: 'exploded', lastAgentMessage: null })}\n`);
    const error = await localError(newStore().load('invalid'), LocalErrorCode.ProtocolViolation);
    expect(error.message).toContain(`corrupt record at line 2 of ${path}: status:`);
  });

  it('rejects a file whose first line is not a valid header', async () => {
    const path = join(dir, 'nohead.jsonl');
    await newStore().create(header('other'));
    await writeFile(path, `${JSON.stringify(item('u', 'x'))}\n`);
    const error = await localError(newStore().load('nohead'), LocalErrorCode.ProtocolViolation);
    expect(error.message).toContain(`invalid thread header at line 1 of ${path}`);

    await writeFile(path, '');
    expect((await localError(newStore().load('nohead'), LocalErrorCode.ProtocolViolation)).message).toContain('the file is empty');
    // An append cannot make a headerless file look valid.
    await localError(newStore().append('nohead', item('u', 'x')), LocalErrorCode.ProtocolViolation);
    expect(await readFile(path, 'utf8')).toBe('');
  });

  it('skips records of an unknown type with a warning', async () => {
    await writeThreadFile(
      'future',
      [JSON.stringify(item('u', 'one')), JSON.stringify({ type: 'compaction', at: AT, summary: 'later' }), JSON.stringify(item('u', 'two')), ''].join('\n'),
    );
    const loaded = await newStore().load('future');
    expect(itemTexts(loaded)).toEqual(['one', 'two']);
    expect(loaded?.warnings).toEqual([expect.stringContaining('unknown type "compaction" at line 3')]);
  });

  it('rejects invalid thread ids before touching the filesystem', async () => {
    const store = newStore();
    for (const id of ['../x', 'a/b', '', 'x'.repeat(129), 'with space']) {
      await localError(store.load(id), LocalErrorCode.InvalidArgument);
      await localError(store.create(header(id)), LocalErrorCode.InvalidArgument);
      await localError(store.append(id, item('u', 'x')), LocalErrorCode.InvalidArgument);
    }
    expect(await readdir(tmp)).toEqual([]);
  });

  it('rejects a duplicate create and leaves the first file alone', async () => {
    const store = newStore();
    await store.create(header('dup'));
    await store.append('dup', item('u', 'first'));
    const error = await localError(newStore().create(header('dup')), LocalErrorCode.InvalidArgument);
    expect(error.message).toContain('already exists');
    await localError(store.create(header('dup')), LocalErrorCode.InvalidArgument);
    expect(itemTexts(await store.load('dup'))).toEqual(['first']);
  });

  it('rejects an append to a thread that was never created', async () => {
    await localError(newStore().append('ghost', item('u', 'x')), LocalErrorCode.NotFound);
  });

  it('rejects a record that does not validate, as a programming error', async () => {
    const store = newStore();
    await store.create(header('v'));
    const wrong: unknown = { type: 'turn_completed', turnId: 'u', status: 'done', lastAgentMessage: null };
    // @ts-expect-error -- deliberately invalid, to check the runtime validation
    const error = await localError(store.append('v', wrong), LocalErrorCode.InvalidArgument);
    expect(error.message).toContain('status');
    expect((await store.load('v'))?.records).toEqual([]);
  });

  it('bounds one record at 16 MiB and keeps the file valid', async () => {
    const store = newStore();
    await store.create(header('big'));
    const error = await localError(store.append('big', item('u', 'x'.repeat(MAX_THREAD_RECORD_BYTES))), LocalErrorCode.LimitExceeded);
    expect(error.message).toContain('16 MiB');
    await store.append('big', item('u', 'small'));
    expect(itemTexts(await store.load('big'))).toEqual(['small']);
  });

  it('lists threads with their sticky environments and last turn status, and a corrupt file with an error', async () => {
    const store = newStore();
    await store.create(header('done'));
    await store.append('done', { type: 'turn_started', turnId: 'u1', prompt: '  the   first\nprompt ', environments: [] });
    await store.append('done', item('u1', 'x'));
    await store.append('done', { type: 'turn_completed', turnId: 'u1', status: 'failed', lastAgentMessage: null, error: 'boom' });
    await store.append('done', { type: 'turn_started', turnId: 'u2', prompt: 'a later prompt', environments: [] });
    await store.append('done', { type: 'turn_completed', turnId: 'u2', status: 'failed', lastAgentMessage: null, error: 'boom' });
    await store.append('done', { type: 'environments_changed', environments: [{ id: 'remote', cwd: '/srv' }] });
    await store.create(header('fresh'));
    await store.create(header('running'));
    await store.append('running', { type: 'turn_started', turnId: 'u1', prompt: 'p', environments: [] });
    await writeFile(join(dir, 'broken.jsonl'), 'not json\n');
    await writeFile(join(dir, 'notes.txt'), 'ignored');
    await writeFile(join(dir, 'bad name.jsonl'), 'ignored');

    const byId = async (): Promise<Map<string, unknown>> => new Map((await store.list({ limit: 1000 })).summaries.map((summary) => [summary.threadId, summary]));
    let summaries = await byId();
    expect([...summaries.keys()].sort()).toEqual(['broken', 'done', 'fresh', 'running']);
    expect(summaries.get('done')).toEqual({
      threadId: 'done',
      createdAt: AT,
      updatedAt: expect.any(String),
      environments: [{ id: 'remote', cwd: '/srv' }],
      lastStatus: 'failed',
      lastTurnId: 'u2',
      preview: 'the first prompt',
    });
    expect(summaries.get('fresh')).toEqual({ threadId: 'fresh', createdAt: AT, updatedAt: expect.any(String), environments: [{ id: 'local', cwd: '/work' }] });
    expect(summaries.get('running')).toMatchObject({ lastStatus: 'incomplete', lastTurnId: 'u1' });
    expect(summaries.get('broken')).toEqual({ threadId: 'broken', updatedAt: expect.any(String), error: expect.stringContaining('line 1') });

    // A later listing sees what was appended since.
    await store.append('running', { type: 'turn_completed', turnId: 'u1', status: 'interrupted', lastAgentMessage: null });
    await store.append('fresh', { type: 'environments_changed', environments: [] });
    summaries = await byId();
    expect(summaries.get('running')).toMatchObject({ lastStatus: 'interrupted' });
    expect(summaries.get('fresh')).toMatchObject({ environments: [] });
    // Damage found in the part read since the last listing is reported with its line number.
    await appendFile(join(dir, 'done.jsonl'), 'garbage\n');
    summaries = await byId();
    expect(summaries.get('done')).toEqual({ threadId: 'done', updatedAt: expect.any(String), error: expect.stringContaining('line 8 of') });
    expect(await newStore({ dir: join(tmp, 'nowhere') }).list({ limit: 1000 })).toEqual({ summaries: [], total: 0, next: undefined });
  });

  it('closes the least recently used handles beyond maxOpenFiles without losing order', async () => {
    const store = newStore({ maxOpenFiles: 2 });
    const ids = ['h0', 'h1', 'h2', 'h3', 'h4'];
    await Promise.all(ids.map((id) => store.create(header(id))));
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 20; i += 1) for (const id of ids) writes.push(store.append(id, item('u', `${id}-${i}`)));
    await Promise.all(writes);
    for (const id of ids) expect(itemTexts(await store.load(id))).toEqual(Array.from({ length: 20 }, (_, i) => `${id}-${i}`));
  });

  it('sized by openThreadFilesFor, keeps the file of every running turn open while they append in turn', async () => {
    // More running turns than the default bound: with too few handles each round of appends would
    // close and reopen files, and fewer than all of them would be open at the end of a round.
    const running = DEFAULT_MAX_OPEN_THREAD_FILES + 16;
    const store = newStore({ maxOpenFiles: openThreadFilesFor(running) });
    const ids = Array.from({ length: running }, (_, i) => `run${i}`);
    await Promise.all(ids.map((id) => store.create(header(id))));
    for (let round = 0; round < 2; round += 1) await Promise.all(ids.map((id) => store.append(id, item('u', `${id}-${round}`))));
    const open = new Set<string>();
    for (const fd of await readdir('/proc/self/fd')) {
      const target = await readlink(join('/proc/self/fd', fd)).catch(() => '');
      if (target.startsWith(`${dir}/run`)) open.add(target);
    }
    expect(open.size).toBe(running);
  });

  it('closes idempotently, finishing pending appends, and refuses writes afterwards', async () => {
    const store = newStore();
    await store.create(header('c'));
    const pending = store.append('c', item('u', 'in flight'));
    await Promise.all([store.close(), store.close()]);
    await pending;
    await localError(store.append('c', item('u', 'late')), LocalErrorCode.ConnectionClosed);
    expect(itemTexts(await store.load('c'))).toEqual(['in flight']);
  });

  it('archives a thread: the file moves to archived/ after its pending appends, listings and loads no longer see it, and a second archive of the id keeps both', async () => {
    const store = newStore();
    await store.create(header('arc'));
    const pending = store.append('arc', item('u', 'last words'));
    const to = await store.archive('arc');
    await pending;
    expect(to).toBe(join(dir, 'archived', 'arc.jsonl'));
    expect(await readFile(to, 'utf8')).toContain('last words');
    expect(await store.load('arc')).toBeUndefined();
    expect((await store.list({ limit: 1000 })).summaries.map((summary) => summary.threadId)).not.toContain('arc');
    expect(store.archivedPath('arc')).toBe(to);

    await store.create(header('arc'));
    const second = await store.archive('arc');
    expect(second).toMatch(/archived\/arc-.+\.jsonl$/);
    expect((await readdir(join(dir, 'archived'))).sort()).toHaveLength(2);
    await localError(store.archive('arc'), LocalErrorCode.NotFound);
  });
});
