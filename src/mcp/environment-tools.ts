import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { z } from 'zod';
import { buildEnvironmentSpec, type EnvironmentEntry } from '../config/environment-spec.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import type { ThreadManager } from '../session/thread-manager.js';
import { errorMessage } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { ElicitationApprover } from './elicitation-approver.js';
import type { ToolNames } from './tool-names.js';
import { defineTool, type McpTool } from './tools.js';
import { plainError } from './turn-call.js';

const EnvironmentAddArgsSchema = z.object({
  id: z.string().optional().describe('Environment id ([A-Za-z0-9_-], not `local` or `none`).'),
  environmentId: z.string().optional().describe('Alias of id (Codex app-server name).'),
  url: z.string().optional().describe('ws:// or wss:// URL of an exec-server.'),
  execServerUrl: z.string().optional().describe('Alias of url (Codex app-server name).'),
  program: z.string().optional().describe('Command that speaks the exec-server protocol on its stdio (e.g. ssh).'),
  args: z.array(z.string()).optional().describe('Arguments of program.'),
  env: z.record(z.string(), z.string()).optional().describe('Variables added to program’s environment.'),
  cwd: z.string().optional().describe('Absolute working directory to start program in.'),
  authBearerToken: z.string().optional().describe('Bearer token for the websocket upgrade (wss:// or loopback only).'),
  connectTimeoutMs: z.number().int().nonnegative().optional().describe('Websocket connect timeout in ms (default 10000).'),
  initializeTimeoutMs: z.number().int().nonnegative().optional().describe('Initialize timeout in ms (default 10000).'),
  permissions: z.string().optional().describe('Permission profile commands and writes get in this environment ([permissions.NAME] or a built-in such as :read-only).'),
});

const EnvironmentEntryOutputSchema = z.looseObject({ id: z.string(), kind: z.string(), status: z.string(), isDefault: z.boolean() });

/** What the environment tools need from the server. */
export interface EnvironmentToolsOptions {
  /** Asks the user (elicitation) before a `program` environment is registered. */
  server: Server;
  threads: ThreadManager;
  registry: EnvironmentRegistry;
  names: Pick<ToolNames, 'environmentAdd' | 'environmentRemove' | 'environmentList'>;
  logger: Logger;
  /** How long an approval waits for the user. */
  approvalTimeoutMs: number;
  /** Register `program` environments without asking. */
  allowRuntimeProgramEnvironments: boolean;
}

/** `environment/add`, `environment/remove` and `environment/list`. */
export function environmentTools(options: EnvironmentToolsOptions): McpTool[] {
  const { names, threads, registry } = options;
  return [
    defineTool({
      name: names.environmentAdd,
      title: 'Add environment',
      description:
        'Register (or replace) an execution environment at run time: a websocket exec-server (`url`) or a command that speaks the exec-server protocol on its stdio (`program`, e.g. ssh). It connects lazily on first use. Replacing one is refused while a turn runs in it.',
      input: EnvironmentAddArgsSchema,
      output: z.object({ environment: EnvironmentEntryOutputSchema }),
      run: async (args, extra) => {
        const id = args.id ?? args.environmentId;
        if (args.id !== undefined && args.environmentId !== undefined && args.id !== args.environmentId)
          return plainError(`${names.environmentAdd}: id and environmentId disagree`);
        if (args.url !== undefined && args.execServerUrl !== undefined && args.url !== args.execServerUrl)
          return plainError(`${names.environmentAdd}: url and execServerUrl disagree`);
        if (id === undefined) return plainError(`${names.environmentAdd}: \`id\` (or \`environmentId\`) is required`);
        const url = args.url ?? args.execServerUrl;
        const entry: EnvironmentEntry = { id };
        if (url !== undefined) entry.url = url;
        if (args.program !== undefined) entry.program = args.program;
        if (args.args !== undefined) entry.args = args.args;
        if (args.env !== undefined) entry.env = args.env;
        if (args.cwd !== undefined) entry.cwd = args.cwd;
        if (args.authBearerToken !== undefined) entry.authBearerToken = args.authBearerToken;
        if (args.connectTimeoutMs !== undefined) entry.connectTimeoutSec = args.connectTimeoutMs / 1000;
        if (args.initializeTimeoutMs !== undefined) entry.initializeTimeoutSec = args.initializeTimeoutMs / 1000;
        if (args.permissions !== undefined) entry.permissions = args.permissions;
        try {
          // Every check comes before the user is asked: an approval is never spent on a call that
          // fails anyway (url with program, a relative cwd, a reserved id, an unknown profile, …).
          if (entry.permissions !== undefined) threads.checkPermissions(entry.permissions);
          threads.assertEnvironmentUnused(id, 'replace');
          // The registry builds the same spec from the same entry (a pure function): what is shown
          // for approval is what is registered.
          const spec = buildEnvironmentSpec(entry);
          if (spec.kind === 'stdio' && !options.allowRuntimeProgramEnvironments) {
            const approver =
              extra.approver ?? new ElicitationApprover({ server: options.server, timeoutMs: options.approvalTimeoutMs, logger: options.logger, toolCallId: extra.requestId });
            const decision = await approver.request(
              {
                kind: 'exec',
                threadId: '',
                callId: 'environment/add',
                environmentId: id,
                cwd: spec.cwd ?? '(server cwd)',
                command: [spec.program, ...spec.args],
                reason: `environment/add: register environment \`${id}\` that runs this command on this machine`,
              },
              extra.signal,
            );
            if (decision.decision !== 'approved' && decision.decision !== 'approved_for_session') {
              return plainError(
                `${names.environmentAdd}: registering a program environment needs approval (or multienv.allow_runtime_program_environments = true): ${'reason' in decision ? decision.reason : 'denied'}`,
              );
            }
          }
          // Checked again: a turn may have started in the environment while the user was asked.
          const environment = await threads.addEnvironment(entry);
          const description = { ...environment.describe(), ...threads.environmentPolicy(environment), isDefault: false };
          return { content: [{ type: 'text', text: JSON.stringify(description) }], structuredContent: { environment: description } };
        } catch (error) {
          return plainError(`${names.environmentAdd}: ${errorMessage(error)}`);
        }
      },
    }),

    defineTool({
      name: names.environmentRemove,
      title: 'Remove environment',
      description: `Remove an environment added with ${names.environmentAdd} and close its connection. Refused while a turn runs in it, and for \`local\` and the environments of environments.toml or CODEX_EXEC_SERVER_URL. A thread that still names it fails its next turn with a clear error until it is added again or the thread picks other environments.`,
      input: z.object({ id: z.string().describe(`The environment id, as ${names.environmentAdd} registered it.`) }),
      output: z.object({
        id: z.string(),
        restored: EnvironmentEntryOutputSchema.nullable().describe(
          `The environments.toml environment of the same id that the removed one had replaced (${names.environmentAdd} with a configured id), in effect again; null when there was none.`,
        ),
      }),
      annotations: { destructiveHint: true, idempotentHint: false },
      run: async (args) => {
        try {
          const { removed, restored } = await threads.removeEnvironment(args.id);
          const restoredEntry = restored === undefined ? undefined : registry.describe().find((entry) => entry.id === restored.id);
          const restoredDescription = restoredEntry === undefined ? null : { ...restoredEntry, ...threads.environmentPolicy(restoredEntry) };
          const text = `Removed environment \`${removed.id}\` (${removed.endpoint}) and closed its connection.${restored === undefined ? '' : ` The environment of that id from ${restored.source} (${restored.endpoint}) is in effect again.`}`;
          return { content: [{ type: 'text', text }], structuredContent: { id: removed.id, restored: restoredDescription } };
        } catch (error) {
          return plainError(`${names.environmentRemove}: ${errorMessage(error)}`);
        }
      },
    }),

    defineTool({
      name: names.environmentList,
      title: 'List environments',
      description:
        'Every environment with its kind, status (ready, pending, disconnected), last error, whether it is the default, and the MCP servers of loaded threads that run in it (mcpServers: state, tools, error). Does not connect.',
      input: z.object({}),
      output: z.object({ environments: z.array(EnvironmentEntryOutputSchema) }),
      run: () => {
        const mcpServers = threads.mcpServerStatuses();
        const environments = registry.describe().map((description) => ({
          ...description,
          ...threads.environmentPolicy(description),
          mcpServers: mcpServers.filter((server) => server.environmentId === description.id),
        }));
        return { content: [{ type: 'text', text: JSON.stringify(environments, null, 2) }], structuredContent: { environments } };
      },
    }),
  ];
}
