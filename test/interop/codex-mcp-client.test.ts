import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import {
  functionCallOutputs,
  inputItems,
  startFakeResponsesServer,
  toolNames,
  type FakeResponsesServer,
  type FakeStep,
  type RecordedRequest,
} from '../../tools/fake-responses-server.js';
import { codexHomeForFakeModel } from '../helpers/codex-home.js';
import { writeMcpConfig } from '../helpers/mcp.js';
import { networkEnv } from '../helpers/network.js';
import { CLI, CODEX, runCommand, tempDir } from '../helpers/process.js';
import { isRecord } from '../helpers/steps.js';

// The real Codex 0.169.0 (`codex exec`) as an MCP client of OUR server, configured the way the
// README's client section shows (`[mcp_servers.multienv]` in Codex's config.toml). One fake model
// plays both parts: Codex's outer model calls our `codex` and `codex-reply` tools, and our server's
// inner turns run a command in the work folder.
//
// Codex offers MCP tools to the model in a `mcp__<server>` namespace, with names made portable
// (`codex-reply` becomes `codex_reply`). For models in its catalog, it hides MCP tools behind
// `tool_search`, which the fake model cannot drive, so the outer model is an unknown name.

const OUTER_MODEL = 'scripted-model';
const NAMESPACE = 'mcp__multienv';
/** Requests the outer model spends waiting for our tools before the test gives up. */
const MAX_WAITS = 60;

const CodexToolResultSchema = z.object({ threadId: z.string(), content: z.string() });

/** The `{threadId, content}` JSON our tool returned, from the last tool output Codex sent its model (after its "Wall time" lines). */
function lastToolResult(request: RecordedRequest): z.infer<typeof CodexToolResultSchema> {
  const output = z.string().parse(functionCallOutputs(request).at(-1)?.output);
  return CodexToolResultSchema.parse(JSON.parse(output.slice(output.indexOf('{'))));
}

describe('real codex exec as an MCP client of our server', () => {
  let model: FakeResponsesServer;
  let codexHome: { path: string; cleanup: () => Promise<void> };
  let ourHome: { path: string; cleanup: () => Promise<void> };
  let work: { path: string; cleanup: () => Promise<void> };
  const outer: RecordedRequest[] = [];
  let waits = 0;
  const inner: RecordedRequest[] = [];

  beforeAll(async () => {
    work = await tempDir('codex-mcp-client-work-');
    model = await startFakeResponsesServer({
      respond: (request): FakeStep => {
        if (isRecord(request.body) && request.body['model'] === OUTER_MODEL) {
          // Codex may send its first request before our server has listed its tools (it starts
          // MCP servers in the background): its model then waits in Codex's own shell, and asks
          // again, until they are offered.
          if (!toolNames(request).includes(NAMESPACE)) {
            waits++;
            if (waits > MAX_WAITS) return { kind: 'output', items: [{ type: 'message', text: `our tools were never offered (${MAX_WAITS} requests)` }] };
            return { kind: 'output', items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd: 'sleep 0.5' } }] };
          }
          outer.push(request);
          if (outer.length === 1) {
            return {
              kind: 'output',
              items: [
                {
                  type: 'function_call',
                  namespace: NAMESPACE,
                  name: 'codex',
                  arguments: { prompt: 'write the marker', cwd: work.path, sandbox: 'danger-full-access', 'approval-policy': 'never' },
                },
              ],
            };
          }
          if (outer.length === 2) {
            const { threadId } = lastToolResult(request);
            return { kind: 'output', items: [{ type: 'function_call', namespace: NAMESPACE, name: 'codex_reply', arguments: { threadId, prompt: 'and now say goodbye' } }] };
          }
          return { kind: 'output', items: [{ type: 'message', text: 'outer done' }] };
        }
        inner.push(request);
        if (inner.length === 1)
          return { kind: 'output', items: [{ type: 'function_call', name: 'exec_command', arguments: { cmd: 'printf from-codex-client > marker.txt && echo wrote' } }] };
        return { kind: 'output', items: [{ type: 'message', text: inner.length === 2 ? 'inner turn one done' : 'inner turn two done' }] };
      },
    });
    ourHome = await tempDir('codex-mcp-client-ours-');
    await writeMcpConfig(ourHome.path, model.url);
    codexHome = await codexHomeForFakeModel(model.url);
    await appendFile(
      join(codexHome.path, 'config.toml'),
      [
        '',
        '[mcp_servers.multienv]',
        `command = ${JSON.stringify(process.execPath)}`,
        `args = [${JSON.stringify(CLI)}]`,
        `env = { CODEX_HOME = ${JSON.stringify(ourHome.path)}, FAKE_MODEL_API_KEY = "test-key" }`,
        'startup_timeout_sec = 30',
        'tool_timeout_sec = 3600',
        '',
      ].join('\n'),
    );
  });
  afterAll(async () => {
    await model.close();
    await codexHome.cleanup();
    await ourHome.cleanup();
    await work.cleanup();
  });

  it('lists our tools, starts a thread with `codex` and continues it with `codex-reply`', async () => {
    const run = await runCommand(CODEX, ['exec', '--skip-git-repo-check', '-m', OUTER_MODEL, '-C', work.path, 'Delegate to the multienv server.'], {
      ...networkEnv(process.env),
      CODEX_HOME: codexHome.path,
      FAKE_MODEL_API_KEY: 'test-key',
    });
    expect({ code: run.code, stdout: run.stdout }).toEqual({ code: 0, stdout: expect.stringContaining('outer done') });
    expect(model.errors).toEqual([]);

    // Codex offered our four tools, with portable names.
    const offered = JSON.stringify((outer[0]?.body as { tools?: unknown[] } | undefined)?.tools ?? []);
    for (const name of ['"codex"', '"codex_reply"', '"environment_add"', '"environment_list"']) expect(offered).toContain(name);

    // The first call ran a turn that ran a command here; its result came back to Codex's model.
    expect(await readFile(join(work.path, 'marker.txt'), 'utf8')).toBe('from-codex-client');
    const first = lastToolResult(outer[1]!);
    expect(first.content).toBe('inner turn one done');

    // `codex_reply` reached our `codex-reply`: same thread, with the first turn's history.
    const second = lastToolResult(outer[2]!);
    expect(second).toEqual({ threadId: first.threadId, content: 'inner turn two done' });
    expect(inner).toHaveLength(3);
    expect(JSON.stringify(inputItems(inner[2]!))).toContain('inner turn one done');
  });
});
