// Engines made on first use (LazyEngine): loaded once, a failed load reported clearly and tried
// again by the next thread; EnginesByName's error for an engine the server does not have.
import { EnginesByName, LazyEngine } from '../../../src/session/engine-choice.js';
import type { EngineThread, EngineThreadInit, TurnEngine } from '../../../src/session/turn-engine.js';
import { LocalErrorCode } from '../../../src/util/errors.js';

/** A thread's init as far as these engines read it (the id and the engine its config names). */
function init(threadId: string, engine?: 'builtin' | 'codex'): EngineThreadInit {
  return { threadId, config: { engine } } as unknown as EngineThreadInit;
}

/** An engine whose threads are marked with the id they were opened for. */
const markingEngine: TurnEngine = { open: (thread) => Promise.resolve({ activeCommands: 0, marker: thread.threadId } as unknown as EngineThread) };

describe('LazyEngine', () => {
  it('loads its engine at the first open only, and opens every thread on it', async () => {
    let loads = 0;
    const lazy = new LazyEngine('builtin', () => {
      loads += 1;
      return Promise.resolve(markingEngine);
    });
    expect(loads).toBe(0);
    const [a, b] = await Promise.all([lazy.open(init('a')), lazy.open(init('b'))]);
    expect([a, b]).toMatchObject([{ marker: 'a' }, { marker: 'b' }]);
    expect(loads).toBe(1);
  });

  it('fails an open with a clear error when its modules cannot be loaded, and tries again at the next open', async () => {
    let loads = 0;
    const lazy = new LazyEngine('codex', () => {
      loads += 1;
      return loads === 1 ? Promise.reject(new Error('Cannot find module ./codex-engine.js')) : Promise.resolve(markingEngine);
    });
    await expect(lazy.open(init('a'))).rejects.toMatchObject({
      code: LocalErrorCode.InvalidConfig,
      message: 'could not load the codex engine: Cannot find module ./codex-engine.js; reinstall codex-multienv-mcp',
    });
    await expect(lazy.open(init('b'))).resolves.toMatchObject({ marker: 'b' });
    expect(loads).toBe(2);
  });
});

describe('EnginesByName', () => {
  it('opens a thread on the engine its config names, and says why a missing engine is missing', async () => {
    const engines = new EnginesByName({ builtin: markingEngine }, () => 'no Codex CLI was found');
    await expect(engines.open(init('a'))).resolves.toMatchObject({ marker: 'a' });
    await expect(engines.open(init('b', 'codex'))).rejects.toMatchObject({
      code: LocalErrorCode.InvalidConfig,
      message: 'thread b runs on the codex engine: no Codex CLI was found',
    });
  });
});
