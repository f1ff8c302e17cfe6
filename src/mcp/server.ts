import type { Readable, Writable } from 'node:stream';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JsonSchemaType, JsonSchemaValidator, jsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv-provider.js';
import { ErrorCode, JSONRPCRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { EnvironmentRegistry } from '../environments/registry.js';
import type { ThreadManager } from '../session/thread-manager.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type LogEntry, type Logger } from '../util/logger.js';
import { CallCancellations } from './cancellations.js';
import { environmentTools } from './environment-tools.js';
import { mcpLogForwarder } from './logging.js';
import { answerWhileStarting, type HeldInput, type StartingInput } from './early-answers.js';
import { LEGACY_CAPABILITIES, serverInfo } from './handshake.js';
import { EraSplitTransport } from './era-split-transport.js';
import { RequestStateCodec } from './input-required.js';
import { answerDiscover } from './modern-envelope.js';
import { ModernEra } from './modern-era.js';
import { ModernTasks } from './modern-tasks.js';
import { McpStdioTransport, type McpStdioTransportOptions } from './stdio-transport.js';
import { TurnProgressSchema } from '../protocol/status.js';
import { WaitMsSchema, opsTools } from './ops-tools.js';
import { TaskRuns } from './task-runs.js';
import { RecordTaskStore, createTurnTask } from './tasks.js';
import { McpWireError } from './sdk-workarounds.js';
import { toolNames, type ToolNames } from './tool-names.js';
import { defineTool, serveTools, type McpTool, type ToolExtra } from './tools.js';
import { answerWithin, isClientTimeout, plainError, startTurnCall, type TurnCallContext, type TurnRun } from './turn-call.js';

const EnvironmentSelectionSchema = z
  .object({
    id: z.string().describe('Environment id (as the environment list tool shows).'),
    cwd: z.string().optional().describe('Absolute working directory on that environment; defaults to the thread cwd (local) or the environment’s own.'),
    permissions: z
      .string()
      .optional()
      .describe(
        'Permission profile for this environment in this thread ([permissions.NAME] or :read-only, :workspace, :danger-full-access); defaults to the environment’s own, else the thread’s.',
      ),
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
  stickyEnvironments: z.array(EnvironmentSelectionSchema).optional().describe('Replaces the thread’s sticky environments for this and later turns.'),
  waitMs: waitMsArgument,
};

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
   * The key that seals modern `requestState` values: the thread store's shared secret, so a
   * client's retry verifies and continues its call on any server process sharing the store.
   * @default a random key of this process (a retry continues only here)
   */
  requestStateKey?: Buffer;
  /**
   * Receives the function that forwards log events to the clients as MCP logging notifications,
   * legacy (`logging/setLevel`) and modern (per-request level); the composition root tees its logger into it.
   */
  onLogForwarder?: (forward: (entry: LogEntry) => void) => void;
}

/** The status tool's name (portable as it is). */
const CODEX_STATUS = 'codex-status';

/**
 * Answers a client's first requests on stdio while the server is still starting (`initialize`,
 * `server/discover`), exactly as the face {@link createMcpServer} builds will, and holds every
 * other message for it; see early-answers.ts. `held` is what the relay in front of this process
 * read and answered before it. The composition root calls this first, and hands the input over
 * once the face is built.
 */
export function answerWhileServerStarts(input: Readable, output: Writable, version: string, held?: HeldInput): StartingInput {
  return answerWhileStarting(input, output, {
    version,
    ...(held === undefined ? {} : { held }),
    // Every server/discover, its errors too (which need the schemas the relay goes without).
    fallback: (message) => {
      const request = JSONRPCRequestSchema.safeParse(message);
      return request.success && request.data.method === 'server/discover' ? answerDiscover(request.data, serverInfo(version), true) : undefined;
    },
  });
}

/**
 * The SDK's own validator (Ajv), made when first asked for: the SDK uses it only to check a
 * client's answer to a form elicitation, and building Ajv with its formats is a noticeable part
 * of a cold start that `initialize` does not need.
 */
class LazyJsonSchemaValidator implements jsonSchemaValidator {
  #ajv: AjvJsonSchemaValidator | undefined;

  getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
    this.#ajv ??= new AjvJsonSchemaValidator();
    return this.#ajv.getValidator<T>(schema);
  }
}

/** The MCP face: the SDK server for legacy (2025) clients and the modern (2026-07-28) era beside it. */
export interface McpFace {
  legacy: Server;
  modern: ModernEra;
  /** Closes the connection (both eras share it). */
  close(): Promise<void>;
}

/**
 * Builds the MCP face: `codex`, `codex-reply`, `environment/add`, `environment/remove` and
 * `environment/list`, with approvals as elicitation, progress notifications, and cancellation
 * that interrupts the turn (or, when the client's own time-out sent it, only ends the call) and
 * still answers the call; `codex-status`, `thread/list` and `turn/interrupt` for turns that
 * outlive their call; MCP Tasks for the turn tools; logging notifications. The same tools are served to modern clients (see modern-era.ts).
 */
export function createMcpServer(options: McpServerOptions): McpFace {
  const logger = options.logger ?? silentLogger;
  const names = toolNames(options.portableToolNames ?? false);
  const taskRuns = new TaskRuns(options.threads.tasks, (threadId, turnId) => options.threads.progress(threadId, turnId));
  const server = new Server(serverInfo(options.version), {
    capabilities: LEGACY_CAPABILITIES,
    taskStore: new RecordTaskStore(taskRuns),
    jsonSchemaValidator: new LazyJsonSchemaValidator(),
  });
  const legacyLogs = mcpLogForwarder(server);
  const cancellations = new CallCancellations(server, logger);
  const cancelSignal = (extra: ToolExtra): AbortSignal => extra.cancelled ?? cancellations.signal(extra.requestId);
  const tools = [
    ...turnTools({ options, server, logger, names, taskRuns, cancelSignal }),
    ...environmentTools({
      server,
      threads: options.threads,
      registry: options.registry,
      names,
      logger,
      approvalTimeoutMs: options.approvalTimeoutMs,
      allowRuntimeProgramEnvironments: options.allowRuntimeProgramEnvironments ?? false,
    }),
    ...opsTools({
      threads: options.threads,
      names: { status: CODEX_STATUS, threadList: names.threadList, threadClose: names.threadClose, turnInterrupt: names.turnInterrupt },
      cancelSignal,
    }),
  ];
  const table = serveTools(server, tools, (requestId) => cancellations.track(requestId));
  const modern = new ModernEra({
    tools: table,
    serverInfo: serverInfo(options.version),
    approvalTimeoutMs: options.approvalTimeoutMs,
    logger,
    tasks: new ModernTasks({ runs: taskRuns, approvalTimeoutMs: options.approvalTimeoutMs, logger }),
    ...(options.requestStateKey === undefined
      ? {}
      : {
          stateCodec: new RequestStateCodec({ key: options.requestStateKey }),
          stored: {
            tasks: options.threads.tasks,
            waitForTurn: (threadId, turnId, timeoutMs, signal) => options.threads.waitForTurns(threadId, { turnId, timeoutMs, signal }),
            defaultWaitMs: options.defaultWaitMs ?? DEFAULT_WAIT_MS,
            names: { status: CODEX_STATUS, interrupt: names.turnInterrupt },
          },
        }),
  });
  options.onLogForwarder?.((entry) => {
    legacyLogs(entry);
    modern.forwardLog(entry);
  });
  return { legacy: server, modern, close: () => server.close() };
}

/** What the turn tools share with the rest of the server. */
interface TurnToolsContext {
  options: McpServerOptions;
  server: Server;
  logger: Logger;
  names: ToolNames;
  taskRuns: TaskRuns;
  /** Aborts when the client cancels the call. */
  cancelSignal: (extra: ToolExtra) => AbortSignal;
}

/** `codex` and `codex-reply`: a turn per call, answered within the wait budget, or run as an MCP task. */
function turnTools({ options, server, logger, names, taskRuns, cancelSignal }: TurnToolsContext): McpTool[] {
  const turnContext: TurnCallContext = { server, logger, approvalTimeoutMs: options.approvalTimeoutMs, codexEvents: options.codexEvents ?? false };
  turnContext.progressOf = (threadId, turnId) => options.threads.progress(threadId, turnId);
  // A turn belongs to its thread, not to the call: the call's end (its wait budget, the client
  // going away, the client's own request time-out) never stops it; only an explicit cancellation,
  // `turn/interrupt` or `tasks/cancel` does. A client whose time-out is shorter than the wait
  // budget would otherwise lose every long turn, and never learn its thread.
  const runTurn = async (extra: ToolExtra, run: TurnRun, waitMs: number | undefined, knownThreadId?: string): Promise<CallToolResult> => {
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
        async (started) => {
          await options.threads.flush(started.threadId);
          return options.threads.progress(started.threadId, started.turnId);
        },
        { status: CODEX_STATUS, interrupt: names.turnInterrupt },
        ended.signal,
      );
    } finally {
      cancelled.removeEventListener('abort', onCancel);
    }
  };

  const codexRun =
    (args: z.infer<z.ZodObject<typeof CodexArgsSchema>>): TurnRun =>
    (call) =>
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
        call,
      );
  const replyRun =
    (args: z.infer<z.ZodObject<typeof CodexReplyArgsSchema>>, threadId: string): TurnRun =>
    (call) =>
      options.threads.reply({ threadId, prompt: args.prompt, environments: args.environments, stickyEnvironments: args.stickyEnvironments }, call);
  const replyThreadId = (args: { threadId?: string; conversationId?: string }): string | undefined => {
    const threadId = args.threadId ?? args.conversationId;
    return threadId === undefined || threadId.length === 0 ? undefined : threadId;
  };
  const MISSING_THREAD_ID = 'Failed to parse thread_id: either threadId or conversationId must be provided';

  return [
    defineTool({
      name: 'codex',
      title: 'Codex',
      description:
        'Run a Codex session: starts a thread and runs its first turn. Commands, patches and file reads run in the selected environments (this machine, remote hosts, containers). Returns the final agent message and the threadId to continue with codex-reply. A turn that takes longer than the wait budget (waitMs) goes on in the background: the call then returns its threadId with status "running" (see codex-status).',
      input: z.object(CodexArgsSchema),
      output: z.object(ThreadResultSchema),
      run: (args, extra) => runTurn(extra, codexRun(args), args.waitMs),
      runAsTask: (args, extra) => createTurnTask(taskRuns, turnContext, extra, codexRun(args)),
      startTask: (args, extra) => taskRuns.start(turnContext, extra, codexRun(args), { form: 'extension' }),
    }),
    defineTool({
      name: 'codex-reply',
      title: 'Codex Reply',
      description:
        'Continue a Codex thread by providing the thread id and the next prompt. Optionally pick environments for this turn only, or change the sticky ones. Like codex, answers with status "running" when the turn outlasts waitMs.',
      input: z.object(CodexReplyArgsSchema),
      output: z.object(ThreadResultSchema),
      run: (args, extra) => {
        const threadId = replyThreadId(args);
        if (threadId === undefined) return plainError(MISSING_THREAD_ID);
        return runTurn(extra, replyRun(args, threadId), args.waitMs, threadId);
      },
      runAsTask: (args, extra) => {
        const threadId = replyThreadId(args);
        if (threadId === undefined) throw new McpWireError(ErrorCode.InvalidParams, MISSING_THREAD_ID);
        return createTurnTask(taskRuns, turnContext, extra, replyRun(args, threadId), threadId);
      },
      startTask: async (args, extra) => {
        const threadId = replyThreadId(args);
        if (threadId === undefined) return { result: plainError(MISSING_THREAD_ID) };
        return taskRuns.start(turnContext, extra, replyRun(args, threadId), { form: 'extension', knownThreadId: threadId });
      },
    }),
  ];
}

/**
 * Serves both eras of `face` over a pair of streams (the composition root passes stdin/stdout)
 * with a bound on each message read (see {@link McpStdioTransport}): modern requests go to
 * `face.modern`, everything else to the SDK server as before. Resolves once connected; `closed`
 * resolves when the input ends or the transport closes.
 */
export async function serveOverStdio(face: McpFace, input: Readable, output: Writable, options: McpStdioTransportOptions): Promise<{ closed: Promise<void> }> {
  return serveOver(face, new McpStdioTransport(input, output, options));
}

/**
 * Serves both eras over any transport (stdio, or an in-memory pair in tests): modern messages go
 * to the modern era, everything else to the SDK server. Resolves once connected; `closed` when
 * the transport closes.
 */
export async function serveOver(face: McpFace, inner: Transport): Promise<{ closed: Promise<void> }> {
  const transport = new EraSplitTransport(inner, face.modern);
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
  });
  await face.legacy.connect(transport);
  return { closed };
}
