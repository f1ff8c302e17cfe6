/**
 * The model client on a worker thread. At many concurrent turns the model's HTTP exchanges, the
 * decoding of their event streams and the validation of their events held about a quarter of the
 * main thread; {@link ModelWorker} moves them to one worker thread (started on the first request)
 * that owns every model connection, and {@link WorkerModelClient} is the agent's `ModelPort` over
 * it. The request body is still built on the main thread, where the history's item JSON is kept;
 * the worker posts back the validated response, so the main thread only clones small objects.
 *
 * Same contract as `ModelClient.respond`: the same error classes with the same fields, retries by
 * the same policy (in the worker), text deltas in order, and an abort that settles at once with
 * the signal's reason (the worker is told to drop the request). A worker that dies fails its
 * requests with a `LocalError` (`UNAVAILABLE`) saying so; the next request starts a new worker.
 */
import { Worker } from 'node:worker_threads';
import { abortReason } from '../util/abort.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import { summarizeRequest, type ModelRequest, type RespondOptions } from './client.js';
import { requestBodyJson } from './request-body.js';
import type { ModelResponse } from './response-fold.js';
import { fromWireError, readFromWorker, type FromWorker, type ModelClientSettings, type ToWorker } from './worker-protocol.js';

/** Requests in flight at once, by default; more is a `LIMIT_EXCEEDED` error, not a queue. */
export const DEFAULT_MAX_WORKER_REQUESTS = 4_096;

/**
 * A worker with requests running that answers nothing, not even a ping, for this long is stuck
 * (its event loop held): it is ended and its requests fail. Far above any pause of a live thread
 * on a busy machine; the stream's own idle deadline (in the worker) needs the thread to run.
 */
export const DEFAULT_WORKER_STALL_MS = 30_000;

/** How long a new worker may take to load its script and say it serves (`ready`) while requests wait. */
export const DEFAULT_WORKER_START_MS = 30_000;

/** Options of {@link ModelWorker}. */
export interface ModelWorkerOptions {
  /** The worker's script (the bundle's `model-worker.cjs`), which serves requests with `serveModelRequests`. */
  script: URL | string;
  /** Handed to the script as `workerData` (e.g. the environment its network settings come from). @default undefined */
  workerData?: unknown;
  /** @default {@link DEFAULT_MAX_WORKER_REQUESTS} */
  maxRequests?: number;
  /** @default {@link DEFAULT_WORKER_STALL_MS} */
  stallMs?: number;
  /** @default {@link DEFAULT_WORKER_START_MS} */
  startMs?: number;
}

/** One request waiting for the worker. */
interface Pending {
  resolve: (response: ModelResponse) => void;
  reject: (error: Error) => void;
  options: RespondOptions;
  /** Stops listening to the caller's signal. */
  unlink: () => void;
}

/** The worker thread that runs model requests; shared by every {@link WorkerModelClient} of a server. */
export class ModelWorker {
  readonly #options: ModelWorkerOptions;
  readonly #maxRequests: number;
  #worker: Worker | undefined;
  /** Why the current worker is failing, from its `error` event, for the message its requests get. */
  #failure: string | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;
  readonly #stallMs: number;
  readonly #startMs: number;
  /** Whether the current worker said it serves; until then its silence is its start. */
  #ready = false;
  /** When the worker was last heard from (any message), while requests run. */
  #lastHeard = 0;
  /** Pings the worker while requests run, see {@link DEFAULT_WORKER_STALL_MS}. */
  #watchdog: NodeJS.Timeout | undefined;

  constructor(options: ModelWorkerOptions) {
    this.#options = options;
    this.#maxRequests = options.maxRequests ?? DEFAULT_MAX_WORKER_REQUESTS;
    this.#stallMs = options.stallMs ?? DEFAULT_WORKER_STALL_MS;
    this.#startMs = options.startMs ?? DEFAULT_WORKER_START_MS;
  }

  /** Runs one request in the worker; settles as `ModelClient.respond` does. */
  respond(settings: ModelClientSettings, request: ModelRequest, options: RespondOptions): Promise<ModelResponse> {
    const { signal } = options;
    if (signal.aborted) return Promise.reject(abortReason(signal));
    if (this.#closed) return Promise.reject(new LocalError(LocalErrorCode.ConnectionClosed, 'the model worker is closed'));
    if (this.#pending.size >= this.#maxRequests) {
      return Promise.reject(new LocalError(LocalErrorCode.LimitExceeded, `more than ${this.#maxRequests} model requests at once`));
    }
    let body: string;
    try {
      body = requestBodyJson(request);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(errorMessage(error)));
    }
    const worker = this.#started();
    const id = this.#nextId++;
    return new Promise<ModelResponse>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.#settle(id)) return;
        reject(abortReason(signal));
        // The worker may be gone already; there is nothing left to stop then.
        if (this.#worker === worker) worker.postMessage({ type: 'abort', id } satisfies ToWorker);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, { resolve, reject, options, unlink: () => signal.removeEventListener('abort', onAbort) });
      if (this.#pending.size === 1) this.#busy(worker);
      const message: ToWorker = {
        type: 'respond',
        id,
        settings,
        body,
        summary: summarizeRequest(request),
        textDeltas: options.onTextDelta !== undefined,
        retries: options.onRetry !== undefined,
      };
      worker.postMessage(message);
    });
  }

  /** Ends the worker; requests still running fail with `CONNECTION_CLOSED`. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    if (worker === undefined) return;
    this.#failAll(new LocalError(LocalErrorCode.ConnectionClosed, 'the model worker was closed while the request ran'));
    await worker.terminate();
  }

  #started(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(this.#options.script, { workerData: this.#options.workerData, stdout: true });
    // Stdout belongs to the protocol: whatever the worker prints there is dropped.
    worker.stdout.resume();
    // Idle, it must not keep the process alive; it is ref'd while requests wait on it.
    worker.unref();
    this.#worker = worker;
    this.#failure = undefined;
    this.#ready = false;
    worker.on('message', (data: unknown) => this.#onMessage(data));
    worker.on('error', (error: unknown) => {
      this.#failure ??= describeFailure(error);
    });
    worker.on('messageerror', (error: unknown) => {
      this.#failure ??= `a message could not be read: ${describeFailure(error)}`;
      void worker.terminate();
    });
    worker.once('exit', (code) => {
      if (this.#worker === worker) this.#worker = undefined;
      const why = this.#failure ?? `exit code ${code}`;
      this.#failAll(new LocalError(LocalErrorCode.Unavailable, `the model worker thread stopped (${why}) while the request ran; the next request starts a new one`));
    });
    return worker;
  }

  /** Requests run: the worker keeps the process alive and is watched. */
  #busy(worker: Worker): void {
    worker.ref();
    this.#lastHeard = performance.now();
    clearInterval(this.#watchdog);
    this.#watchdog = setInterval(
      () => {
        if (this.#worker !== worker) return;
        const limit = this.#ready ? this.#stallMs : this.#startMs;
        if (performance.now() - this.#lastHeard < limit) {
          if (this.#ready) worker.postMessage({ type: 'ping' } satisfies ToWorker);
          return;
        }
        this.#failure ??= this.#ready ? `it answered nothing for ${this.#stallMs} ms` : `it did not start within ${this.#startMs} ms`;
        void worker.terminate();
      },
      Math.min(this.#stallMs, this.#startMs) / 3,
    );
    this.#watchdog.unref();
  }

  #idle(): void {
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    this.#worker?.unref();
  }

  #onMessage(data: unknown): void {
    this.#lastHeard = performance.now();
    const read = readFromWorker(data);
    if (!read.ok) {
      // Only our worker posts here: a message it cannot have sent means it is broken; start afresh.
      this.#failure ??= `it sent an unexpected message: ${read.error}`;
      void this.#worker?.terminate();
      return;
    }
    const message: FromWorker = read.message;
    if (message.type === 'ready') this.#ready = true;
    if (message.type === 'pong' || message.type === 'ready') return;
    const pending = this.#pending.get(message.id);
    // A request settled here already (aborted) may still report; that is dropped.
    if (pending === undefined) return;
    switch (message.type) {
      case 'delta':
        this.#callBack(message.id, pending, () => pending.options.onTextDelta?.(message.text));
        return;
      case 'retry':
        this.#callBack(message.id, pending, () => pending.options.onRetry?.(message.attempt, fromWireError(message.error), message.delayMs));
        return;
      case 'done':
        this.#settle(message.id);
        pending.resolve(message.response);
        return;
      case 'failed':
        this.#settle(message.id);
        pending.reject(fromWireError(message.error));
        return;
    }
  }

  /** Runs a caller's callback; one that throws ends its request with that error, as in `ModelClient`. */
  #callBack(id: number, pending: Pending, callback: () => void): void {
    try {
      callback();
    } catch (error) {
      if (!this.#settle(id)) return;
      pending.reject(error instanceof Error ? error : new Error(errorMessage(error)));
      this.#worker?.postMessage({ type: 'abort', id } satisfies ToWorker);
    }
  }

  /** Forgets request `id`; false when it was settled already. */
  #settle(id: number): boolean {
    const pending = this.#pending.get(id);
    if (pending === undefined) return false;
    this.#pending.delete(id);
    pending.unlink();
    if (this.#pending.size === 0) this.#idle();
    return true;
  }

  #failAll(error: Error): void {
    for (const [id, pending] of [...this.#pending]) {
      this.#settle(id);
      pending.reject(error);
    }
  }
}

/** A model client whose requests run on a {@link ModelWorker}; the turn loop's `ModelPort`. */
export class WorkerModelClient {
  readonly #worker: ModelWorker;
  readonly #settings: ModelClientSettings;

  constructor(worker: ModelWorker, settings: ModelClientSettings) {
    this.#worker = worker;
    this.#settings = settings;
  }

  /** As `ModelClient.respond`, see {@link ModelWorker}. */
  respond(request: ModelRequest, options: RespondOptions): Promise<ModelResponse> {
    return this.#worker.respond(this.#settings, request, options);
  }
}

/**
 * A worker's error as text. Its errors are cloned into this thread's realm, which is not always the
 * realm of the caller's `Error` (e.g. under a test runner's VM context), so `message` is read as is.
 */
function describeFailure(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string') return error.message;
  return errorMessage(error);
}
