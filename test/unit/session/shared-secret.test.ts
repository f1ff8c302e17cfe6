// The threads folder's shared secrets (the key that seals modern requestState values): made once,
// 0600, and the same for every process that shares the folder, even when they start together.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { JsonlThreadStore } from '../../../src/session/jsonl-thread-store.js';
import { tempDir } from '../../helpers/process.js';

describe('a shared secret of the threads folder', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeEach(async () => {
    dir = await tempDir('cmx-shared-secret-');
  });
  afterEach(() => dir.cleanup());

  it('is made once, mode 0600, and read the same by every store of the folder', async () => {
    const threads = join(dir.path, 'threads');
    const stores = [new JsonlThreadStore({ dir: threads }), new JsonlThreadStore({ dir: threads }), new JsonlThreadStore({ dir: threads })];
    const secrets = await Promise.all(stores.map((store) => store.sharedSecret('request-state')));
    expect(secrets[0]).toHaveLength(32);
    for (const secret of secrets) expect(secret.equals(secrets[0]!)).toBe(true);
    expect(statSync(join(threads, '.secret-request-state')).mode & 0o777).toBe(0o600);
    expect((await stores[0]!.sharedSecret('request-state')).equals(secrets[0]!)).toBe(true);
    await expect(stores[0]!.sharedSecret('../escape')).rejects.toThrow('invalid shared secret name');
    await Promise.all(stores.map((store) => store.close()));
  });
});
