import type { ThreadEngine } from '../protocol/thread.js';
import type { EngineThread, EngineThreadInit, TurnEngine } from './turn-engine.js';

/**
 * The turn engine of a server with several: each thread opens on the engine its stored config
 * names (`config.engine`, chosen when the thread started and kept for life; absent means
 * `builtin`). The thread manager sees one {@link TurnEngine}; the composition root decides which
 * engines there are.
 */
export class EnginesByName implements TurnEngine {
  readonly #engines: Readonly<Record<ThreadEngine, TurnEngine>>;

  constructor(engines: Readonly<Record<ThreadEngine, TurnEngine>>) {
    this.#engines = engines;
  }

  open(init: EngineThreadInit): EngineThread {
    return this.#engines[init.config.engine ?? 'builtin'].open(init);
  }
}
