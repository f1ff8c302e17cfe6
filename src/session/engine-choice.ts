import type { ThreadEngine } from '../protocol/thread.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
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
  open(init: EngineThreadInit): EngineThread {
    const name = init.config.engine ?? 'builtin';
    const engine = this.#engines[name];
    if (engine === undefined) throw new LocalError(LocalErrorCode.InvalidConfig, `thread ${init.threadId} runs on the ${name} engine: ${this.#missing(name)}`);
    return engine.open(init);
  }
}
