import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from './process.js';

/**
 * A throwaway CODEX_HOME for the real Codex CLI, configured to use the fake model. It lives under
 * the repository (Codex warns about PATH aliases when CODEX_HOME is in the system temp folder).
 */
export async function codexHomeForFakeModel(modelUrl: string, extra = ''): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const base = join(REPO_ROOT, '.test-tmp');
  await mkdir(base, { recursive: true });
  const path = await mkdtemp(join(base, 'codex-home-'));
  await writeFile(
    join(path, 'config.toml'),
    [
      'model = "gpt-5.5"',
      'model_provider = "fake"',
      'approval_policy = "never"',
      'sandbox_mode = "danger-full-access"',
      '',
      '[model_providers.fake]',
      'name = "fake"',
      `base_url = "${modelUrl}"`,
      'wire_api = "responses"',
      'env_key = "FAKE_MODEL_API_KEY"',
      '',
      '[features]',
      'plugins = false',
      '',
      extra,
    ].join('\n'),
  );
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}
