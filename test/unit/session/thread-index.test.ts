// The persistent summary index of the JSON Lines store (`jsonl-index.ts`, `jsonl-summaries.ts`):
// paging, what survives a restart, and how a torn, damaged, stale or missing index is found and
// repaired from the thread files, also when another store instance (another server process)
// writes the same folder. Real files in a temp folder; no timing.
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IndexFiles } from '../../../src/session/jsonl-index-files.js';
import { SummaryIndex } from '../../../src/session/jsonl-index.js';
import { JsonlThreadStore, type ThreadStoreOptions } from '../../../src/session/jsonl-thread-store.js';
import type { NewThreadHeader, ThreadListQuery, ThreadSummary } from '../../../src/session/thread-store.js';
import { createLogger, silentLogger } from '../../../src/util/logger.js';

const AT = '2025-01-02T03:04:05.000Z';

let tmp: string;
let dir: string;
const stores: JsonlThreadStore[] = [];

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'thread-index-'));
  dir = join(tmp, 'threads');
});

afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await rm(tmp, { recursive: true, force: true });
});

/** A store on the folder: each one stands for a server process (its own index in memory, log reader and watch). */
function newStore(options: Partial<ThreadStoreOptions> = {}): JsonlThreadStore {
  const store = new JsonlThreadStore({ dir, fsync: false, now: () => Date.parse(AT), ...options });
  stores.push(store);
  return store;
}

async function closeStore(store: JsonlThreadStore): Promise<void> {
  stores.splice(stores.indexOf(store), 1);
  await store.close();
}

function header(threadId: string): NewThreadHeader {
  return {
    threadId,
    createdAt: AT,
    config: { model: 'gpt-5-codex', modelProvider: 'openai', approvalPolicy: 'on-request', sandbox: 'workspace-write', cwd: '/work', configOverrides: {} },
    environments: [{ id: 'local', cwd: '/work' }],
  };
}

/** A thread with one finished turn. */
async function threadWithTurn(store: JsonlThreadStore, threadId: string, status: 'completed' | 'failed' = 'completed'): Promise<void> {
  await store.create(header(threadId));
  await store.append(threadId, { type: 'turn_started', turnId: `${threadId}-t1`, prompt: `prompt of ${threadId}`, environments: [] });
  await store.append(threadId, { type: 'item', turnId: `${threadId}-t1`, item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'ok' }] } });
  await store.append(threadId, { type: 'turn_completed', turnId: `${threadId}-t1`, status, lastAgentMessage: 'ok' });
}

/** Every page of `query`, following `next`; fails on a repeated thread. */
async function allPages(store: JsonlThreadStore, query: Omit<ThreadListQuery, 'after'>): Promise<{ ids: string[]; totals: number[]; pages: number }> {
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

async function listed(store: JsonlThreadStore): Promise<Map<string, ThreadSummary>> {
  return new Map((await store.list({ limit: 1000 })).summaries.map((summary) => [summary.threadId, summary]));
}

/** A line as another writer (an older server, a crashed one, a user) appends it, behind the index's back. */
async function appendBehind(threadId: string, record: Record<string, unknown>): Promise<void> {
  await appendFile(join(dir, `${threadId}.jsonl`), `${JSON.stringify({ at: AT, ...record })}\n`);
}

describe('the thread summary index', () => {
  it('pages in list order (most recently updated first, then by id) with a stable total, also with a filter and exclusions', async () => {
    const store = newStore();
    const ids = Array.from({ length: 23 }, (_, i) => `t${String(i).padStart(2, '0')}`);
    for (const id of ids) await threadWithTurn(store, id, Number(id.slice(1)) % 5 === 0 ? 'failed' : 'completed');
    const everything = (await store.list({ limit: 1000 })).summaries;
    expect(everything).toHaveLength(23);
    const order = everything.map((summary) => summary.threadId);
    for (let i = 1; i < everything.length; i += 1) {
      const [a, b] = [everything[i - 1]!, everything[i]!];
      expect(a.updatedAt > b.updatedAt || (a.updatedAt === b.updatedAt && a.threadId < b.threadId)).toBe(true);
    }

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
  });

  it('is kept on disk: a restarted store lists from it, with what changed in the previous run, without a rebuild', async () => {
    const first = newStore();
    await threadWithTurn(first, 'a');
    await first.list({ limit: 10 });
    // Written after the index was opened: through the log.
    await threadWithTurn(first, 'b', 'failed');
    await first.append('a', { type: 'environments_changed', environments: [{ id: 'remote', cwd: '/srv' }] });
    const before = await listed(first);
    await closeStore(first);
    expect((await readdir(join(dir, 'index'))).sort()).toEqual(['summaries', 'summaries.log']);

    const lines: string[] = [];
    const second = newStore({ logger: createLogger({ level: 'info', write: (line) => lines.push(line) }) });
    expect(await listed(second)).toEqual(before);
    expect(before.get('a')).toMatchObject({ environments: [{ id: 'remote', cwd: '/srv' }], lastStatus: 'completed', preview: 'prompt of a' });
    expect(before.get('b')).toMatchObject({ lastStatus: 'failed' });
    await second.reconcile();
    expect(lines.join('\n')).not.toMatch(/built the thread summary index|repaired/);
  });

  it('keeps previews beyond ASCII through a restart, in an index file of ASCII only', async () => {
    const first = newStore();
    await first.create(header('u'));
    await first.append('u', { type: 'turn_started', turnId: 'u1', prompt: 'café 🚀 naïve – 東京', environments: [] });
    await first.list({ limit: 10 });
    await closeStore(first);
    const second = newStore();
    expect((await second.list({ limit: 10 })).summaries).toEqual([expect.objectContaining({ threadId: 'u', preview: 'café 🚀 naïve – 東京' })]);
    await second.reconcile();
    await closeStore(second);
    // Compacted by a rebuild: the snapshot holds the preview, escaped.
    await rm(join(dir, 'index'), { recursive: true });
    const third = newStore();
    expect((await third.list({ limit: 10 })).summaries[0]).toMatchObject({ preview: 'café 🚀 naïve – 東京' });
    await closeStore(third);
    const snapshot = await readFile(join(dir, 'index', 'summaries'));
    expect(snapshot.every((byte) => byte < 0x80)).toBe(true);
    expect((await newStore().list({ limit: 10 })).summaries[0]).toMatchObject({ preview: 'café 🚀 naïve – 東京' });
  });

  it('is rebuilt from the thread files when it is missing or does not read back', async () => {
    const first = newStore();
    await threadWithTurn(first, 'a');
    await threadWithTurn(first, 'b');
    const before = await listed(first);
    await closeStore(first);

    await writeFile(join(dir, 'index', 'summaries'), '{"format":"codex-multienv thread summaries","version":1,"count":2,"log":{"ino":1,"offset":0}}\nnot an entry\n');
    const lines: string[] = [];
    const second = newStore({ logger: createLogger({ level: 'info', write: (line) => lines.push(line) }) });
    expect(await listed(second)).toEqual(before);
    expect(lines.join('\n')).toMatch(/does not read back; rebuilding it from the thread files/);
    await closeStore(second);
    // Rewritten whole: the next start reads it back.
    expect((await readFile(join(dir, 'index', 'summaries'), 'utf8')).split('\n')).toHaveLength(4);

    await rm(join(dir, 'index'), { recursive: true });
    expect(await listed(newStore())).toEqual(before);
  });

  it('skips a torn log record and finds the change it lost from the thread file', async () => {
    const first = newStore();
    await threadWithTurn(first, 'a');
    await first.list({ limit: 10 });
    await closeStore(first);
    // A process died in the middle of its log record, after writing the thread file.
    await appendFile(join(dir, 'index', 'summaries.log'), '+\t2025-01-0');
    await appendBehind('a', { type: 'turn_started', turnId: 'a-t2', prompt: 'second', environments: [] });

    const lines: string[] = [];
    const second = newStore({ logger: createLogger({ level: 'info', write: (line) => lines.push(line) }) });
    await threadWithTurn(second, 'b');
    await second.reconcile();
    const summaries = await listed(second);
    expect(summaries.get('a')).toMatchObject({ lastStatus: 'incomplete', lastTurnId: 'a-t2' });
    expect(summaries.get('b')).toMatchObject({ lastStatus: 'completed' });
    expect(lines.join('\n')).toMatch(/skipped damaged records of the thread summary index log/);
  });

  it('repairs a stale index: what was written behind its back while no store ran shows on the page at once, and in the order after the check', async () => {
    const first = newStore();
    for (const id of ['a', 'b', 'c']) await threadWithTurn(first, id);
    await first.list({ limit: 10 });
    await closeStore(first);
    // A crash between a thread write and its index record; a thread file moved in by hand; one removed.
    await appendBehind('a', { type: 'turn_started', turnId: 'a-t2', prompt: 'again', environments: [] });
    await appendBehind('a', { type: 'turn_completed', turnId: 'a-t2', status: 'failed', lastAgentMessage: null, error: 'boom' });
    await writeFile(join(dir, 'moved.jsonl'), `${JSON.stringify({ type: 'thread', version: 1, at: AT, ...header('moved') })}\n`);
    await rm(join(dir, 'c.jsonl'));

    const second = newStore();
    // The page shows no stale summary, even before the background check.
    const early = await listed(second);
    expect(early.get('a')).toMatchObject({ lastStatus: 'failed', lastTurnId: 'a-t2' });
    expect(early.has('c')).toBe(false);
    await second.reconcile();
    const page = await second.list({ limit: 10 });
    expect(page.summaries.map((summary) => summary.threadId).sort()).toEqual(['a', 'b', 'moved']);
    expect(page.total).toBe(3);
    expect((await second.list({ limit: 10, failed: true })).summaries.map((summary) => summary.threadId)).toEqual(['a']);
    await closeStore(second);
    // The repairs were written to the index: the next start has them before any check.
    const third = newStore();
    expect((await third.list({ limit: 10, failed: true })).total).toBe(1);
    expect((await third.list({ limit: 10 })).total).toBe(3);
  });

  it('shows what another process appends, creates and archives at its next listing (its log records, or the folder watch, whichever comes first)', async () => {
    const mine = newStore();
    const other = newStore();
    for (const id of ['a', 'b', 'c']) await threadWithTurn(other, id);
    expect((await mine.list({ limit: 10 })).total).toBe(3);
    await other.list({ limit: 10 });

    // The oldest thread gets a new turn in the other process: it moves to the front of a
    // one-thread page, which page checks alone would not do.
    const oldest = (await mine.list({ limit: 10 })).summaries.at(-1)!.threadId;
    await other.append(oldest, { type: 'turn_started', turnId: 'late', prompt: 'late', environments: [] });
    await other.append(oldest, { type: 'turn_completed', turnId: 'late', status: 'failed', lastAgentMessage: null, error: 'boom' });
    const front = await mine.list({ limit: 1 });
    expect(front.summaries).toEqual([expect.objectContaining({ threadId: oldest, lastStatus: 'failed', lastTurnId: 'late' })]);
    expect((await mine.list({ limit: 10, failed: true })).total).toBe(1);

    await threadWithTurn(other, 'd');
    await other.archive('b');
    const after = await mine.list({ limit: 10 });
    expect(after.summaries.map((summary) => summary.threadId).sort()).toEqual(['a', 'c', 'd']);
    expect(after.total).toBe(3);
  });

  it('knows the threads whose last turn is open, also those of another process and after a restart', async () => {
    const mine = newStore();
    const other = newStore();
    await threadWithTurn(other, 'done');
    await other.create(header('busy'));
    expect(await mine.openTurns()).toEqual([]);
    // Known as soon as the append is asked for, before the record is written: a client may be
    // told the turn runs before then.
    const started = other.append('busy', { type: 'turn_started', turnId: 'b1', prompt: 'p', environments: [] });
    expect(await mine.openTurns()).toEqual(['busy']);
    await started;
    expect(await mine.openTurns()).toEqual(['busy']);
    await closeStore(mine);
    expect(await newStore().openTurns()).toEqual(['busy']);
    await other.append('busy', { type: 'turn_completed', turnId: 'b1', status: 'completed', lastAgentMessage: null });
    expect(await newStore().openTurns()).toEqual([]);
  });

  it('follows the log across another process compacting the index', async () => {
    const mine = newStore();
    const other = newStore();
    await threadWithTurn(other, 'a');
    await mine.list({ limit: 10 });
    await other.list({ limit: 10 });
    await threadWithTurn(other, 'b');

    // A third process compacts: a new snapshot and a new, empty log.
    const third = new IndexFiles(dir, silentLogger);
    const loaded = await third.load();
    const index = new SummaryIndex(loaded.snapshot?.entries);
    for (const record of third.readLog().records) if (record.op === 'put') index.set(record.entry);
    await third.compact(index.entries());
    third.close();

    // Appended by the other process after the compaction: to the new log.
    await other.append('a', { type: 'turn_started', turnId: 'a-t2', prompt: 'p', environments: [] });
    await threadWithTurn(other, 'c');
    const page = await mine.list({ limit: 10 });
    expect(page.summaries.map((summary) => summary.threadId).sort()).toEqual(['a', 'b', 'c']);
    expect(page.summaries.find((summary) => summary.threadId === 'a')).toMatchObject({ lastStatus: 'incomplete', lastTurnId: 'a-t2' });
    await closeStore(mine);
    expect((await newStore().list({ limit: 10 })).total).toBe(3);
  });

  it('never lists or reads a file outside the folder that a damaged index entry names', async () => {
    const first = newStore();
    await threadWithTurn(first, 'a');
    await first.list({ limit: 10 });
    await closeStore(first);
    // A decoy thread file outside the threads folder, and an index entry naming it.
    await mkdir(join(tmp, 'outside'), { recursive: true });
    await writeFile(join(tmp, 'outside', 'x.jsonl'), `${JSON.stringify({ type: 'thread', version: 1, at: AT, ...header('x') })}\n`);
    const snapshot = await readFile(join(dir, 'index', 'summaries'), 'utf8');
    const [head = '', line = ''] = snapshot.split('\n');
    const forged = line.replace('\ta\t', '\t../outside/x\t').replace(/^[^\t]+/, '2999-01-01T00:00:00.000Z');
    await writeFile(join(dir, 'index', 'summaries'), `${head.replace('"count":1', '"count":2')}\n${forged}\n${line}\n`);

    const second = newStore();
    const page = await second.list({ limit: 10 });
    expect(page.summaries.map((summary) => summary.threadId)).toEqual(['a']);
    expect(page.total).toBe(1);
  });

  it('lists nothing and writes nothing for a folder that does not exist', async () => {
    const store = newStore({ dir: join(tmp, 'nowhere') });
    expect(await store.list({ limit: 10 })).toEqual({ summaries: [], total: 0, next: undefined });
    await store.reconcile();
    await closeStore(store);
    await expect(readdir(join(tmp, 'nowhere'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps listing when the index folder cannot be written, from the thread files', async () => {
    await mkdir(dir, { recursive: true });
    // A file where the index folder should be: nothing of the index can be written.
    await writeFile(join(dir, 'index'), 'in the way');
    const lines: string[] = [];
    const store = newStore({ logger: createLogger({ level: 'info', write: (line) => lines.push(line) }) });
    await threadWithTurn(store, 'a');
    expect((await store.list({ limit: 10 })).summaries).toEqual([expect.objectContaining({ threadId: 'a', lastStatus: 'completed' })]);
    await threadWithTurn(store, 'b', 'failed');
    expect((await store.list({ limit: 10, failed: true })).summaries.map((summary) => summary.threadId)).toEqual(['b']);
    expect(lines.join('\n')).toMatch(/cannot (update|write) the thread summary index/);
  });
});
