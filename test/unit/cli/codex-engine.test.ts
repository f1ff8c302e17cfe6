import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chooseEngine, findCodexBinary } from '../../../src/cli/codex-engine.js';
import { readCodexAuth } from '../../../src/cli/runtime.js';

// `auto` from the credentials present. A real ChatGPT sign-in cannot be exercised here: a fake
// auth.json with tokens stands for one (only its presence is read).
describe('multienv.engine = "auto"', () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'engine-auto-'));
  });
  afterEach(() => rm(home, { recursive: true, force: true }));

  const binary = findCodexBinary(undefined, { PATH: '' }, process.cwd());

  it('finds the pinned @openai/codex package when codex is not on PATH, and honours codex_path', () => {
    expect(binary).toEqual({ path: expect.stringMatching(/@openai\/codex\/bin\/codex\.js$/), source: '@openai/codex package' });
    expect(findCodexBinary(join(home, 'missing'), { PATH: '' }, process.cwd())).toBeUndefined();
  });

  it('takes codex only when a ChatGPT sign-in is the sole credential and a binary is found', async () => {
    await writeFile(join(home, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: null, tokens: { id_token: 'x', access_token: 'y', refresh_token: 'z' } }));
    const auth = await readCodexAuth(home);
    expect(auth?.chatgpt).toBe(true);
    const facts = { providerUsable: false, chatgptSignIn: auth?.chatgpt === true, codexBinary: binary };
    expect(chooseEngine('auto', facts).engine).toBe('codex');
    expect(chooseEngine('auto', { ...facts, providerUsable: true }).engine).toBe('builtin');
    expect(chooseEngine('auto', { ...facts, codexBinary: undefined })).toEqual({ engine: 'builtin', why: expect.stringContaining('no Codex binary') });
    expect(chooseEngine('auto', { ...facts, chatgptSignIn: false }).engine).toBe('builtin');
    expect(chooseEngine('builtin', facts).engine).toBe('builtin');
    expect(chooseEngine('codex', { ...facts, providerUsable: true }).engine).toBe('codex');
  });

  it('an API key stored by `codex login --with-api-key` is not a ChatGPT sign-in', async () => {
    await writeFile(join(home, 'auth.json'), JSON.stringify({ OPENAI_API_KEY: 'sk-test' }));
    expect((await readCodexAuth(home))?.chatgpt).toBe(false);
  });
});
