import type { ThreadEngine } from '../protocol/thread.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import type { EngineThread, EngineThreadInit, TurnEngine } from './turn-engine.js';

/**
 * The turn engine of a server with several: each thread opens on the engine its stored config
 * names (`config.engine`, chosen when the thread started and kept for life; absent means
 * `builtin`). The thread manager sees one {@link TurnEngine}; the composition root decides which
 * engines there are.
 */
export class EnginesByName implements TurnEngine {
  readonly #engines: Readonly<Partial<Record<ThreadEngine, TurnEngine>>>;
  readonly #missing: (engine: ThreadEngine) => string;

  /**
   * @param engines the engines this server has; `builtin` always
   * @param missing why an engine is missing and how to get it, for the error of a thread that needs it
   */
  constructor(engines: Readonly<Partial<Record<ThreadEngine, TurnEngine>> & { builtin: TurnEngine }>, missing: (engine: ThreadEngine) => string) {
    this.#engines = engines;
    this.#missing = missing;
  }

  /** @throws LocalError `INVALID_CONFIG` when the thread's engine is not available in this server. */
  open(init: EngineThreadInit): Promise<EngineThread> {
    const name = init.config.engine ?? 'builtin';
    const engine = this.#engines[name];
    if (engine === undefined) return Promise.reject(new LocalError(LocalErrorCode.InvalidConfig, `thread ${init.threadId} runs on the ${name} engine: ${this.#missing(name)}`));
    return engine.open(init);
  }
}

/**
 * An engine made when a thread first opens on it. Its modules (the built-in agent with its tools
 * and model client; the app-server protocol) are then loaded, so a server's start, which needs
 * none of them to answer `initialize` or `tools/list`, does not pay for building their schemas.
 */
export class LazyEngine implements TurnEngine {
  readonly #name: ThreadEngine;
  readonly #load: () => Promise<TurnEngine>;
  #engine: Promise<TurnEngine> | undefined;

  /**
   * @param name the engine's name, for the error when it cannot be loaded
   * @param load loads the engine's modules and makes the engine; called once (again after a failure)
   */
  constructor(name: ThreadEngine, load: () => Promise<TurnEngine>) {
    this.#name = name;
    this.#load = load;
  }

  /** @throws LocalError `INVALID_CONFIG` when the engine's modules cannot be loaded (a broken install). */
  async open(init: EngineThreadInit): Promise<EngineThread> {
    this.#engine ??= this.#load().catch((error: unknown) => {
      // The next thread tries again rather than meeting the same rejection forever.
      this.#engine = undefined;
      throw new LocalError(LocalErrorCode.InvalidConfig, `could not load the ${this.#name} engine: ${errorMessage(error)}; reinstall codex-multienv-mcp`, { cause: error });
    });
    return (await this.#engine).open(init);
  }
}
