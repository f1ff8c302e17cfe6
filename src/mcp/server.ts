import { Transform, type Readable, type Writable } from 'node:stream';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { CancelledNotificationSchema, type CallToolResult, type ServerNotification, type ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { EnvironmentEntry } from '../config/environments.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import { ThreadNotFoundError, type ThreadManager, type TurnCallbacks, type TurnOutcome } from '../session/thread-manager.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { ElicitationApprover } from './elicitation-approver.js';
import { progressReporter } from './progress.js';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const EnvironmentSelectionSchema = z
  .object({
    id: z.string().describe('Environment id (see environment/list).'),
    cwd: z.string().optional().describe('Absolute working directory on that environment; defaults to the thread cwd (local) or the environment’s own.'),
    permissions: z
      .string()
      .optional()
      .describe('Permission profile for this environment in this thread ([permissions.NAME] or :read-only, :workspace, :danger-full-access); defaults to the environment’s own, else the thread’s.'),
  })
  .strict();

const ThreadResultSchema = { threadId: z.string(), content: z.string() };

const CodexArgsSchema = {
  prompt: z.string().describe('The *initial user prompt* to start the Codex conversation.'),
  model: z.string().optional().describe("Optional override for the model name (e.g. 'gpt-5.5')."),
  profile: z.string().optional().describe('Configuration profile from config.toml to start from.'),
  cwd: z.string().optional().describe('Working directory for the session (absolute). Defaults to the server’s working directory.'),
  'approval-policy': z.enum(['untrusted', 'on-failure', 'on-request', 'never']).optional().describe('When commands and patches need the user’s approval.'),
  sandbox: z.enum(['read-only', 'workspace-write', 'danger-full-access']).optional().describe('Sandbox mode for commands and writes.'),
  config: z.record(z.string(), z.unknown()).optional().describe('Individual config settings that override CODEX_HOME/config.toml (dotted keys).'),
  'base-instructions': z.string().optional().describe('Instructions to use instead of the default ones.'),
  'developer-instructions': z.string().optional().describe('Developer instructions injected as a developer message.'),
  'compact-prompt': z.string().optional().describe('Prompt used when compacting the conversation.'),
  environments: z
    .array(EnvironmentSelectionSchema)
    .optional()
    .describe('The thread’s environments, primary first (sticky for later turns). Omitted: the default environments; []: no environment access.'),
};

const CodexReplyArgsSchema = {
  threadId: z.string().optional().describe('The thread id returned by `codex`. Required (conversationId is accepted for old clients).'),
  conversationId: z.string().optional().describe('DEPRECATED: use threadId instead.'),
  prompt: z.string().describe('The *next user prompt* to continue the Codex conversation.'),
  environments: z
    .array(EnvironmentSelectionSchema)
    .optional()
    .describe('Environments for THIS turn only, primary first. Omitted: the thread’s sticky selection; []: no environment access for this turn.'),
  stickyEnvironments: z
    .array(EnvironmentSelectionSchema)
    .optional()
    .describe('Replaces the thread’s sticky environments for this and later turns.'),
};

const EnvironmentAddArgsSchema = {
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
};

const EnvironmentEntryOutputSchema = z.looseObject({ id: z.string(), kind: z.string(), status: z.string(), isDefault: z.boolean() });

/** Options of {@link createMcpServer}. */
export interface McpServerOptions {
  threads: ThreadManager;
  registry: EnvironmentRegistry;
  version: string;
  logger?: Logger;
  /** How long an approval waits for the user. */
  approvalTimeoutMs: number;
  /** Emit old-style `codex/event` notifications. @default false */
  codexEvents?: boolean;
  /** Let `environment/add` register `program` environments without asking. @default false */
  allowRuntimeProgramEnvironments?: boolean;
}

function threadResult(threadId: string, text: string, isError = false): CallToolResult {
  const result: CallToolResult = { content: [{ type: 'text', text }], structuredContent: { threadId, content: text } };
  if (isError) result.isError = true;
  return result;
}

function plainError(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

function outcomeResult(outcome: TurnOutcome): CallToolResult {
  if (outcome.status === 'completed') return threadResult(outcome.threadId, outcome.lastAgentMessage ?? '');
  if (outcome.status === 'interrupted') {
    return threadResult(outcome.threadId, `The turn was interrupted.${outcome.lastAgentMessage === null ? '' : ` Last message: ${outcome.lastAgentMessage}`}`, true);
  }
  return threadResult(outcome.threadId, `The turn failed: ${outcome.error ?? 'unknown error'}`, true);
}

/**
 * Builds the MCP face: `codex`, `codex-reply`, `environment/add` and `environment/list`, with
 * approvals as elicitation, progress notifications, and cancellation that interrupts the turn
 * and still answers the call.
 */
export function createMcpServer(options: McpServerOptions): McpServer {
  const logger = options.logger ?? silentLogger;
  const server = new McpServer(
    { name: 'codex-multienv-mcp', title: 'Codex (multi-environment)', version: options.version },
    { capabilities: { tools: { listChanged: false }, logging: {} } },
  );
  // Turn interrupters by tools/call request id. The SDK's own cancellation handler would abort
  // the request and drop its response; ours interrupts the turn and lets the call be answered.
  const interrupters = new Map<string | number, AbortController>();
  server.server.setNotificationHandler(CancelledNotificationSchema, (notification) => {
    const requestId = notification.params.requestId;
    if (requestId === undefined) return;
    const controller = interrupters.get(requestId);
    logger.info('tool call cancelled by the client', { requestId, reason: notification.params.reason, running: controller !== undefined });
    controller?.abort(new Error(notification.params.reason ?? 'cancelled by the client'));
  });

  const runTurn = async (extra: Extra, run: (callbacks: TurnCallbacks) => Promise<TurnOutcome>, knownThreadId?: string): Promise<CallToolResult> => {
    const controller = new AbortController();
    interrupters.set(extra.requestId, controller);
    const onClientGone = (): void => controller.abort(new Error('the MCP client went away'));
    extra.signal.addEventListener('abort', onClientGone, { once: true });
    let threadId: string | undefined = knownThreadId;
    let turnId: string | undefined;
    const report = progressReporter(extra, { codexEvents: options.codexEvents ?? false, logger });
    try {
      const approver = new ElicitationApprover({ server: server.server, timeoutMs: options.approvalTimeoutMs, logger, toolCallId: extra.requestId, turnId: () => turnId });
      const outcome = await run({
        signal: controller.signal,
        approver,
        onThread: (id, turn) => {
          threadId = id;
          turnId = turn;
          report.started(id, turn);
        },
        onEvent: (event) => report.event(event),
      });
      report.finished(outcome);
      return outcomeResult(outcome);
    } catch (error) {
      if (error instanceof ThreadNotFoundError) return threadResult(error.threadId, error.message, true);
      if (threadId !== undefined) return threadResult(threadId, errorMessage(error), true);
      return plainError(errorMessage(error));
    } finally {
      interrupters.delete(extra.requestId);
      extra.signal.removeEventListener('abort', onClientGone);
    }
  };

  server.registerTool(
    'codex',
    {
      title: 'Codex',
      description:
        'Run a Codex session: starts a thread and runs its first turn. Commands, patches and file reads run in the selected environments (this machine, remote hosts, containers). Returns the final agent message and the threadId to continue with codex-reply.',
      inputSchema: CodexArgsSchema,
      outputSchema: ThreadResultSchema,
    },
    (args, extra) =>
      runTurn(extra, (callbacks) =>
        options.threads.startThread(
          {
            prompt: args.prompt,
            model: args.model,
            profile: args.profile,
            cwd: args.cwd,
            approvalPolicy: args['approval-policy'],
            sandbox: args.sandbox,
            config: args.config,
            baseInstructions: args['base-instructions'],
            developerInstructions: args['developer-instructions'],
            compactPrompt: args['compact-prompt'],
            environments: args.environments,
          },
          callbacks,
        ),
      ),
  );

  server.registerTool(
    'codex-reply',
    {
      title: 'Codex Reply',
      description: 'Continue a Codex thread by providing the thread id and the next prompt. Optionally pick environments for this turn only, or change the sticky ones.',
      inputSchema: CodexReplyArgsSchema,
      outputSchema: ThreadResultSchema,
    },
    (args, extra) => {
      const threadId = args.threadId ?? args.conversationId;
      if (threadId === undefined || threadId.length === 0) return plainError('Failed to parse thread_id: either threadId or conversationId must be provided');
      return runTurn(extra, (callbacks) =>
        options.threads.reply(
          {
            threadId,
            prompt: args.prompt,
            environments: args.environments,
            stickyEnvironments: args.stickyEnvironments,
          },
          callbacks,
        ),
        threadId,
      );
    },
  );

  server.registerTool(
    'environment/add',
    {
      title: 'Add environment',
      description:
        'Register (or replace) an execution environment at run time: a websocket exec-server (`url`) or a command that speaks the exec-server protocol on its stdio (`program`, e.g. ssh). It connects lazily on first use.',
      inputSchema: EnvironmentAddArgsSchema,
      outputSchema: { environment: EnvironmentEntryOutputSchema },
    },
    async (args, extra) => {
      const id = args.id ?? args.environmentId;
      if (args.id !== undefined && args.environmentId !== undefined && args.id !== args.environmentId) return plainError('environment/add: id and environmentId disagree');
      if (args.url !== undefined && args.execServerUrl !== undefined && args.url !== args.execServerUrl) return plainError('environment/add: url and execServerUrl disagree');
      if (id === undefined) return plainError('environment/add: `id` (or `environmentId`) is required');
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
        if (entry.permissions !== undefined) options.threads.checkPermissions(entry.permissions);
        if (entry.program !== undefined && options.allowRuntimeProgramEnvironments !== true) {
          const approver = new ElicitationApprover({ server: server.server, timeoutMs: options.approvalTimeoutMs, logger, toolCallId: extra.requestId });
          const decision = await approver.request(
            { kind: 'exec', threadId: '', callId: 'environment/add', environmentId: id, cwd: entry.cwd ?? '(server cwd)', command: [entry.program, ...(entry.args ?? [])], reason: `environment/add: register environment \`${id}\` that runs this command on this machine` },
            extra.signal,
          );
          if (decision.decision !== 'approved' && decision.decision !== 'approved_for_session') {
            return plainError(`environment/add: registering a program environment needs approval (or multienv.allow_runtime_program_environments = true): ${'reason' in decision ? decision.reason : 'denied'}`);
          }
        }
        const environment = await options.registry.add(entry);
        const description = { ...environment.describe(), ...options.threads.environmentPolicy(environment), isDefault: false };
        return { content: [{ type: 'text', text: JSON.stringify(description) }], structuredContent: { environment: description } };
      } catch (error) {
        return plainError(`environment/add: ${errorMessage(error)}`);
      }
    },
  );

  server.registerTool(
    'environment/list',
    {
      title: 'List environments',
      description: 'Every environment with its kind, status (ready, pending, disconnected), last error and whether it is the default. Does not connect.',
      inputSchema: {},
      outputSchema: { environments: z.array(EnvironmentEntryOutputSchema) },
    },
    () => {
      const environments = options.registry.describe().map((description) => ({ ...description, ...options.threads.environmentPolicy(description) }));
      return { content: [{ type: 'text', text: JSON.stringify(environments, null, 2) }], structuredContent: { environments } };
    },
  );

  return server;
}

/**
 * Serves `server` over a pair of streams (the composition root passes stdin/stdout). Resolves once
 * connected; `closed` resolves when the input ends or the transport closes.
 */
export async function serveOverStdio(server: McpServer, input: Readable, output: Writable): Promise<{ closed: Promise<void> }> {
  const transport = new StdioServerTransport(input.pipe(nonObjectResultsAsErrors()), output);
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    input.once('end', () => resolve());
  });
  await server.connect(transport);
  return { closed };
}

const ResponseLineSchema = z.looseObject({ id: z.union([z.string(), z.number()]), result: z.unknown() });

/**
 * The SDK drops a response whose `result` is not an object (e.g. an approval answered with a bare
 * `"approved"`), which would leave the request waiting until its timeout. This filter turns such a
 * response into an error response, which the waiting request then sees at once (an approval: a
 * denial).
 */
function nonObjectResultsAsErrors(): Transform {
  let pending = '';
  const fix = (line: string): string => {
    if (!line.includes('"result"')) return line;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return line;
    }
    const response = ResponseLineSchema.safeParse(value);
    if (!response.success || 'method' in response.data) return line;
    const result = response.data.result;
    if (typeof result === 'object' && result !== null && !Array.isArray(result)) return line;
    return JSON.stringify({ jsonrpc: '2.0', id: response.data.id, error: { code: -32600, message: `the result must be an object, got ${JSON.stringify(result)}` } });
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      callback(null, lines.map((line) => `${fix(line)}\n`).join(''));
    },
    flush(callback) {
      callback(null, pending.length > 0 ? fix(pending) : '');
    },
  });
}
