import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { deferred, type Deferred } from '../util/deferred.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { problemsOf } from './modern-envelope.js';
import { ModernError, ModernErrorCode } from './modern-error.js';
import { missingTasksCapability, type ModernTasks } from './modern-tasks.js';

/**
 * `subscriptions/listen` of the modern era (2026-07-28), for the one kind of notification this
 * server has: `notifications/tasks` of the tasks extension. A listen is a long-lived request: the
 * server acknowledges it (`notifications/subscriptions/acknowledged`, naming the task ids it agreed
 * to), then sends the full task, as `tasks/get` shows it, each time a listed task's status changes,
 * every message carrying the listen's id in `_meta`. It ends when the client cancels it
 * (`notifications/cancelled` on stdio, closing the SSE response over HTTP; nothing more is sent) or
 * when the connection or server closes (the listen is then answered with an empty result, if the
 * connection still can take it).
 */

/** Where every message of a subscription names it. */
export const META_SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';

/** Listens open at once on one connection (stdio) or one process (HTTP): each holds watchers of its tasks. */
export const MAX_LISTENS = 32;

/** Task ids one listen may name. */
export const MAX_LISTEN_TASK_IDS = 64;

/** Statuses after which a task no longer changes. */
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

const ListenParamsSchema = z.looseObject({
  // The other members of the filter (list changes, resource updates) name notifications this server never sends: they are left out of the acknowledgement.
  notifications: z.looseObject({ taskIds: z.array(z.string()).optional() }),
});

/** One open listen. */
interface Listen {
  id: RequestId;
  send: (message: JSONRPCMessage) => Promise<void>;
  /** Resolves with the listen's answer when the server ends it. */
  done: Deferred<Record<string, unknown>>;
  unwatch: Map<string, () => void>;
  /** The status last sent for each task: a change of anything else (its status message) is not a status change. */
  sent: Map<string, string>;
  /** Tasks whose read is queued: changes while one waits coalesce into it, so the queue holds at most one per task. */
  queued: Set<string>;
  /** Sends in order: a read that started later never overtakes an earlier one. */
  chain: Promise<void>;
}

/** The open listens of one modern era (see {@link ModernEra}). */
export class TaskListens {
  readonly #tasks: ModernTasks | undefined;
  readonly #logger: Logger;
  readonly #open = new Map<RequestId, Listen>();

  /** `tasks` serves the tasks extension; undefined: not offered, so no task ids are ever agreed. */
  constructor(tasks: ModernTasks | undefined, logger: Logger = silentLogger) {
    this.#tasks = tasks;
    this.#logger = logger;
  }

  /** Whether the listen `id` is open. */
  has(id: RequestId): boolean {
    return this.#open.has(id);
  }

  /**
   * Opens the listen `id` (`withTasks`: the request declared the tasks extension); resolves with
   * its answer once the server ends it ({@link end}, {@link close}). Refused with `-32021` when it
   * names task ids without the extension, and with a clear error past the limits.
   */
  async listen(id: RequestId, params: unknown, withTasks: boolean, send: (message: JSONRPCMessage) => Promise<void>): Promise<Record<string, unknown>> {
    const parsed = ListenParamsSchema.safeParse(params ?? {});
    if (!parsed.success) throw new ModernError(ModernErrorCode.InvalidParams, `invalid subscriptions/listen params: ${problemsOf(parsed.error)}`);
    const { taskIds } = parsed.data.notifications;
    if (taskIds !== undefined && !withTasks) throw missingTasksCapability('subscriptions/listen with notifications.taskIds');
    if (taskIds !== undefined && taskIds.length > MAX_LISTEN_TASK_IDS) {
      throw new ModernError(
        ModernErrorCode.InvalidParams,
        `subscriptions/listen: notifications.taskIds names ${taskIds.length} tasks, over the limit of ${MAX_LISTEN_TASK_IDS} per listen: split them over several listens`,
      );
    }
    if (this.#open.has(id)) throw new ModernError(ModernErrorCode.InvalidParams, `subscriptions/listen: a listen with id ${String(id)} is already open`);
    if (this.#open.size >= MAX_LISTENS) {
      throw new ModernError(
        ModernErrorCode.InternalError,
        `subscriptions/listen: ${MAX_LISTENS} listens are open already, the limit: cancel one first (notifications/cancelled, or close its stream over HTTP)`,
      );
    }
    const listen: Listen = { id, send, done: deferred(), unwatch: new Map(), sent: new Map(), queued: new Set(), chain: Promise.resolve() };
    this.#open.set(id, listen);
    const agreed: string[] = [];
    const tasks = this.#tasks;
    if (tasks !== undefined) {
      for (const taskId of new Set(taskIds ?? [])) {
        // Watching before reading: a change between the read and the watch would be missed.
        listen.unwatch.set(
          taskId,
          tasks.watch(taskId, () => this.#changed(listen, taskId)),
        );
        const observed = await tasks.observe(taskId).catch((error: unknown) => {
          this.#logger.debug('subscriptions/listen: a task could not be read', { task: taskId, error: errorMessage(error) });
          return undefined;
        });
        // Unknown ids, and tasks whose turn runs in another process (their changes are not seen here), are not agreed.
        if (observed?.seenHere === true) agreed.push(taskId);
        else this.#unwatch(listen, taskId);
      }
    }
    if (this.#open.get(id) !== listen) return listen.done.promise;
    await this.#send(listen, {
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      params: { _meta: { [META_SUBSCRIPTION_ID]: id }, notifications: taskIds === undefined || tasks === undefined ? {} : { taskIds: agreed } },
    });
    // The state now, once: a change between the client's last tasks/get and this listen is not lost.
    for (const taskId of agreed) this.#changed(listen, taskId);
    return listen.done.promise;
  }

  /** Ends the listen `id` (the client cancelled it): it stops watching, and is answered (the era drops the answer of a cancelled request). */
  end(id: RequestId): void {
    const listen = this.#open.get(id);
    if (listen === undefined) return;
    this.#open.delete(id);
    for (const unwatch of listen.unwatch.values()) unwatch();
    listen.unwatch.clear();
    listen.done.resolve({ resultType: 'complete', _meta: { [META_SUBSCRIPTION_ID]: id } });
  }

  /** The connection or server closes: every listen ends, answered where the connection can still take it. */
  close(): void {
    for (const id of [...this.#open.keys()]) this.end(id);
  }

  #changed(listen: Listen, taskId: string): void {
    if (listen.queued.has(taskId) || !listen.unwatch.has(taskId)) return;
    listen.queued.add(taskId);
    listen.chain = listen.chain.then(async () => {
      listen.queued.delete(taskId);
      if (this.#open.get(listen.id) !== listen || this.#tasks === undefined) return;
      const observed = await this.#tasks.observe(taskId).catch(() => undefined);
      // Gone (expired): nothing more will change.
      if (observed === undefined) {
        this.#unwatch(listen, taskId);
        return;
      }
      const { task } = observed;
      const status = typeof task.status === 'string' ? task.status : '';
      if (listen.sent.get(taskId) === status || this.#open.get(listen.id) !== listen) return;
      listen.sent.set(taskId, status);
      if (TERMINAL.has(status)) this.#unwatch(listen, taskId);
      await this.#send(listen, { jsonrpc: '2.0', method: 'notifications/tasks', params: { ...task, _meta: { [META_SUBSCRIPTION_ID]: listen.id } } });
    });
  }

  #unwatch(listen: Listen, taskId: string): void {
    listen.unwatch.get(taskId)?.();
    listen.unwatch.delete(taskId);
  }

  async #send(listen: Listen, message: JSONRPCMessage): Promise<void> {
    try {
      await listen.send(message);
    } catch (error) {
      this.#logger.debug('a subscription message was not sent', { id: listen.id, error: errorMessage(error) });
    }
  }
}

/** `message` with the subscription id `from` in its `_meta` replaced by `to` (a transport that gave the era ids of its own gives the client's back); other messages as they are. */
export function renameSubscription(message: JSONRPCMessage, from: RequestId, to: RequestId): JSONRPCMessage {
  const rename = (body: { _meta?: Record<string, unknown> } | undefined): { _meta: Record<string, unknown> } | undefined =>
    body?._meta?.[META_SUBSCRIPTION_ID] === from ? { _meta: { ...body._meta, [META_SUBSCRIPTION_ID]: to } } : undefined;
  if ('method' in message) {
    const renamed = rename(message.params);
    return renamed === undefined ? message : { ...message, params: { ...message.params, ...renamed } };
  }
  if ('result' in message) {
    const renamed = rename(message.result);
    return renamed === undefined ? message : { ...message, result: { ...message.result, ...renamed } };
  }
  return message;
}
