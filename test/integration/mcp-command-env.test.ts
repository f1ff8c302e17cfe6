// What a command inherits from the server's own environment by default, end to end: our server
// composed in-process with that environment, the SDK client, the fake model, real commands on the local environment.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { functionCallOutputs, type FakeStep } from '../../tools/fake-responses-server.js';
import { startInProcessMcp } from '../helpers/in-process-mcp.js';
import { setUpMcpWorld, tearDownMcpWorld, type McpHarness, type McpTestWorld, threadIdOf } from '../helpers/mcp.js';
import { exec, say } from '../helpers/steps.js';

/** The environment bash was started with, as the executor built it (bash's own changes, such as PWD, are not in it). */
const PRINT_INITIAL_ENVIRONMENT = "tr '\\0' '\\n' < /proc/$$/environ";

describe('the command environment', () => {
  let world: McpTestWorld;
  let steps: FakeStep[];
  let mcp: McpHarness | undefined;

  beforeEach(async () => {
    steps = [];
    world = await setUpMcpWorld('mcp-command-env', () => steps.shift() ?? say('script exhausted'));
  });
  afterEach(async () => {
    await tearDownMcpWorld(world, mcp);
    mcp = undefined;
  });

  it('keeps credentials (PGPASSWORD, DATABASE_URL, a URL with a password) out of commands and the thread file, but not PWD, PATH and HOME; ignore_default_excludes lets them through', async () => {
    const credentials = {
      PGPASSWORD: 'pg-secret-1',
      DATABASE_URL: 'postgres://u:db-secret-2@h/db',
      CACHE: 'redis://:redis-secret-3@127.0.0.1:6379/0',
      MYSQL_PWD: 'mysql-secret-4',
    };
    const ordinary = { HOME: world.home.path, PWD: world.work.path, OLDPWD: world.home.path, PATH: process.env.PATH ?? '/usr/bin:/bin' };
    mcp = await startInProcessMcp(world.home.path, { env: { ...credentials, ...ordinary } });

    steps.push(exec(PRINT_INITIAL_ENVIRONMENT), say('looked'));
    const result = await mcp.call('codex', { prompt: 'show the environment', cwd: world.work.path });
    expect(result.isError).toBeFalsy();
    const seen = functionCallOutputs(world.model.requests[1]!)
      .map((o) => String(o.output))
      .join('\n');
    for (const [name, value] of Object.entries(ordinary)) expect(seen).toContain(`\n${name}=${value}\n`);
    for (const [name, value] of Object.entries(credentials)) {
      expect(seen).not.toContain(`${name}=`);
      expect(seen).not.toContain(value);
    }
    const threadFile = await readFile(join(world.home.path, 'multienv', 'threads', `${threadIdOf(result)}.jsonl`), 'utf8');
    expect(threadFile).toContain(`PWD=${world.work.path}`);
    for (const value of Object.values(credentials)) expect(threadFile).not.toContain(value);

    // Asked for, they reach the command.
    steps.push(exec(PRINT_INITIAL_ENVIRONMENT), say('looked again'));
    const asked = await mcp.call('codex', { prompt: 'show it all', cwd: world.work.path, config: { 'shell_environment_policy.ignore_default_excludes': true } });
    expect(asked.isError).toBeFalsy();
    const all = functionCallOutputs(world.model.requests[3]!)
      .map((o) => String(o.output))
      .join('\n');
    for (const [name, value] of Object.entries(credentials)) expect(all).toContain(`\n${name}=${value}\n`);
  });
});
