// The thread store seam (thread-store.ts): its contract, run against the JSON Lines store and the
// PostgreSQL store (a throwaway cluster, a fresh database per test), then what is particular to
// the files of the JSON Lines store. PostgreSQL specifics: pg-thread-store.test.ts.
import { jest } from '@jest/globals';
import { appendFile, mkdtemp, open, readFile, readdir, readlink, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { THREAD_RECORD_VERSION, type ThreadBodyRecord } from '../../../src/protocol/thread.js';
import { DEFAULT_MAX_OPEN_THREAD_FILES, JsonlThreadStore as ThreadStore, openThreadFilesFor, type ThreadStoreOptions } from '../../../src/session/jsonl-thread-store.js';
import {
  MAX_THREAD_RECORD_BYTES,
  compareListPositions,
  type LoadedThread,
  type NewThreadHeader,
  type ThreadStore as Store,
  type ThreadListQuery,
} from '../../../src/session/thread-store.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { createLogger, type Logger } from '../../../src/util/logger.js';
import { jsonlFactory, pgFactory, type StoreFactory } from '../../helpers/thread-stores.js';

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

const FACTORIES: StoreFactory[] = [jsonlFactory(Date.parse(AT)), pgFactory(Date.parse(AT))];

// The seam's contract (thread-store.ts), run against every implementation.
describe.each(FACTORIES)('ThreadStore contract: $name', (factory) => {
  beforeAll(() => factory.setUp());
  afterAll(() => factory.tearDown());
  beforeEach(() => factory.reset());
  const open = (options?: { logger?: Logger }): Store => factory.newStore(options);

  /** Every page of `query`, following `next`; fails on a repeated thread. */
  async function allPages(store: Store, query: Omit<ThreadListQuery, 'after'>): Promise<{ ids: string[]; totals: number[]; pages: number }> {
    const ids: string[] = [];
    const totals: number[] = [];
    let after: ThreadListQuery['after'];
    let pages = 0;
    for (;;) {
      const page = await store.list({ ...query, after });
      pages += 1;
      ids.push(...page.summaries.map((summary) => summary.threadId));
      totals.push(page.total);
      if (page.next === undefined) break;
      after = page.next;
    }
    expect(new Set(ids).size).toBe(ids.length);
    return { ids, totals, pages };
  }

  async function turn(store: Store, threadId: string, turnId: string, status: 'completed' | 'failed' = 'completed'): Promise<void> {
    await store.append(threadId, { type: 'turn_started', turnId, prompt: `prompt of ${threadId}`, environments: [] });
    await store.append(threadId, item(turnId, 'ok'));
    await store.append(threadId, { type: 'turn_completed', turnId, status, lastAgentMessage: 'ok' });
  }

  it('round-trips a thread: header, records in order, all record types, unknown item fields kept', async () => {
    const store = open();
    await store.create(header('t1'));
    await store.append('t1', { type: 'turn_started', turnId: 'u1', prompt: 'hello', environments: [{ id: 'local', cwd: '/work' }] });
    await store.append('t1', item('u1', 'hello \u0000 nul and ünïcödé'));
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
    expect(itemTexts(loaded)).toEqual(['hello \u0000 nul and ünïcödé']);
    // Items are kept whole, unknown fields included: they go back to the model as they were.
    expect(loaded?.records[2]).toMatchObject({ item: { type: 'function_call', call_id: 'c1', extra: { kept: true } } });
    expect(loaded?.records[3]).toEqual({ type: 'turn_completed', at: AT, turnId: 'u1', status: 'completed', lastAgentMessage: null });
  });

  it('writes an item given as JSON already (itemJson) as that item, and still checks the record around it', async () => {
    const store = open();
    await store.create(header('t1'));
    const call = { type: 'function_call', call_id: 'c1', name: 'exec_command', arguments: '{"cmd":"true"}' };
    await store.append('t1', { type: 'item', turnId: 'u1', item: call }, { itemJson: JSON.stringify(call) });
    const loaded = await store.load('t1');
    expect(loaded?.records).toEqual([{ type: 'item', at: AT, turnId: 'u1', item: call }]);
    await expect(store.append('t1', { type: 'item', turnId: '', item: call }, { itemJson: JSON.stringify(call) })).rejects.toMatchObject({
      code: LocalErrorCode.InvalidArgument,
    });
    await expect(store.append('t1', { type: 'item', at: 'yesterday', turnId: 'u1', item: call }, { itemJson: JSON.stringify(call) })).rejects.toMatchObject({
      code: LocalErrorCode.InvalidArgument,
    });
  });

  it('returns undefined for a thread that does not exist', async () => {
    const store = open();
    expect(await store.load('missing')).toBeUndefined();
    expect(await store.stamp('missing')).toBeUndefined();
    expect(await store.summary('missing')).toBeUndefined();
  });

  it('keeps the call order of concurrent appends per thread, across threads', async () => {
    const store = open();
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
    const store = open();
    const pending = [store.create(header('quick')), store.append('quick', item('u', 'one')), store.append('quick', item('u', 'two'))];
    await Promise.all(pending);
    expect(itemTexts(await store.load('quick'))).toEqual(['one', 'two']);
  });

  it('writes appends made at once together, but never past a load issued between them', async () => {
    const store = open();
    await store.create(header('batch'));
    const first = [store.append('batch', item('u', 'one')), store.append('batch', item('u', 'two'))];
    const loading = store.load('batch');
    const later = store.append('batch', item('u', 'three'));
    await Promise.all([...first, later]);
    expect(itemTexts(await loading)).toEqual(['one', 'two']);
    expect(itemTexts(await store.load('batch'))).toEqual(['one', 'two', 'three']);
  });

  it('rejects every append of a write that fails', async () => {
    const store = open();
    const results = await Promise.allSettled([store.append('ghost', item('u', 'x')), store.append('ghost', item('u', 'y'))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: LocalErrorCode.NotFound });
  });

  it('writes a deferred append with the next append or read, in call order; alone, within its deadline; at close', async () => {
    const store = open();
    await store.create(header('later'));
    const carried = store.append('later', item('u', 'deferred'), { defer: true });
    await Promise.all([carried, store.append('later', item('u', 'carrier'))]);
    // Read after a deferred append: the read comes after it.
    const read = store.append('later', item('u', 'deferred, then read'), { defer: true });
    expect(itemTexts(await store.load('later'))).toEqual(['deferred', 'carrier', 'deferred, then read']);
    await read;
    // Nothing follows: written by itself once its deadline passes.
    await store.append('later', item('u', 'alone'), { defer: true });
    const closing = store.append('later', item('u', 'at close'), { defer: true });
    await store.close();
    await closing;
    expect(itemTexts(await open().load('later'))).toEqual(['deferred', 'carrier', 'deferred, then read', 'alone', 'at close']);
  });

  it('rejects a deferred append with the append that carried it when their write fails', async () => {
    const store = open();
    const results = await Promise.allSettled([store.append('ghost', item('u', 'x'), { defer: true }), store.append('ghost', item('u', 'y'))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ code: LocalErrorCode.NotFound });
  });

  it('loads in a new store what the previous one wrote (a restart)', async () => {
    const first = open();
    await first.create(header('r1'));
    await first.append('r1', item('u1', 'before restart'));
    await first.close();

    const second = open();
    const loaded = await second.load('r1');
    expect(loaded?.header.threadId).toBe('r1');
    expect(itemTexts(loaded)).toEqual(['before restart']);
    await second.append('r1', item('u2', 'after restart'));
    expect(itemTexts(await open().load('r1'))).toEqual(['before restart', 'after restart']);
  });

  it('keeps and skips records of kinds it does not know (a newer version wrote them), with one warning per thread', async () => {
    const lines: string[] = [];
    const store = open({ logger: createLogger({ write: (line) => lines.push(line), level: 'warn' }) });
    await store.create(header('future'));
    await store.append('future', item('u', 'one'));
    await factory.storeRaw('future', JSON.stringify({ type: 'compaction', at: AT, summary: 'later' }));
    await factory.storeRaw('future', JSON.stringify({ type: 'review', at: AT, verdict: 'ok' }));
    await store.append('future', item('u', 'two'));
    await factory.storeRaw('future', JSON.stringify({ type: 'compaction', at: AT, summary: 'again' }));
    const loaded = await store.load('future');
    expect(itemTexts(loaded)).toEqual(['one', 'two']);
    expect(loaded?.warnings).toHaveLength(1);
    expect(loaded?.warnings[0]).toMatch(/^skipped 3 records of kinds this version does not know in .*: "compaction" at (line|record) \d+, (line|record) \d+; "review" at /);
    expect(loaded?.warnings[0]).toContain('they stay stored');

    // Loaded again (every status poll loads a thread), and written meanwhile: no second warning.
    await store.append('future', item('u', 'three'));
    expect(itemTexts(await store.load('future'))).toEqual(['one', 'two', 'three']);
    expect((await store.load('future'))?.warnings).toHaveLength(1);
    expect(lines.filter((line) => line.includes('does not know'))).toHaveLength(1);
    // Kept: the newer version still finds its records, in place.
    expect(await factory.storedTypes('future')).toEqual(['item', 'compaction', 'review', 'item', 'compaction', 'item']);
    // A kind not met before is worth a new warning.
    await factory.storeRaw('future', JSON.stringify({ type: 'handoff', at: AT }));
    expect((await store.load('future'))?.warnings[0]).toMatch(/^skipped 4 records .*"handoff" at/);
    expect(lines.filter((line) => line.includes('does not know'))).toHaveLength(2);
  });

  it('rejects a record of a known kind that does not validate, and one that is no record at all', async () => {
    const store = open();
    await store.create(header('invalid'));
    await factory.storeRaw('invalid', JSON.stringify({ type: 'turn_completed', at: AT, turnId: 'u', status: 'exploded', lastAgentMessage: null }));
    const error = await localError(open().load('invalid'), LocalErrorCode.ProtocolViolation);
    expect(error.message).toMatch(/thread .*invalid|invalid\.jsonl/);
    expect(error.message).toContain('status');
    await store.create(header('shapeless'));
    await factory.storeRaw('shapeless', JSON.stringify({ kind: 'item' }));
    expect((await localError(open().load('shapeless'), LocalErrorCode.ProtocolViolation)).message).toContain('not an object with a string "type"');
  });

  it('rejects invalid thread ids', async () => {
    const store = open();
    for (const id of ['../x', 'a/b', '', 'x'.repeat(129), 'with space']) {
      await localError(store.load(id), LocalErrorCode.InvalidArgument);
      await localError(store.create(header(id)), LocalErrorCode.InvalidArgument);
      await localError(store.append(id, item('u', 'x')), LocalErrorCode.InvalidArgument);
    }
  });

  it('rejects a duplicate create and leaves the first thread alone', async () => {
    const store = open();
    await store.create(header('dup'));
    await store.append('dup', item('u', 'first'));
    const error = await localError(open().create(header('dup')), LocalErrorCode.InvalidArgument);
    expect(error.message).toContain('already exists');
    await localError(store.create(header('dup')), LocalErrorCode.InvalidArgument);
    expect(itemTexts(await store.load('dup'))).toEqual(['first']);
  });

  it('rejects an append to a thread that was never created', async () => {
    await localError(open().append('ghost', item('u', 'x')), LocalErrorCode.NotFound);
  });

  it('rejects a record that does not validate, as a programming error', async () => {
    const store = open();
    await store.create(header('v'));
    const wrong: unknown = { type: 'turn_completed', turnId: 'u', status: 'done', lastAgentMessage: null };
    // @ts-expect-error -- deliberately invalid, to check the runtime validation
    const error = await localError(store.append('v', wrong), LocalErrorCode.InvalidArgument);
    expect(error.message).toContain('status');
    expect((await store.load('v'))?.records).toEqual([]);
  });

  it('bounds one record at 16 MiB and keeps the thread valid', async () => {
    const store = open();
    await store.create(header('big'));
    const error = await localError(store.append('big', item('u', 'x'.repeat(MAX_THREAD_RECORD_BYTES))), LocalErrorCode.LimitExceeded);
    expect(error.message).toContain('16 MiB');
    await store.append('big', item('u', 'small'));
    expect(itemTexts(await store.load('big'))).toEqual(['small']);
  });

  it('lists threads with their sticky environments, last turn status and preview, and what was appended since', async () => {
    const store = open();
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

    const byId = async (): Promise<Map<string, unknown>> => new Map((await store.list({ limit: 1000 })).summaries.map((summary) => [summary.threadId, summary]));
    let summaries = await byId();
    expect([...summaries.keys()].sort()).toEqual(['done', 'fresh', 'running']);
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
    expect(await store.summary('done')).toEqual(summaries.get('done'));

    await store.append('running', { type: 'turn_completed', turnId: 'u1', status: 'interrupted', lastAgentMessage: null });
    await store.append('fresh', { type: 'environments_changed', environments: [] });
    summaries = await byId();
    expect(summaries.get('running')).toMatchObject({ lastStatus: 'interrupted' });
    expect(summaries.get('fresh')).toMatchObject({ environments: [] });
  });

  it('pages in list order (most recently updated first, then by id) with a stable total, also with a filter and exclusions', async () => {
    const store = open();
    const ids = Array.from({ length: 23 }, (_, i) => `t${String(i).padStart(2, '0')}`);
    for (const id of ids) {
      await store.create(header(id));
      await turn(store, id, `${id}-1`, Number(id.slice(1)) % 5 === 0 ? 'failed' : 'completed');
    }
    const everything = (await store.list({ limit: 1000 })).summaries;
    expect(everything).toHaveLength(23);
    const order = everything.map((summary) => summary.threadId);
    for (let i = 1; i < everything.length; i += 1) expect(compareListPositions(everything[i - 1]!, everything[i]!)).toBe(-1);

    const paged = await allPages(store, { limit: 5 });
    expect(paged.ids).toEqual(order);
    expect(paged.pages).toBe(5);
    expect(new Set(paged.totals)).toEqual(new Set([23]));
    const failed = await allPages(store, { limit: 2, failed: true });
    expect(failed.ids).toEqual(order.filter((id) => Number(id.slice(1)) % 5 === 0));
    expect(new Set(failed.totals)).toEqual(new Set([5]));
    const exclude = new Set(['t00', 't01', 'nope']);
    const rest = await allPages(store, { limit: 7, failed: false, exclude });
    expect(rest.ids).toEqual(order.filter((id) => Number(id.slice(1)) % 5 !== 0 && !exclude.has(id)));
    expect(new Set(rest.totals)).toEqual(new Set([17]));
    expect(await store.list({ limit: 0 })).toEqual({ summaries: [], total: 23, next: undefined });

    // A write moves the thread to the front.
    await store.append('t22', item('t22-1', 'later'));
    expect((await store.list({ limit: 1 })).summaries[0]?.threadId).toBe('t22');
  });

  it('knows the threads whose last turn is open, also those of another store and after a restart', async () => {
    const mine = open();
    const other = open();
    await other.create(header('done'));
    await turn(other, 'done', 'd1');
    await other.create(header('busy'));
    expect(await mine.openTurns()).toEqual([]);
    const started = other.append('busy', { type: 'turn_started', turnId: 'b1', prompt: 'p', environments: [] });
    // The writer knows it at once, before the record is durable.
    expect(await other.openTurns()).toEqual(['busy']);
    await started;
    expect(await mine.openTurns()).toEqual(['busy']);
    await mine.close();
    expect(await open().openTurns()).toEqual(['busy']);
    await other.append('busy', { type: 'turn_completed', turnId: 'b1', status: 'completed', lastAgentMessage: null });
    expect(await open().openTurns()).toEqual([]);
  });

  it('changes the stamp on every write, by this store or another', async () => {
    const mine = open();
    const other = open();
    await mine.create(header('s'));
    const stamps = [await mine.stamp('s')];
    await other.append('s', item('u', 'x'));
    stamps.push(await mine.stamp('s'));
    const pending = mine.append('s', item('u', 'y'));
    // After this store's pending appends.
    stamps.push(await mine.stamp('s'));
    await pending;
    expect(await other.stamp('s')).toBe(stamps[2]);
    expect(stamps.every((stamp) => stamp !== undefined)).toBe(true);
    expect(new Set(stamps).size).toBe(3);
  });

  it('closes idempotently, finishing pending appends, and refuses writes afterwards', async () => {
    const store = open();
    await store.create(header('c'));
    const pending = store.append('c', item('u', 'in flight'));
    await Promise.all([store.close(), store.close()]);
    await pending;
    await localError(store.append('c', item('u', 'late')), LocalErrorCode.ConnectionClosed);
    expect(itemTexts(await open().load('c'))).toEqual(['in flight']);
  });

  it('archives a thread after its pending appends: lists, loads and stamps no longer see it, it says how to get it back, and the id can be used again', async () => {
    const store = open();
    await store.create(header('arc'));
    const pending = store.append('arc', item('u', 'last words'));
    const where = await store.archive('arc');
    await pending;
    expect(where).toEqual(expect.any(String));
    expect(await store.load('arc')).toBeUndefined();
    expect((await store.list({ limit: 1000 })).summaries.map((summary) => summary.threadId)).not.toContain('arc');
    expect(await store.summary('arc')).toBeUndefined();
    // Another store (another server process) learns it from the stamp, as the thread table asks.
    const other = open();
    expect(await other.stamp('arc')).toBeUndefined();
    expect(other.archivedHint('arc')).toMatch(/archived with thread\/close/);
    expect(other.archivedHint('never')).toBeUndefined();
    await localError(store.append('arc', item('u', 'x')), LocalErrorCode.NotFound);

    await store.create(header('arc'));
    expect((await store.load('arc'))?.records).toEqual([]);
    await store.archive('arc');
    await localError(store.archive('arc'), LocalErrorCode.NotFound);
  });
});

describe('JsonlThreadStore: the files', () => {
  it('writes a thread as one JSON line per record, in a 0600 file in a 0700 folder', async () => {
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

  it('reads a thread file in a newer format with one warning that says so, and the records it knows', async () => {
    const path = join(dir, 'v2.jsonl');
    const newer = { type: 'thread', at: AT, version: THREAD_RECORD_VERSION + 1, ...header('v2') };
    // The store makes its folder on its first create.
    await newStore().create(header('placeholder'));
    await writeFile(path, [JSON.stringify(newer), JSON.stringify(item('u', 'known')), JSON.stringify({ type: 'review', at: AT }), ''].join('\n'));
    const loaded = await newStore().load('v2');
    expect(itemTexts(loaded)).toEqual(['known']);
    expect(loaded?.warnings).toEqual([
      `skipped 1 record of kinds this version does not know in ${path}: "review" at line 3. A newer version wrote them (format version ${THREAD_RECORD_VERSION + 1}; this is ${THREAD_RECORD_VERSION}); they stay stored, and the thread is used without them`,
    ]);
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

  it('rejects invalid thread ids before touching the filesystem', async () => {
    const store = newStore();
    for (const id of ['../x', 'a/b', '', 'x'.repeat(129), 'with space']) {
      await localError(store.load(id), LocalErrorCode.InvalidArgument);
      await localError(store.create(header(id)), LocalErrorCode.InvalidArgument);
      await localError(store.append(id, item('u', 'x')), LocalErrorCode.InvalidArgument);
    }
    expect(await readdir(tmp)).toEqual([]);
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

  it('syncs only for durable writes and flushes: an unsynced write is in the file at once and synced by the next durable write, a flush, or right after flushBeforeActing', async () => {
    // Every fdatasync of the store goes through a FileHandle: count them.
    const probe = await open(join(tmp, 'probe'), 'w');
    const prototype = Object.getPrototypeOf(probe) as FileHandle;
    await probe.close();
    const datasync = jest.spyOn(prototype, 'datasync');
    try {
      const store = newStore({ maxOpenFiles: 1 });
      await store.create(header('s1'));
      const afterCreate = datasync.mock.calls.length;
      expect(afterCreate).toBeGreaterThanOrEqual(1);
      const reader = () => new ThreadStore({ dir }).load('s1').then(itemTexts);
      // Written without waiting for the disk, yet another store (process) reads it back.
      await store.append('s1', item('u', 'a'), { durable: false });
      expect(datasync.mock.calls.length).toBe(afterCreate);
      expect(await reader()).toEqual(['a']);
      // A durable write syncs once, for itself and what was left unsynced.
      await store.append('s1', item('u', 'b'), { durable: false });
      await store.append('s1', item('u', 'c'));
      expect(datasync.mock.calls.length).toBe(afterCreate + 1);
      // A flush syncs only what is unsynced.
      await store.flush('s1');
      expect(datasync.mock.calls.length).toBe(afterCreate + 1);
      await store.append('s1', item('u', 'd'), { durable: false });
      await store.flush('s1');
      expect(datasync.mock.calls.length).toBe(afterCreate + 2);
      // Ready to act on once written; the sync follows in the thread's queue, before its next write.
      await store.append('s1', item('u', 'e'), { durable: false });
      await store.flushBeforeActing('s1');
      expect(await reader()).toEqual(['a', 'b', 'c', 'd', 'e']);
      await store.load('s1');
      expect(datasync.mock.calls.length).toBe(afterCreate + 3);
      // An unsynced thread whose handle was closed (another thread took the one open slot) is still synced by its flush.
      await store.append('s1', item('u', 'f'), { durable: false });
      await store.create(header('s2'));
      await store.append('s2', item('u', 'x'));
      await store.load('s1');
      const beforeFlush = datasync.mock.calls.length;
      await store.flush('s1');
      expect(datasync.mock.calls.length).toBe(beforeFlush + 1);
      await store.flush('s1');
      expect(datasync.mock.calls.length).toBe(beforeFlush + 1);
      // Closing syncs what is left unsynced.
      await store.append('s2', item('u', 'y'), { durable: false });
      await store.close();
      expect(datasync.mock.calls.length).toBe(beforeFlush + 2);
      expect(await reader()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    } finally {
      datasync.mockRestore();
    }
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
