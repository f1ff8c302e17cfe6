/**
 * The MCP stdio transport of a server run through an environment's executor (`process/start`):
 * JSON-RPC lines on the process's stdin and stdout, its stderr kept to explain a failure.
 */
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { RemoteProcess } from '../exec/remote-process.js';
import { settlesWithin } from '../util/abort.js';
import { deferred } from '../util/deferred.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';

/** Bound on one line a stdio server writes (one JSON-RPC message). */
export const MAX_MCP_STDIO_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Bytes of a stdio server's stderr kept to explain a failure. */
const STDERR_TAIL_BYTES = 4096;

/** Options of {@link ExecProcessTransport}. */
export interface ExecProcessTransportOptions {
  /** For messages: `<server>@<environment>`. */
  label: string;
  /** How long a stopping process gets to exit after SIGINT, and again after SIGKILL. */
  shutdownGraceMs: number;
}

/**
 * The MCP stdio transport over a process of an exec-server: messages are NDJSON on the process's
 * stdin (`process/write`) and stdout (`process/output`). The executor has no way to close stdin,
 * so stopping is SIGINT, then SIGKILL after a grace period.
 */
export class ExecProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  readonly #startProcess: () => Promise<RemoteProcess>;
  readonly #options: ExecProcessTransportOptions;
  readonly #buffer = new ReadBuffer({ maxBufferSize: MAX_MCP_STDIO_MESSAGE_BYTES });
  readonly #finished = deferred<void>();
  #process?: RemoteProcess;
  #stderr = Buffer.alloc(0);
  #exitCode?: number;
  #failure?: Error;
  #writes: Promise<void> = Promise.resolve();
  #closing = false;
  #closeReported = false;

  constructor(startProcess: () => Promise<RemoteProcess>, options: ExecProcessTransportOptions) {
    this.#startProcess = startProcess;
    this.#options = options;
  }

  /** True once the process is gone. */
  get finished(): boolean {
    return this.#process?.finished ?? false;
  }

  /** How the process ended, with the tail of its stderr. */
  exitDescription(): string {
    const how = this.#failure !== undefined ? errorMessage(this.#failure) : this.#exitCode !== undefined ? `the process exited with code ${this.#exitCode}` : 'the process ended';
    const stderr = this.#stderr.toString('utf8').trim();
    return stderr.length === 0 ? how : `${how}; its stderr ends with: ${stderr}`;
  }

  async start(): Promise<void> {
    const process = await this.#startProcess();
    this.#process = process;
    void this.#pump(process);
    if (this.#closing) {
      // Closed while the process was starting.
      await process.terminate().catch(() => undefined);
      throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server ${this.#options.label} was stopped while starting`);
    }
  }

  send(message: JSONRPCMessage): Promise<void> {
    // One write at a time: the executor's stdin must receive whole lines in order.
    const write = this.#writes.then(async () => {
      const process = this.#process;
      if (process === undefined || this.#closing || process.finished) throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server ${this.#options.label} is not running`);
      const status = await process.write(serializeMessage(message));
      if (status !== 'accepted') throw new LocalError(LocalErrorCode.ConnectionClosed, `MCP server ${this.#options.label}: writing to its stdin failed (${status})`);
    });
    this.#writes = write.catch(() => undefined);
    return write;
  }

  async close(): Promise<void> {
    if (this.#closing) {
      await this.#finished.promise;
      return;
    }
    this.#closing = true;
    const process = this.#process;
    if (process !== undefined && !process.finished) {
      await process.interrupt().catch(() => undefined);
      if (!(await settlesWithin(this.#finished.promise, this.#options.shutdownGraceMs))) {
        await process.terminate().catch(() => undefined);
        await settlesWithin(this.#finished.promise, this.#options.shutdownGraceMs);
      }
    } else if (process === undefined) {
      this.#finished.resolve();
    }
    this.#reportClose();
  }

  async #pump(process: RemoteProcess): Promise<void> {
    try {
      for await (const event of process.events()) {
        if (event.kind === 'output') {
          if (event.stream === 'stderr') this.#keepStderr(event.data);
          else this.#onStdout(event.data);
        } else if (event.kind === 'exited') {
          this.#exitCode = event.exitCode;
        } else if (event.kind === 'failed') {
          this.#failure = event.error;
        }
      }
    } catch (error) {
      this.#failure = error instanceof Error ? error : new Error(String(error));
    }
    this.#finished.resolve();
    this.#reportClose();
  }

  #onStdout(data: Buffer): void {
    try {
      this.#buffer.append(data);
    } catch {
      this.onerror?.(new LocalError(LocalErrorCode.FrameTooLarge, `MCP server ${this.#options.label} wrote a line longer than ${MAX_MCP_STDIO_MESSAGE_BYTES} bytes`));
      void this.close();
      return;
    }
    for (;;) {
      let message: JSONRPCMessage | null;
      try {
        message = this.#buffer.readMessage();
      } catch (error) {
        // A line that is not a JSON-RPC message (a stray log line): skip it.
        this.onerror?.(new LocalError(LocalErrorCode.ProtocolViolation, `MCP server ${this.#options.label} wrote a line that is not a JSON-RPC message: ${errorMessage(error)}`));
        continue;
      }
      if (message === null) return;
      this.onmessage?.(message);
    }
  }

  #keepStderr(data: Buffer): void {
    const joined = Buffer.concat([this.#stderr, data]);
    this.#stderr = joined.length > STDERR_TAIL_BYTES ? joined.subarray(joined.length - STDERR_TAIL_BYTES) : joined;
  }

  #reportClose(): void {
    if (this.#closeReported) return;
    this.#closeReported = true;
    this.onclose?.();
  }
}
