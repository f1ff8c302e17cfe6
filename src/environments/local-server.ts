import type { ExecServer, ExecServerOptions } from '../exec/server.js';
import { createBwrapProbe, type BwrapProbe } from '../exec/bwrap.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/**
 * The in-process exec-server behind the `local` environment, made when first needed: its modules
 * (the exec-server protocol's schemas, process, file and sandbox handlers) are a large part of
 * what a server would otherwise load before it can answer `initialize`, and a client may never
 * run anything on `local`.
 */
export class LocalExecServer {
  readonly #options: ExecServerOptions;
  /** The server's sandbox probe, made here so that asking it (as the start-up check does) makes no server. */
  readonly #bwrapProbe: () => Promise<BwrapProbe>;
  #server: Promise<ExecServer> | undefined;
  #closed = false;

  constructor(options: ExecServerOptions) {
    // The server's own default, so its first sandboxed command reuses the answer.
    this.#bwrapProbe = options.bwrapProbe ?? createBwrapProbe('bwrap', options.env.PATH);
    // Its client is in this process: an output event costs it no message, so output is not gathered.
    this.#options = { outputWindowMs: 0, ...options, bwrapProbe: this.#bwrapProbe };
  }

  /** The server, made (and its modules loaded) on the first call. */
  get(): Promise<ExecServer> {
    // After close() a new server would hold processes that nothing ends.
    if (this.#closed) return Promise.reject(new LocalError(LocalErrorCode.ConnectionClosed, 'the local exec-server is closed'));
    return (this.#server ??= import('../exec/server.js').then(({ ExecServer }) => new ExecServer(this.#options)));
  }

  /** {@link ExecServer.sandboxAvailability}: the same cached answer, whether or not the server was made yet. */
  sandboxAvailability(): Promise<BwrapProbe> {
    return this.#bwrapProbe();
  }

  /** Closes the server if it was made (ending its sessions and processes); later {@link get} calls fail. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    // A server that failed to be made holds nothing; the failure was reported to whoever asked for it.
    const server = await this.#server?.catch(() => undefined);
    await server?.close();
  }
}
