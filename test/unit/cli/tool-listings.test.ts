// The `tools/list` results the build writes (tools/tool-listings.js) for the relay: the same as
// the server built from these sources answers (so a tool changed without a rebuild fails here,
// not a client), and which of them the relay may answer with, given its command line and the
// configuration (src/cli/tool-listings.ts).
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { builtToolsList, TOOL_LISTING_VARIANTS, TOOL_LISTINGS_FILE } from '../../../src/cli/tool-listings.js';
import { startInProcessMcp } from '../../helpers/in-process-mcp.js';
import { CLI, tempDir } from '../../helpers/process.js';

const BUILT = join(dirname(CLI), TOOL_LISTINGS_FILE);
const modernMeta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
const AnyResult = z.looseObject({});
const BuiltSchema = z.record(z.enum(TOOL_LISTING_VARIANTS), z.object({ legacy: z.looseObject({}), modern: z.looseObject({}) }));

describe('the tools/list results of the build', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => {
    home = await tempDir('tool-listings-');
  });
  afterEach(async () => {
    await home.cleanup();
  });

  it.each([
    ['default', []],
    ['portable', ['--portable-tool-names']],
  ] as const)('are what the server of these sources answers (%s names), in both eras', async (variant, args) => {
    const built = BuiltSchema.parse(JSON.parse(await readFile(BUILT, 'utf8')));
    const mcp = await startInProcessMcp(home.path, { args: [...args] });
    try {
      const legacy = await mcp.client.request({ method: 'tools/list' }, AnyResult);
      const modern = await mcp.client.request({ method: 'tools/list', params: { _meta: modernMeta } }, AnyResult);
      expect(built[variant]?.legacy).toEqual(legacy);
      expect(built[variant]?.modern).toEqual(modern);
    } finally {
      await mcp.close();
    }
  });
});

describe('which listing the relay answers with', () => {
  let home: { path: string; cleanup: () => Promise<void> };
  let file: string;
  const listing = (variant: string): Record<string, unknown> => ({ tools: [{ name: variant }] });
  beforeEach(async () => {
    home = await tempDir('tool-listings-');
    file = join(home.path, TOOL_LISTINGS_FILE);
    await writeFile(file, JSON.stringify({ default: { legacy: listing('default'), modern: listing('default-modern') }, portable: { legacy: listing('portable') } }));
  });
  afterEach(async () => {
    await home.cleanup();
  });
  const list = (options: { portableFlag?: boolean; overrides?: string[] } = {}) =>
    builtToolsList(file, { portableFlag: options.portableFlag ?? false, overrides: options.overrides ?? [], env: { CODEX_HOME: home.path } });

  it('the default names without a config.toml, or with one that does not name the key; the portable ones with the flag, whatever the config says', async () => {
    expect(list()('legacy')).toEqual(listing('default'));
    expect(list()('modern')).toEqual(listing('default-modern'));
    await writeFile(join(home.path, 'config.toml'), 'model = "m"\n[multienv]\ndefault_wait_sec = 5\n');
    expect(list({ overrides: ['multienv.default_wait_sec=5'] })('legacy')).toEqual(listing('default'));
    await writeFile(join(home.path, 'config.toml'), '[multienv]\nportable_tool_names = false\n');
    expect(list({ portableFlag: true })('legacy')).toEqual(listing('portable'));
    // Not in the file: left to the worker.
    expect(list({ portableFlag: true })('modern')).toBeUndefined();
  });

  it.each([
    ['config.toml names the key', '[multienv]\nportable_tool_names = true\n', []],
    ['a profile names it', '[profiles.p.multienv]\nportable_tool_names = true\n', []],
    ['a quoted key spells it with an escape', '[multienv]\n"portable\\u005Ftool_names" = true\n', []],
    ['a -c option names it', '', ['multienv.portable_tool_names=true']],
    ['a -c option may spell it with an escape', '', ['multienv."\\x70ortable_tool_names"=true']],
  ])('none when %s: the worker answers', async (_case, text, overrides) => {
    await writeFile(join(home.path, 'config.toml'), text);
    expect(list({ overrides })('legacy')).toBeUndefined();
    expect(list({ overrides })('modern')).toBeUndefined();
  });

  it('none when config.toml cannot be read, or the listings are missing or not as the build writes them', async () => {
    await mkdir(join(home.path, 'config.toml'));
    expect(list()('legacy')).toBeUndefined();
    await home.cleanup();
    home = await tempDir('tool-listings-');
    file = join(home.path, TOOL_LISTINGS_FILE);
    expect(list()('legacy')).toBeUndefined();
    await writeFile(file, '{"default": {"legacy": {"tools": "no"}}}');
    expect(list()('legacy')).toBeUndefined();
    await writeFile(file, 'not JSON');
    expect(list()('legacy')).toBeUndefined();
  });
});
