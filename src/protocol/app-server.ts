import { z } from 'zod';
import { methodSpec as method, notificationSpec as notification } from './jsonrpc.js';

/**
 * The part of Codex's app-server protocol (JSON-RPC v2 over stdio, codex-cli 0.169.0) that the
 * Codex turn engine uses: the handshake, thread and turn methods, the item/turn notifications it
 * folds into turn events, and the approval requests the server sends the client. Schemas only, no
 * I/O. Inbound objects are loose (Codex adds fields freely) and optional fields accept `null`
 * (Codex sends explicit nulls); outbound params are built exactly as written here.
 */

/** One environment of a thread or turn selection, as Codex takes it. */
export const AppServerEnvironmentSchema = z.object({ environmentId: z.string(), cwd: z.string() });

/** When Codex asks before acting (`AskForApproval`; `on-failure` is not on the 0.169 wire). */
export const AppServerApprovalPolicySchema = z.enum(['untrusted', 'on-request', 'never']);

const Thread = z.looseObject({ id: z.string().min(1) });
const TurnError = z.looseObject({ message: z.string() });
const Turn = z.looseObject({
  id: z.string().min(1),
  status: z.enum(['completed', 'interrupted', 'failed', 'inProgress']),
  error: TurnError.nullish(),
});

/**
 * Notifications the engine never reads, most of them sent many times a turn (streamed deltas,
 * status and rate-limit chatter). The client opts out of them in `initialize`, so Codex does not
 * write them and this server does not read and check them.
 */
export const APP_SERVER_UNREAD_NOTIFICATIONS = [
  'thread/started',
  'thread/status/changed',
  'thread/readState/changed',
  'thread/settings/updated',
  'turn/started',
  'turn/diff/updated',
  'item/agentMessage/delta',
  'item/plan/delta',
  'item/reasoning/summaryTextDelta',
  'item/reasoning/summaryPartAdded',
  'item/reasoning/textDelta',
  'item/commandExecution/outputDelta',
  'item/commandExecution/terminalInteraction',
  'item/fileChange/outputDelta',
  'item/fileChange/patchUpdated',
  'item/mcpToolCall/progress',
  'command/exec/outputDelta',
  'process/outputDelta',
  'account/rateLimits/updated',
  'remoteControl/status/changed',
  'mcpServer/startupStatus/updated',
  'hook/started',
  'hook/completed',
  'skills/changed',
  'fs/changed',
] as const;

/** `initialize`: the handshake; `experimentalApi` unlocks the environment fields. */
export const InitializeMethod = method(
  'initialize',
  z.object({
    clientInfo: z.object({ name: z.string(), title: z.string().nullable(), version: z.string() }),
    capabilities: z.object({ experimentalApi: z.boolean(), requestAttestation: z.boolean(), optOutNotificationMethods: z.array(z.string()) }),
  }),
  z.looseObject({ userAgent: z.string() }),
);

/** `initialized`: the client is ready (after the `initialize` answer). */
export const InitializedNotification = notification('initialized', z.object({}).optional());

/** `thread/start`: a new Codex thread with the settings every later turn keeps. */
export const ThreadStartMethod = method(
  'thread/start',
  z.object({
    cwd: z.string(),
    model: z.string(),
    approvalPolicy: AppServerApprovalPolicySchema,
    sandbox: z.enum(['read-only', 'workspace-write', 'danger-full-access']),
    baseInstructions: z.string().optional(),
    developerInstructions: z.string().optional(),
    /** Config overrides by dotted key, as `-c` takes them. */
    config: z.record(z.string(), z.unknown()),
    environments: z.array(AppServerEnvironmentSchema),
  }),
  z.looseObject({ thread: Thread }),
);

/** `thread/resume`: loads a stored Codex thread (its rollout in `$CODEX_HOME`) into this app-server. */
export const ThreadResumeMethod = method(
  'thread/resume',
  z.object({ threadId: z.string(), config: z.record(z.string(), z.unknown()), excludeTurns: z.boolean() }),
  z.looseObject({ thread: Thread }),
);

/**
 * `turn/start`: one turn; `environments` replaces the thread's selection (sent on every turn).
 * `clientUserMessageId` comes back as the turn's user message `clientId`, in the rollout too: it
 * finds the turn again after a restart (see {@link ThreadTurnsListMethod}).
 */
export const TurnStartMethod = method(
  'turn/start',
  z.object({
    threadId: z.string(),
    clientUserMessageId: z.string(),
    input: z.array(z.object({ type: z.literal('text'), text: z.string(), text_elements: z.array(z.never()) })),
    environments: z.array(AppServerEnvironmentSchema),
  }),
  z.looseObject({ turn: Turn }),
);

/**
 * `thread/turns/list`: a stored thread's turns from its rollout, newest first by default, without
 * loading the thread; the `summary` view keeps each turn's user message and its final agent message.
 */
export const ThreadTurnsListMethod = method(
  'thread/turns/list',
  z.object({ threadId: z.string(), limit: z.number().int().positive(), sortDirection: z.literal('desc'), itemsView: z.literal('summary') }),
  z.looseObject({
    data: z.array(
      Turn.extend({
        items: z.array(
          z.looseObject({
            type: z.string(),
            /** `userMessage`: the turn's `clientUserMessageId`. */
            clientId: z.string().nullish(),
            /** `agentMessage` */
            text: z.string().optional(),
          }),
        ),
      }),
    ),
  }),
);

/**
 * `environment/add` (experimental): registers or replaces (upsert) an exec-server environment in
 * this app-server; it connects in the background, on its own.
 */
export const EnvironmentAddMethod = method('environment/add', z.object({ environmentId: z.string(), execServerUrl: z.string(), authBearerToken: z.string() }), z.unknown());

/** `turn/interrupt`: stops a running turn; it ends with `turn/completed` status `interrupted`. */
export const TurnInterruptMethod = method('turn/interrupt', z.object({ threadId: z.string(), turnId: z.string() }), z.unknown());

/** The item kinds the engine reads; any other item is passed over. */
export const AppServerItemSchema = z.looseObject({
  type: z.string(),
  id: z.string(),
  /** `agentMessage` */
  text: z.string().optional(),
  /** `commandExecution` / `fileChange` / `mcpToolCall` */
  status: z.string().optional(),
  /** `commandExecution` */
  exitCode: z.number().nullish(),
  /** `mcpToolCall` */
  server: z.string().optional(),
  /** `mcpToolCall` / `dynamicToolCall` */
  tool: z.string().optional(),
  /** `fileChange` */
  changes: z.array(z.looseObject({ path: z.string(), kind: z.looseObject({ type: z.string(), move_path: z.string().nullish() }), diff: z.string() })).optional(),
});
/** A thread item as the engine reads it. */
export type AppServerItem = z.infer<typeof AppServerItemSchema>;

const TurnScoped = { threadId: z.string(), turnId: z.string() };

/** `item/started` / `item/completed`. */
export const ItemStartedNotification = notification('item/started', z.looseObject({ ...TurnScoped, item: AppServerItemSchema }));
export const ItemCompletedNotification = notification('item/completed', z.looseObject({ ...TurnScoped, item: AppServerItemSchema }));

/** `turn/completed`: the turn's end and status. */
export const TurnCompletedNotification = notification('turn/completed', z.looseObject({ threadId: z.string(), turn: Turn }));

/** `turn/plan/updated`: the agent's plan (`update_plan`). */
export const TurnPlanUpdatedNotification = notification(
  'turn/plan/updated',
  z.looseObject({
    ...TurnScoped,
    explanation: z.string().nullish(),
    plan: z.array(z.looseObject({ step: z.string(), status: z.enum(['pending', 'inProgress', 'completed']) })),
  }),
);

/** `thread/tokenUsage/updated`: tokens of the last model request and of the thread. */
export const TokenUsageUpdatedNotification = notification(
  'thread/tokenUsage/updated',
  z.looseObject({
    ...TurnScoped,
    tokenUsage: z.looseObject({ total: z.looseObject({ totalTokens: z.number() }), last: z.looseObject({ totalTokens: z.number() }) }),
  }),
);

/** `error`: a model error of a turn; with `willRetry` Codex tries again. */
export const ErrorNotification = notification('error', z.looseObject({ ...TurnScoped, error: TurnError, willRetry: z.boolean() }));

/** `serverRequest/resolved`: a request Codex sent the client no longer needs an answer. */
export const ServerRequestResolvedNotification = notification('serverRequest/resolved', z.looseObject({ threadId: z.string(), requestId: z.union([z.string(), z.number()]) }));

/** A decision on a command or a file change. */
export const AppServerDecisionSchema = z.enum(['accept', 'acceptForSession', 'decline', 'cancel']);
/** A decision on a command or a file change. */
export type AppServerDecision = z.infer<typeof AppServerDecisionSchema>;

/** `item/commandExecution/requestApproval` (server → client). */
export const CommandApprovalMethod = method(
  'item/commandExecution/requestApproval',
  z.looseObject({
    ...TurnScoped,
    itemId: z.string(),
    environmentId: z.string().nullish(),
    command: z.string().nullish(),
    cwd: z.string().nullish(),
    reason: z.string().nullish(),
  }),
  z.object({ decision: AppServerDecisionSchema }),
);

/** `item/fileChange/requestApproval` (server → client); the changes came with the item's `item/started`. */
export const FileChangeApprovalMethod = method(
  'item/fileChange/requestApproval',
  z.looseObject({ ...TurnScoped, itemId: z.string(), reason: z.string().nullish() }),
  z.object({ decision: AppServerDecisionSchema }),
);

/**
 * Extra permissions as Codex asks for them (`RequestPermissionProfile`) and grants them
 * (`GrantedPermissionProfile`, the same shape): file-system access and network.
 */
export const AppServerPermissionProfileSchema = z.object({
  fileSystem: z
    .object({
      read: z.array(z.string()).nullish(),
      write: z.array(z.string()).nullish(),
      entries: z
        .array(
          z.looseObject({
            access: z.enum(['read', 'write', 'deny']),
            /** `path` (a path), `glob_pattern` (a pattern) or `special` (a named place such as the temp dir). */
            path: z.looseObject({ type: z.string(), path: z.string().optional(), pattern: z.string().optional(), value: z.looseObject({ kind: z.string() }).optional() }),
          }),
        )
        .nullish(),
      globScanMaxDepth: z.number().int().positive().nullish(),
    })
    .nullish(),
  network: z.object({ enabled: z.boolean().nullish() }).nullish(),
});
/** Extra permissions asked or granted. */
export type AppServerPermissionProfile = z.infer<typeof AppServerPermissionProfileSchema>;

/**
 * `item/permissions/requestApproval` (server → client): the model asks for more than the sandbox
 * allows. The answer grants a profile (nothing granted is a denial) for the turn or the session.
 */
export const PermissionsApprovalMethod = method(
  'item/permissions/requestApproval',
  z.looseObject({
    ...TurnScoped,
    itemId: z.string(),
    cwd: z.string(),
    environmentId: z.string().nullish(),
    permissions: AppServerPermissionProfileSchema,
    reason: z.string().nullish(),
  }),
  z.object({ permissions: AppServerPermissionProfileSchema, scope: z.enum(['turn', 'session']) }),
);

/**
 * `mcpServer/elicitation/request` (server → client): an MCP server of Codex's asks the user. Codex
 * asks before an MCP tool call this way too: a form with no fields whose `_meta` says
 * `codex_approval_kind: "mcp_tool_call"` and names the tool and its arguments.
 */
export const McpElicitationMethod = method(
  'mcpServer/elicitation/request',
  z.looseObject({
    threadId: z.string(),
    turnId: z.string().nullish(),
    serverName: z.string(),
    mode: z.string(),
    message: z.string().optional(),
    _meta: z
      .looseObject({
        codex_approval_kind: z.string().optional(),
        tool_name: z.string().optional(),
        /** The tool call's arguments (an object for every tool Codex calls). */
        tool_params: z.unknown(),
      })
      .nullish(),
  }),
  z.object({ action: z.enum(['accept', 'decline', 'cancel']), content: z.record(z.string(), z.unknown()).nullable() }),
);
