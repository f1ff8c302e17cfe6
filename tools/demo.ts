/**
 * `npm run demo`: the whole product without an API key. It starts the scripted fake model, our
 * exec-server as a second environment ("box", on a websocket), and the MCP server (spawned by a
 * real MCP client over stdio), then runs a scripted two-turn session in which commands and a
 * patch land in both environments.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startFakeResponsesServer, type FakeStep, type RecordedRequest } from './fake-responses-server.js';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/cli/main.js');

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function text(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === 'text' ? first.text : JSON.stringify(result.content);
}

/** The scripted model: what it "decides" at each step of each turn. */
function script(localDir: string, boxDir: string): FakeStep[] {
  const call = (name: string, args: Record<string, unknown>): FakeStep => ({ kind: 'output', items: [{ type: 'function_call', name, arguments: args }] });
  const patch = (input: string): FakeStep => ({ kind: 'output', items: [{ type: 'custom_tool_call', name: 'apply_patch', input }] });
  return [
    // Turn 1
    call('exec_command', { cmd: 'echo "hello from $(hostname) in $PWD"' }),
    call('exec_command', { cmd: 'echo "hello from the box in $PWD, BOX_MARK=$BOX_MARK"', environment_id: 'box' }),
    patch('*** Begin Patch\n*** Add File: notes/local.md\n+# Local notes\n+Written on the primary environment.\n*** End Patch\n'),
    patch('*** Begin Patch\n*** Environment ID: box\n*** Add File: deploy/config.yaml\n+service: demo\n+replicas: 2\n*** End Patch\n'),
    {
      kind: 'output',
      items: [{ type: 'message', text: `Done: I ran a command in each environment and wrote notes/local.md in ${localDir} and deploy/config.yaml on the box in ${boxDir}.` }],
    },
    // Turn 2 (codex-reply): the thread keeps its environments.
    patch('*** Begin Patch\n*** Environment ID: box\n*** Update File: deploy/config.yaml\n@@\n service: demo\n-replicas: 2\n+replicas: 3\n*** End Patch\n'),
    call('exec_command', { cmd: 'cat deploy/config.yaml', environment_id: 'box' }),
    { kind: 'output', items: [{ type: 'message', text: 'Scaled the box deployment to 3 replicas.' }] },
  ];
}

function describeRequest(request: RecordedRequest): string | undefined {
  const body = request.body as { input?: { type?: string; name?: string; call_id?: string; output?: unknown }[] } | undefined;
  const last = body?.input?.at(-1);
  if (last?.type === 'function_call_output' || last?.type === 'custom_tool_call_output') {
    const output = typeof last.output === 'string' ? last.output : JSON.stringify(last.output);
    return output
      .split('\n')
      .filter((l) => !/^(Chunk ID|Wall time|Original token count)/.test(l))
      .join('\n    ');
  }
  return undefined;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'codex-multienv-demo-'));
  const home = join(root, 'codex-home');
  const localDir = join(root, 'local-project');
  const boxDir = join(root, 'box-project');
  const steps = script(localDir, boxDir);
  const model = await startFakeResponsesServer({ respond: () => steps.shift() ?? { kind: 'output', items: [{ type: 'message', text: 'script exhausted' }] } });
  const box = spawn(process.execPath, [CLI, 'exec-server', '--listen', 'ws://127.0.0.1:0'], {
    env: { ...process.env, BOX_MARK: 'set-on-the-box' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let client: Client | undefined;
  try {
    await Promise.all([mkdir(home, { recursive: true }), mkdir(localDir, { recursive: true }), mkdir(boxDir, { recursive: true })]);
    await writeFile(
      join(home, 'config.toml'),
      `model = "gpt-5.5"\nmodel_provider = "demo"\napproval_policy = "never"\nsandbox_mode = "danger-full-access"\n\n[model_providers.demo]\nbase_url = "${model.url}"\n\n[shell_environment_policy]\ninherit = "all"\n`,
    );
    const boxUrl = await new Promise<string>((ok, fail) => {
      createInterface({ input: box.stdout }).once('line', ok);
      box.once('exit', (code) => fail(new Error(`the box exec-server exited with ${code}`)));
    });
    say(`1. Started the fake model at ${model.url} and our exec-server "box" at ${boxUrl}.`);

    client = new Client({ name: 'demo-client', version: '1.0.0' });
    await client.connect(
      new StdioClientTransport({ command: process.execPath, args: [CLI], env: { ...(process.env as Record<string, string>), CODEX_HOME: home, CODEX_MULTIENV_LOG: 'warn' } }),
    );
    const tools = await client.listTools();
    say(`2. Connected an MCP client to codex-multienv over stdio. Tools: ${tools.tools.map((t) => t.name).join(', ')}.`);

    const added = (await client.callTool({ name: 'environment/add', arguments: { id: 'box', url: boxUrl } })) as CallToolResult;
    say(`3. environment/add box → ${text(added)}`);

    say('4. codex: one prompt, two environments (local is primary, box is remote):');
    const first = (await client.callTool({
      name: 'codex',
      arguments: {
        prompt: 'Say hello from both environments, then write local notes and a deploy config on the box.',
        environments: [
          { id: 'local', cwd: localDir },
          { id: 'box', cwd: boxDir },
        ],
      },
    })) as CallToolResult;
    const threadId = (first.structuredContent as { threadId: string }).threadId;
    for (const request of model.requests) {
      const line = describeRequest(request);
      if (line !== undefined) say(`   tool result → ${line}`);
    }
    say(`   final answer (thread ${threadId}): ${text(first)}`);

    const seen = model.requests.length;
    say('5. codex-reply on the same thread (its environments are sticky):');
    const second = (await client.callTool({ name: 'codex-reply', arguments: { threadId, prompt: 'Scale the box deployment to 3 replicas.' } })) as CallToolResult;
    for (const request of model.requests.slice(seen)) {
      const line = describeRequest(request);
      if (line !== undefined) say(`   tool result → ${line}`);
    }
    say(`   final answer: ${text(second)}`);

    say('6. Files on disk:');
    say(`   ${join(localDir, 'notes/local.md')}:\n     ${(await readFile(join(localDir, 'notes/local.md'), 'utf8')).trim().replace(/\n/g, '\n     ')}`);
    say(`   ${join(boxDir, 'deploy/config.yaml')}:\n     ${(await readFile(join(boxDir, 'deploy/config.yaml'), 'utf8')).trim().replace(/\n/g, '\n     ')}`);
    const list = (await client.callTool({ name: 'environment/list', arguments: {} })) as CallToolResult;
    const environments = (list.structuredContent as { environments: { id: string; kind: string; status: string }[] }).environments;
    say(`7. environment/list: ${environments.map((e) => `${e.id} (${e.kind}, ${e.status})`).join(', ')}`);
    say(`\nThreads persist under $CODEX_HOME/multienv/threads (here a temporary folder, removed now): after a restart, codex-reply continues them.`);
  } finally {
    await client?.close();
    box.kill('SIGTERM');
    await model.close();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
