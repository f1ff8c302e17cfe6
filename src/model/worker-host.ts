/**
 * The worker thread's side of the model worker: runs the requests the main thread posts through
 * ordinary {@link ModelClient}s (one per distinct settings, sharing one keep-alive exchange), so the
 * HTTP exchange, the stream's decoding and its validation cost the worker's core, not the main
 * thread's. Posts back joined text deltas, retry notices, and the response or the error.
 */
import type { MessagePort } from 'node:worker_threads';
import { z } from 'zod';
import { ModelClient } from './client.js';
import type { HttpExchange } from './http-exchange.js';
import { ModelClientSettingsSchema, readToWorker, toWireError, type FromWorker, type ModelClientSettings, type RespondMessage } from './worker-protocol.js';

/** Clients kept for reuse, by settings; the least recently used goes first beyond this. */
export const MAX_WORKER_CLIENTS = 64;

/** Options of {@link serveModelRequests}. */
export interface ModelWorkerHostOptions {
  /** The exchange every client sends with (one keep-alive pool for the thread). */
  http: HttpExchange;
  /** The clients' `User-Agent`. @default the model client's default */
  userAgent?: string;
}

/** Serves the requests arriving on `port` until it closes. */
export function serveModelRequests(port: MessagePort, options: ModelWorkerHostOptions): void {
  const clients = new Map<string, ModelClient>();
  const running = new Map<number, AbortController>();
  const post = (message: FromWorker): void => port.postMessage(message);

  /**
   * The client for a request's settings, which are validated here, when a client is built from
   * them: the same settings again find that client by their JSON (see `readToWorker`).
   */
  const clientFor = (raw: Record<string, unknown>): ModelClient => {
    const key = JSON.stringify(raw);
    let client = clients.get(key);
    if (client === undefined) {
      const parsed = ModelClientSettingsSchema.safeParse(raw);
      // Only the main thread posts here; settings it cannot have sent are a bug worth a loud end.
      if (!parsed.success) throw new Error(`model worker: unexpected settings: ${z.prettifyError(parsed.error)}`);
      const settings: ModelClientSettings = parsed.data;
      client = new ModelClient({ ...settings, apiKey: settings.apiKey, http: options.http, ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }) });
      if (clients.size >= MAX_WORKER_CLIENTS) {
        const oldest = clients.keys().next();
        if (oldest.done !== true) clients.delete(oldest.value);
      }
    } else {
      clients.delete(key);
    }
    clients.set(key, client);
    return client;
  };

  const respond = async (message: RespondMessage, client: ModelClient): Promise<void> => {
    const { id } = message;
    const controller = new AbortController();
    running.set(id, controller);
    let text = '';
    const flush = (): void => {
      if (text.length === 0) return;
      post({ type: 'delta', id, text });
      text = '';
    };
    try {
      const response = await client.respondJson(message.body, message.summary, {
        signal: controller.signal,
        ...(message.textDeltas
          ? {
              // Deltas of one network chunk arrive in one synchronous run: join them into one message.
              onTextDelta: (delta: string) => {
                if (text.length === 0) queueMicrotask(flush);
                text += delta;
              },
            }
          : {}),
        ...(message.retries
          ? {
              onRetry: (attempt: number, error: Error, delayMs: number) => {
                flush();
                post({ type: 'retry', id, attempt, delayMs, error: toWireError(error) });
              },
            }
          : {}),
      });
      flush();
      if (!controller.signal.aborted) post({ type: 'done', id, response });
    } catch (error) {
      flush();
      // The main thread already settled an aborted request with its signal's reason.
      if (!controller.signal.aborted) post({ type: 'failed', id, error: toWireError(error) });
    } finally {
      running.delete(id);
    }
  };

  port.on('message', (data: unknown) => {
    const read = readToWorker(data);
    // Only the main thread posts here; a message it cannot have sent is a bug worth a loud end.
    if (!read.ok) throw new Error(`model worker: unexpected message: ${read.error}`);
    const { message } = read;
    if (message.type === 'ping') {
      post({ type: 'pong' });
      return;
    }
    if (message.type === 'abort') {
      running.get(message.id)?.abort();
      return;
    }
    // Settles by posting `done` or `failed`; it does not reject.
    void respond(message, clientFor(message.settings));
  });
  post({ type: 'ready' });
}
