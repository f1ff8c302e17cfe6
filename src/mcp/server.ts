import type { Readable, Writable } from 'node:stream';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { CancelledNotificationSchema, ErrorCode, McpError, type CallToolResult, type ServerNotification, type ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { buildEnvironmentSpec, type EnvironmentEntry } from '../config/environment-spec.js';
import type { EnvironmentRegistry } from '../environments/registry.js';
import type { ThreadManager } from '../session/thread-manager.js';
import { errorMessage, type LocalError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { ElicitationApprover } from './elicitation-approver.js';
import { mcpLogForwarder } from './logging.js';
import { McpStdioTransport, withSdkWarningsLogged, type McpStdioTransportOptions } from './stdio-transport.js';
import { TurnProgressSchema } from '../protocol/status.js';
import { WaitMsSchema, registerOpsTools } from './ops-tools.js';
import { TASK_CAPABILITIES, TurnTaskStore, createTurnTask, routeTaskCalls } from './tasks.js';
import { toolNames } from './tool-names.js';
import { answerWithin, clientCancellation, isClientTimeout, plainError, startTurnCall, type TurnCallContext, type TurnRun } from './turn-call.js';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const EnvironmentSelectionSchema = z
  .object({
    id: z.string().describe('Environment id (as the environment list tool shows).'),
    cwd: z.string().optional().describe('Absolute working directory on that environment; defaults to the thread cwd (local) or the environment’s own.'),
    permissions: z
      .string()
      .optional()
      .describe('Permission profile for this environment in this thread ([permissions.NAME] or :read-only, :workspace, :danger-full-access); defaults to the environment’s own, else the thread’s.'),
  })
  .strict();

/** `{threadId, content}` as the old server answered, plus what a call answered before its turn ended carries. */
const ThreadResultSchema = {
  threadId: z.string(),
  content: z.string(),
  status: z.literal('running').optional().describe('Present when the call answered before the turn finished (the wait budget ran out); the turn goes on.'),
  turnId: z.string().optional().describe('The running turn (with status "running").'),
  progress: TurnProgressSchema.optional().describe('What the running turn has done so far (with status "running").'),
};

/** Default wait budget of `codex`/`codex-reply` when neither the call nor the config sets one: below the ~60 s many clients allow a call. */
export const DEFAULT_WAIT_MS = 50_000;

const waitMsArgument = WaitMsSchema.optional().describe(
  'Answer after at most this many milliseconds: when the turn is not done by then, the call returns its threadId with status "running" and the progress so far, and the turn goes on (see codex-status). Default: the server’s multienv.default_wait_sec.',
);

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
  waitMs: waitMsArgument,
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
  waitMs: waitMsArgument,
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
  /** How long `codex`/`codex-reply` wait for the turn when the call gives no `waitMs`. @default DEFAULT_WAIT_MS */
  defaultWaitMs?: number;
  /** Publish `environment_add`, … instead of `environment/add`, … @default false */
  portableToolNames?: boolean;
  /**
   * Receives the function that forwards log events to the client as MCP logging notifications
   * (the composition root tees its logger into it).
   */
  onLogForwarder?: (forward: ReturnType<typeof mcpLogForwarder>) => void;
}

/** The status tool's name (portable as it is). */
const CODEX_STATUS = 'codex-status';

/**
 * Builds the MCP face: `codex`, `codex-reply`, `environment/add`, `environment/remove` and
 * `environment/list`, with approvals as elicitation, progress notifications, and cancellation
 * that interrupts the turn (or, when the client's own time-out sent it, only ends the call) and
 * still answers the call; `codex-status`, `thread/list` and `turn/interrupt` for turns that
 * outlive their call; MCP Tasks for the turn tools; logging notifications. The SDK's tool-name
 * warnings go to `logger` at debug level instead of stderr.
 */
export function createMcpServer(options: McpServerOptions): McpServer {
  const logger = options.logger ?? silentLogger;
  return withSdkWarningsLogged(logger, () => buildMcpServer(options, logger));
}

function buildMcpServer(options: McpServerOptions, logger: Logger): McpServer {
  const names = toolNames(options.portableToolNames ?? false);
  const taskStore = new TurnTaskStore();
  const server = new McpServer(
    { name: 'codex-multienv-mcp', title: 'Codex (multi-environment)', version: options.version },
    { capabilities: { tools: { listChanged: false }, logging: {}, tasks: TASK_CAPABILITIES }, taskStore },
  );
  options.onLogForwarder?.(mcpLogForwarder(server.server));
  // The task store's expiry timers would keep the process alive after the client left.
  const onClose = server.server.onclose;
  server.server.onclose = () => {
    onClose?.();
    taskStore.cleanup();
  };
  // The client's cancellation of each open tools/call, by request id. The SDK's own cancellation
  // handler would abort the request and drop its response; ours interrupts the turn (or ends the
  // wait) and lets the call be answered. Entries are made when a call arrives (see routeTaskCalls),
  // before the SDK validates its arguments, so a cancellation right behind its call is not lost.
  const cancellations = new Map<string | number, AbortController>();
  // The SDK starts a request's handler two microtasks after it arrives and a notification's one
  // after: a cancellation read in the same chunk as its call is seen first. It is kept until the
  // chunk's microtasks have run.
  const early = new Map<string | number, LocalError>();
  server.server.setNotificationHandler(CancelledNotificationSchema, (notification) => {
    const requestId = notification.params.requestId;
    if (requestId === undefined) return;
    const controller = cancellations.get(requestId);
    const reason = clientCancellation(notification.params.reason);
    logger.info('tool call cancelled by the client', { requestId, reason: notification.params.reason, timedOut: isClientTimeout(reason), open: controller !== undefined });
    if (controller !== undefined) {
      controller.abort(reason);
      return;
    }
    early.set(requestId, reason);
    setImmediate(() => early.delete(requestId));
  });
  const trackCall = (requestId: string | number): (() => void) => {
    const controller = new AbortController();
    const cancelledAlready = early.get(requestId);
    if (cancelledAlready !== undefined) controller.abort(cancelledAlready);
    cancellations.set(requestId, controller);
    return () => {
      if (cancellations.get(requestId) === controller) cancellations.delete(requestId);
    };
  };
  const cancelSignal = (extra: Extra): AbortSignal => cancellations.get(extra.requestId)?.signal ?? new AbortController().signal;

  const turnContext: TurnCallContext = { server: server.server, logger, approvalTimeoutMs: options.approvalTimeoutMs, codexEvents: options.codexEvents ?? false };
  turnContext.progressOf = (threadId, turnId) => options.threads.progress(threadId, turnId);
  // A turn belongs to its thread, not to the call: the call's end (its wait budget, the client
  // going away, the client's own request time-out) never stops it; only an explicit cancellation,
  // `turn/interrupt` or `tasks/cancel` does. A client whose time-out is shorter than the wait
  // budget would otherwise lose every long turn, and never learn its thread.
  const runTurn = async (extra: Extra, run: TurnRun, waitMs: number | undefined, knownThreadId?: string): Promise<CallToolResult> => {
    const call = startTurnCall(turnContext, extra, run, knownThreadId);
    const cancelled = cancelSignal(extra);
    const ended = new AbortController();
    const onCancel = (): void => {
      if (!isClientTimeout(cancelled.reason)) {
        call.interrupt(errorMessage(cancelled.reason));
        return;
      }
      logger.info('the client timed out on the call; its turn goes on', { requestId: extra.requestId });
      ended.abort();
    };
    if (cancelled.aborted) onCancel();
    else cancelled.addEventListener('abort', onCancel, { once: true });
    try {
      return await answerWithin(
        call,
        waitMs ?? options.defaultWaitMs ?? DEFAULT_WAIT_MS,
        (started) => options.threads.progress(started.threadId, started.turnId),
        { status: CODEX_STATUS, interrupt: names.turnInterrupt },
        ended.signal,
      );
    } finally {
      cancelled.removeEventListener('abort', onCancel);
    }
  };

  const codexRun =
    (args: z.infer<z.ZodObject<typeof CodexArgsSchema>>): TurnRun =>
    (callbacks) =>
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
      );
  const replyRun =
    (args: z.infer<z.ZodObject<typeof CodexReplyArgsSchema>>, threadId: string): TurnRun =>
    (callbacks) =>
      options.threads.reply({ threadId, prompt: args.prompt, environments: args.environments, stickyEnvironments: args.stickyEnvironments }, callbacks);
  const replyThreadId = (args: { threadId?: string; conversationId?: string }): string | undefined => {
    const threadId = args.threadId ?? args.conversationId;
    return threadId === undefined || threadId.length === 0 ? undefined : threadId;
  };
  const MISSING_THREAD_ID = 'Failed to parse thread_id: either threadId or conversationId must be provided';

  // Task-augmented calls (MCP Tasks) of the two turn tools; plain calls take the usual path below.
  const parseArgs = <T extends z.ZodRawShape>(shape: T, name: string, args: unknown): z.infer<z.ZodObject<T>> => {
    const parsed = z.object(shape).safeParse(args);
    if (!parsed.success) throw new McpError(ErrorCode.InvalidParams, `Invalid arguments for tool ${name}: ${z.prettifyError(parsed.error)}`);
    return parsed.data;
  };
  routeTaskCalls(
    server,
    new Map([
      ['codex', (args: unknown, extra: Extra) => createTurnTask(turnContext, taskStore, extra, codexRun(parseArgs(CodexArgsSchema, 'codex', args)))],
      [
        'codex-reply',
        (args: unknown, extra: Extra) => {
          const parsed = parseArgs(CodexReplyArgsSchema, 'codex-reply', args);
          const threadId = replyThreadId(parsed);
          if (threadId === undefined) throw new McpError(ErrorCode.InvalidParams, MISSING_THREAD_ID);
          return createTurnTask(turnContext, taskStore, extra, replyRun(parsed, threadId), threadId);
        },
      ],
    ]),
    (extra) => trackCall(extra.requestId),
  );

  server.registerTool(
    'codex',
    {
      title: 'Codex',
      description:
        'Run a Codex session: starts a thread and runs its first turn. Commands, patches and file reads run in the selected environments (this machine, remote hosts, containers). Returns the final agent message and the threadId to continue with codex-reply. A turn that takes longer than the wait budget (waitMs) goes on in the background: the call then returns its threadId with status "running" (see codex-status).',
      inputSchema: CodexArgsSchema,
      outputSchema: ThreadResultSchema,
    },
    (args, extra) => runTurn(extra, codexRun(args), args.waitMs),
  );

  server.registerTool(
    'codex-reply',
    {
      title: 'Codex Reply',
      description:
        'Continue a Codex thread by providing the thread id and the next prompt. Optionally pick environments for this turn only, or change the sticky ones. Like codex, answers with status "running" when the turn outlasts waitMs.',
      inputSchema: CodexReplyArgsSchema,
      outputSchema: ThreadResultSchema,
    },
    (args, extra) => {
      const threadId = replyThreadId(args);
      if (threadId === undefined) return plainError(MISSING_THREAD_ID);
      return runTurn(extra, replyRun(args, threadId), args.waitMs, threadId);
    },
  );

  server.registerTool(
    names.environmentAdd,
    {
      title: 'Add environment',
      description:
        'Register (or replace) an execution environment at run time: a websocket exec-server (`url`) or a command that speaks the exec-server protocol on its stdio (`program`, e.g. ssh). It connects lazily on first use.',
      inputSchema: EnvironmentAddArgsSchema,
      outputSchema: { environment: EnvironmentEntryOutputSchema },
    },
    async (args, extra) => {
      const id = args.id ?? args.environmentId;
      if (args.id !== undefined && args.environmentId !== undefined && args.id !== args.environmentId) return plainError(`${names.environmentAdd}: id and environmentId disagree`);
      if (args.url !== undefined && args.execServerUrl !== undefined && args.url !== args.execServerUrl) return plainError(`${names.environmentAdd}: url and execServerUrl disagree`);
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
        if (entry.permissions !== undefined) options.threads.checkPermissions(entry.permissions);
        // The registry builds the same spec from the same entry (a pure function): what is shown
        // for approval is what is registered.
        const spec = buildEnvironmentSpec(entry);
        if (spec.kind === 'stdio' && options.allowRuntimeProgramEnvironments !== true) {
          const approver = new ElicitationApprover({ server: server.server, timeoutMs: options.approvalTimeoutMs, logger, toolCallId: extra.requestId });
          const decision = await approver.request(
            { kind: 'exec', threadId: '', callId: 'environment/add', environmentId: id, cwd: spec.cwd ?? '(server cwd)', command: [spec.program, ...spec.args], reason: `environment/add: register environment \`${id}\` that runs this command on this machine` },
            extra.signal,
          );
          if (decision.decision !== 'approved' && decision.decision !== 'approved_for_session') {
            return plainError(`${names.environmentAdd}: registering a program environment needs approval (or multienv.allow_runtime_program_environments = true): ${'reason' in decision ? decision.reason : 'denied'}`);
          }
        }
        const environment = await options.registry.add(entry);
        const description = { ...environment.describe(), ...options.threads.environmentPolicy(environment), isDefault: false };
        return { content: [{ type: 'text', text: JSON.stringify(description) }], structuredContent: { environment: description } };
      } catch (error) {
        return plainError(`${names.environmentAdd}: ${errorMessage(error)}`);
      }
    },
  );

  server.registerTool(
    names.environmentRemove,
    {
      title: 'Remove environment',
      description: `Remove an environment added with ${names.environmentAdd} and close its connection. Refused while a turn runs in it, and for \`local\` and the environments of environments.toml or CODEX_EXEC_SERVER_URL. A thread that still names it fails its next turn with a clear error until it is added again or the thread picks other environments.`,
      inputSchema: { id: z.string().describe(`The environment id, as ${names.environmentAdd} registered it.`) },
      outputSchema: {
        id: z.string(),
        restored: EnvironmentEntryOutputSchema.nullable().describe(`The environments.toml environment of the same id that the removed one had replaced (${names.environmentAdd} with a configured id), in effect again; null when there was none.`),
      },
      annotations: { destructiveHint: true, idempotentHint: false },
    },
    async (args) => {
      try {
        const { removed, restored } = await options.threads.removeEnvironment(args.id);
        const restoredEntry = restored === undefined ? undefined : options.registry.describe().find((entry) => entry.id === restored.id);
        const restoredDescription = restoredEntry === undefined ? null : { ...restoredEntry, ...options.threads.environmentPolicy(restoredEntry) };
        const text = `Removed environment \`${removed.id}\` (${removed.endpoint}) and closed its connection.${restored === undefined ? '' : ` The environment of that id from ${restored.source} (${restored.endpoint}) is in effect again.`}`;
        return { content: [{ type: 'text', text }], structuredContent: { id: removed.id, restored: restoredDescription } };
      } catch (error) {
        return plainError(`${names.environmentRemove}: ${errorMessage(error)}`);
      }
    },
  );

  server.registerTool(
    names.environmentList,
    {
      title: 'List environments',
      description:
        'Every environment with its kind, status (ready, pending, disconnected), last error, whether it is the default, and the MCP servers of loaded threads that run in it (mcpServers: state, tools, error). Does not connect.',
      inputSchema: {},
      outputSchema: { environments: z.array(EnvironmentEntryOutputSchema) },
    },
    () => {
      const mcpServers = options.threads.mcpServerStatuses();
      const environments = options.registry.describe().map((description) => ({
        ...description,
        ...options.threads.environmentPolicy(description),
        mcpServers: mcpServers.filter((server) => server.environmentId === description.id),
      }));
      return { content: [{ type: 'text', text: JSON.stringify(environments, null, 2) }], structuredContent: { environments } };
    },
  );

  registerOpsTools(server, { threads: options.threads, names: { status: CODEX_STATUS, threadList: names.threadList, threadClose: names.threadClose, turnInterrupt: names.turnInterrupt }, cancelSignal });

  return server;
}

/**
 * Serves `server` over a pair of streams (the composition root passes stdin/stdout) with a bound on
 * each message read (see {@link McpStdioTransport}). Resolves once connected; `closed` resolves
 * when the input ends or the transport closes.
 */
export async function serveOverStdio(server: McpServer, input: Readable, output: Writable, options: McpStdioTransportOptions): Promise<{ closed: Promise<void> }> {
  const transport = new McpStdioTransport(input, output, options);
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
  });
  await server.connect(transport);
  return { closed };
}
