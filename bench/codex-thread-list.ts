/**
 * The reference of the `list` bench: the real Codex app-server (`codex app-server`, from the pinned
 * `@openai/codex`) answering `thread/list` over its stdio JSON-RPC, with as many stored threads as
 * ours. One thread is made by Codex itself against the fake model; the others are copies of its
 * rollout file under new ids, spread over past days as Codex files them.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { codexHomeForFakeModel } from '../test/helpers/codex-home.js';
import { CODEX } from '../test/helpers/process.js';

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** How long one app-server request may take before the bench gives up on it. */
const REQUEST_TIMEOUT_MS = 600_000;

/** A `codex app-server` over stdio: JSON-RPC without the "jsonrpc" field, one message per line. */
export class AppServer {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  readonly #notes: Record<string, unknown>[] = [];
  #nextId = 0;

  private constructor(codexHome: string) {
    this.#child = spawn(CODEX, ['app-server'], {
      env: { ...process.env, CODEX_HOME: codexHome, FAKE_MODEL_API_KEY: 'bench-key', RUST_LOG: 'error' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child.stderr.resume();
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        return;
      }
      if (!isRecord(message)) return;
      const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
      if (pending === undefined) {
        this.#notes.push(message);
        return;
      }
      this.#pending.delete(message.id as number);
      if (isRecord(message.error)) pending.reject(new Error(`app-server: ${JSON.stringify(message.error)}`));
      else pending.resolve(message.result);
    });
  }

  /** Starts one and initializes it. */
  static async start(codexHome: string): Promise<AppServer> {
    const server = new AppServer(codexHome);
    await server.request('initialize', { clientInfo: { name: 'bench', version: '0' }, capabilities: { experimentalApi: true } });
    server.#child.stdin.write(`${JSON.stringify({ method: 'initialized' })}\n`);
    return server;
  }

  request(method: string, params: unknown): Promise<unknown> {
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`app-server: no answer to ${method} in ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.#child.stdin.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }

  /** Resolves once a notification `method` arrived (polled: the bench owns the loop). */
  async waitForNote(method: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#notes.some((note) => note.method === method)) {
      if (Date.now() > deadline) throw new Error(`app-server: no ${method} in ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.stdin.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** The threads of a `thread/list` answer, and its next cursor. */
export function listedThreads(result: unknown): { ids: string[]; nextCursor: string | null } {
  if (!isRecord(result) || !Array.isArray(result.data)) throw new Error(`unexpected thread/list answer ${JSON.stringify(result).slice(0, 300)}`);
  const ids = result.data.map((thread: unknown) => (isRecord(thread) && typeof thread.id === 'string' ? thread.id : ''));
  return { ids, nextCursor: typeof result.nextCursor === 'string' ? result.nextCursor : null };
}

/** A UUIDv7 (what Codex's thread ids are) for time `ms`. */
function uuidv7(ms: number): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x70;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A CODEX_HOME with `count` stored threads: one made by Codex against the model at `modelUrl`,
 * the rest copies of its rollout, one a minute back in time.
 */
export async function codexHomeWithThreads(modelUrl: string, count: number): Promise<{ path: string; cleanup: () => Promise<void>; rolloutBytes: number }> {
  const home = await codexHomeForFakeModel(modelUrl);
  const server = await AppServer.start(home.path);
  let rollout: string;
  let templateId: string;
  try {
    const started = await server.request('thread/start', { cwd: home.path });
    const thread = isRecord(started) && isRecord(started.thread) ? started.thread : undefined;
    if (typeof thread?.id !== 'string') throw new Error(`unexpected thread/start answer ${JSON.stringify(started).slice(0, 300)}`);
    templateId = thread.id;
    await server.request('turn/start', { threadId: templateId, input: [{ type: 'text', text: 'fix the flaky test in the frontend module and check the build still passes' }] });
    await server.waitForNote('turn/completed', 60_000);
    const listed = await server.request('thread/list', { limit: 1 });
    const first = isRecord(listed) && Array.isArray(listed.data) ? listed.data[0] : undefined;
    if (!isRecord(first) || typeof first.path !== 'string') throw new Error(`no rollout path in ${JSON.stringify(listed).slice(0, 300)}`);
    rollout = first.path;
  } finally {
    await server.close();
  }
  const text = await readFile(rollout, 'utf8');
  const now = Date.now();
  const made = new Map<string, Promise<unknown>>();
  let next = 1;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count) {
        const at = new Date(now - 60_000 * next++);
        const id = uuidv7(at.getTime());
        const iso = at.toISOString();
        const day = join(home.path, 'sessions', iso.slice(0, 4), iso.slice(5, 7), iso.slice(8, 10));
        let ready = made.get(day);
        if (ready === undefined) {
          ready = mkdir(day, { recursive: true });
          made.set(day, ready);
        }
        await ready;
        await writeFile(join(day, `rollout-${iso.slice(0, 19).replaceAll(':', '-')}-${id}.jsonl`), text.replaceAll(templateId, id));
      }
    }),
  );
  return { ...home, rolloutBytes: Buffer.byteLength(text) };
}
