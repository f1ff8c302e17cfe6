import { z } from 'zod';

/**
 * The persisted thread file: JSON Lines, one record per line, each tagged with `type` and stamped
 * with `at` (ISO time). The first line is always the `thread` header; the rest are appended in
 * order as the thread runs. Schemas only, no I/O (the store is `session/thread-store.ts`).
 *
 * Lenient in, exact out: records are plain `z.object`s, so fields added by a newer version are
 * accepted and dropped on read, and a record is written exactly as its schema builds it. Record
 * types this version does not know are skipped by the reader with a warning (see
 * {@link THREAD_BODY_RECORD_TYPES}); items are kept whole because they are sent back to the model.
 */

/** The version written in the header of new thread files. */
export const THREAD_RECORD_VERSION = 1;

/** What a thread id may look like: safe as a file name on every platform, no path separators. */
export const THREAD_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/** A thread id (see {@link THREAD_ID_PATTERN}). */
export const ThreadIdSchema = z.string().regex(THREAD_ID_PATTERN, 'a thread id is 1-128 characters of A-Z a-z 0-9 _ -');

/** An ISO 8601 timestamp, as `Date.prototype.toISOString` writes it (offsets accepted on read). */
const Timestamp = z.iso.datetime({ offset: true });

/** When the model's tool calls need the user's approval (Codex `approval_policy`). */
export const ApprovalPolicySchema = z.enum(['untrusted', 'on-failure', 'on-request', 'never']);
/** One of {@link ApprovalPolicySchema}'s values. */
export type ApprovalPolicy = z.infer<typeof ApprovalPolicySchema>;

/** What tool calls may touch (Codex `sandbox_mode`). */
export const SandboxModeSchema = z.enum(['read-only', 'workspace-write', 'danger-full-access']);
/** One of {@link SandboxModeSchema}'s values. */
export type SandboxMode = z.infer<typeof SandboxModeSchema>;

/** What runs a thread's turns: our agent loop, or the real Codex (`codex app-server`). */
export const ThreadEngineSchema = z.enum(['builtin', 'codex']);
/** One of {@link ThreadEngineSchema}'s values. */
export type ThreadEngine = z.infer<typeof ThreadEngineSchema>;

/** The configuration a thread was started with; every later turn runs with it. */
export const ThreadConfigSchema = z.object({
  model: z.string(),
  modelProvider: z.string(),
  approvalPolicy: ApprovalPolicySchema,
  sandbox: SandboxModeSchema,
  /** The default permission profile, when the thread runs under one instead of {@link sandbox}. */
  permissions: z.string().optional(),
  cwd: z.string(),
  profile: z.string().optional(),
  baseInstructions: z.string().optional(),
  developerInstructions: z.string().optional(),
  compactPrompt: z.string().optional(),
  /** Codex `-c key=value` overrides, kept as given. */
  configOverrides: z.record(z.string(), z.unknown()),
  /** The thread's engine, chosen when it started and kept for life; absent (older files): `builtin`. */
  engine: ThreadEngineSchema.optional(),
});
/** The configuration a thread was started with. */
export type ThreadConfig = z.infer<typeof ThreadConfigSchema>;

/** One selected environment and the working directory the thread uses in it. */
export const ThreadEnvironmentSchema = z.object({
  id: z.string().min(1),
  cwd: z.string(),
  /** A permission profile for this environment in this thread (wins over the environment's own). */
  permissions: z.string().optional(),
});
/** One selected environment of a thread. */
export type ThreadEnvironment = z.infer<typeof ThreadEnvironmentSchema>;

/** An environment selection; empty means the thread has no environment access. */
const Environments = z.array(ThreadEnvironmentSchema);

/** How a turn ended. */
export const TurnStatusSchema = z.enum(['completed', 'failed', 'interrupted']);
/** How a turn ended. */
export type TurnStatus = z.infer<typeof TurnStatusSchema>;

/**
 * One Responses API input or output item (message, function_call, function_call_output,
 * custom_tool_call, custom_tool_call_output, reasoning) exactly as it is sent back to the model.
 * Kept whole and only loosely checked: `protocol/responses.ts` owns the item shapes.
 */
export const PersistedItemSchema = z.looseObject({ type: z.string() });
/** A persisted Responses API item. */
export type PersistedItem = z.infer<typeof PersistedItemSchema>;

/** The first line of every thread file. */
export const ThreadHeaderRecordSchema = z.object({
  type: z.literal('thread'),
  at: Timestamp,
  /** The format version of the file; readers of an older version skip record types they do not know. */
  version: z.number().int().positive(),
  threadId: ThreadIdSchema,
  createdAt: Timestamp,
  config: ThreadConfigSchema,
  /** The sticky environment selection the thread started with. */
  environments: Environments,
});
/** The first line of every thread file. */
export type ThreadHeaderRecord = z.infer<typeof ThreadHeaderRecordSchema>;

/** An instruction file sent to the model: the user's global one (no environment) or a project's AGENTS.md. */
export const InstructionFileSchema = z.object({
  /** The environment whose host it was read from; null for the user's global file on this server's host. */
  environmentId: z.string().nullable(),
  path: z.string(),
  /** Bytes sent (fewer than the file has when `truncated`). */
  bytes: z.number().int().min(0),
  truncated: z.boolean(),
});
/** An instruction file sent to the model. */
export type InstructionFile = z.infer<typeof InstructionFileSchema>;

/** A turn began: the user's prompt and the turn's effective environment selection. */
export const TurnStartedRecordSchema = z.object({
  type: z.literal('turn_started'),
  at: Timestamp,
  turnId: z.string().min(1),
  prompt: z.string(),
  environments: Environments,
});
/** A turn began. */
export type TurnStartedRecord = z.infer<typeof TurnStartedRecordSchema>;

/**
 * The instruction files read for a turn (the global AGENTS.md, each environment's project files),
 * written once they were read, after its `turn_started`.
 */
export const InstructionsRecordSchema = z.object({
  type: z.literal('instructions'),
  at: Timestamp,
  turnId: z.string().min(1),
  files: z.array(InstructionFileSchema),
});
/** The instruction files read for a turn. */
export type InstructionsRecord = z.infer<typeof InstructionsRecordSchema>;

/** One item of a turn's conversation history, in the order the model saw it. */
export const ItemRecordSchema = z.object({
  type: z.literal('item'),
  at: Timestamp,
  turnId: z.string().min(1),
  item: PersistedItemSchema,
});
/** One item of a turn's conversation history. */
export type ItemRecord = z.infer<typeof ItemRecordSchema>;

/** A turn ended. */
export const TurnCompletedRecordSchema = z.object({
  type: z.literal('turn_completed'),
  at: Timestamp,
  turnId: z.string().min(1),
  status: TurnStatusSchema,
  lastAgentMessage: z.string().nullable(),
  error: z.string().optional(),
});
/** A turn ended. */
export type TurnCompletedRecord = z.infer<typeof TurnCompletedRecordSchema>;

/** The sticky environment selection changed; later turns use the new one. */
export const EnvironmentsChangedRecordSchema = z.object({
  type: z.literal('environments_changed'),
  at: Timestamp,
  environments: Environments,
});
/** The sticky environment selection changed. */
export type EnvironmentsChangedRecord = z.infer<typeof EnvironmentsChangedRecordSchema>;

/** Why a thread's history was compacted. */
export const CompactionReasonSchema = z.enum(['token_limit', 'context_window_exceeded']);
/** Why a thread's history was compacted. */
export type CompactionReason = z.infer<typeof CompactionReasonSchema>;

/**
 * The history was compacted: later requests send `history` instead of every item before this
 * record. The items it replaces stay in the file above it (nothing is dropped from the file).
 */
export const CompactedRecordSchema = z.object({
  type: z.literal('compacted'),
  at: Timestamp,
  turnId: z.string().min(1),
  reason: CompactionReasonSchema,
  /** How many history items the compaction replaced. */
  replacedItems: z.number().int().nonnegative(),
  /** The model's summary of the replaced conversation (also inside `history`). */
  summary: z.string(),
  /** The history from here on, as sent to the model. */
  history: z.array(PersistedItemSchema),
});
/** The history was compacted. */
export type CompactedRecord = z.infer<typeof CompactedRecordSchema>;

/**
 * The Codex thread behind a Codex-engine thread (written once, when Codex started it): after a
 * restart the engine resumes that thread from Codex's own rollout in `$CODEX_HOME`.
 */
export const CodexThreadRecordSchema = z.object({
  type: z.literal('codex_thread'),
  at: Timestamp,
  turnId: z.string().min(1),
  codexThreadId: z.string().min(1),
});
/** The Codex thread behind a Codex-engine thread. */
export type CodexThreadRecord = z.infer<typeof CodexThreadRecordSchema>;

/**
 * The forms of MCP tasks a task record can be: the 2025-11-25 core feature (`tasks/get`,
 * `tasks/result`, …) and the `io.modelcontextprotocol/tasks` extension of the 2026-07-28 era;
 * `call` is no task a client sees but a modern call's turn asking approvals through
 * `input_required` (MRTR), recorded so that a retry on any instance finds and answers them.
 */
export const TaskFormSchema = z.enum(['2025-11-25', 'extension', 'call']);
/** One of {@link TaskFormSchema}'s values. */
export type TaskForm = z.infer<typeof TaskFormSchema>;

/** What a task id looks like: the thread it lives in, then random bits (base64url of 16 bytes). */
export const TASK_ID_PATTERN = /^task\.([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{22})$/;

/**
 * A turn runs as an MCP task: written once the turn is accepted, before the task is answered to
 * the client. The task's status is not recorded: it is the turn's (its `turn_completed`, or a
 * `task_cancelled` before it), so it cannot disagree with the turn.
 */
export const TaskRecordSchema = z.object({
  type: z.literal('task'),
  at: Timestamp,
  /** See {@link TASK_ID_PATTERN}. */
  taskId: z.string().regex(TASK_ID_PATTERN),
  turnId: z.string().min(1),
  form: TaskFormSchema,
  /** How long after `at` the task (and its result) may be read. */
  ttlMs: z.number().int().positive(),
  /** The poll interval suggested to the client. */
  pollIntervalMs: z.number().int().positive(),
});
/** A turn runs as an MCP task. */
export type TaskRecord = z.infer<typeof TaskRecordSchema>;

/** The client cancelled a task: its turn is interrupted, and the task reads `cancelled` unless the turn had ended before. */
export const TaskCancelledRecordSchema = z.object({
  type: z.literal('task_cancelled'),
  at: Timestamp,
  taskId: z.string().regex(TASK_ID_PATTERN),
  reason: z.string(),
});
/** The client cancelled a task. */
export type TaskCancelledRecord = z.infer<typeof TaskCancelledRecordSchema>;

/** What a task input key looks like: random (base64url of 16 bytes), so an answer names exactly the input request it saw. */
export const TASK_INPUT_KEY_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/**
 * A task's turn waits for the client's input (an approval): what it asks, as the input request a
 * client is shown (`{method: "elicitation/create", params}`), under a random key, until
 * `expiresAt` (then it is denied). It is pending until a `task_input_answer` names its key, the
 * deadline passes, or the turn ends; any server process sharing the thread shows it and takes
 * the answer (issue 16).
 */
export const TaskInputRecordSchema = z.object({
  type: z.literal('task_input'),
  at: Timestamp,
  taskId: z.string().regex(TASK_ID_PATTERN),
  key: z.string().regex(TASK_INPUT_KEY_PATTERN),
  request: z.looseObject({ method: z.string(), params: z.record(z.string(), z.unknown()) }),
  expiresAt: Timestamp,
});
/** A task's turn waits for the client's input. */
export type TaskInputRecord = z.infer<typeof TaskInputRecordSchema>;

/**
 * The client's answer to a task input (`tasks/update`), as it sent it: the process that asks
 * judges it (only a clear approval approves). Only the first answer to a key counts.
 */
export const TaskInputAnswerRecordSchema = z.object({
  type: z.literal('task_input_answer'),
  at: Timestamp,
  taskId: z.string().regex(TASK_ID_PATTERN),
  key: z.string().regex(TASK_INPUT_KEY_PATTERN),
  response: z.unknown(),
});
/** The client's answer to a task input. */
export type TaskInputAnswerRecord = z.infer<typeof TaskInputAnswerRecordSchema>;

/** Any record after the header. */
export const ThreadBodyRecordSchema = z.discriminatedUnion('type', [
  TurnStartedRecordSchema,
  InstructionsRecordSchema,
  ItemRecordSchema,
  TurnCompletedRecordSchema,
  EnvironmentsChangedRecordSchema,
  CompactedRecordSchema,
  CodexThreadRecordSchema,
  TaskRecordSchema,
  TaskCancelledRecordSchema,
  TaskInputRecordSchema,
  TaskInputAnswerRecordSchema,
]);
/** Any record after the header. */
export type ThreadBodyRecord = z.infer<typeof ThreadBodyRecordSchema>;

/** Any record of a thread file, the header included. */
export const ThreadRecordSchema = z.discriminatedUnion('type', [ThreadHeaderRecordSchema, ThreadBodyRecordSchema]);
/** Any record of a thread file. */
export type ThreadRecord = z.infer<typeof ThreadRecordSchema>;

/** The `type` tags of the body records this version knows; any other tag came from a newer version. */
export const THREAD_BODY_RECORD_TYPES: readonly ThreadBodyRecord['type'][] = [
  'turn_started',
  'instructions',
  'item',
  'turn_completed',
  'environments_changed',
  'compacted',
  'codex_thread',
  'task',
  'task_cancelled',
  'task_input',
  'task_input_answer',
];

/** The minimum every line must be: an object with a string `type`, checked before the record schema. */
export const ThreadRecordEnvelopeSchema = z.looseObject({ type: z.string() });

/** Where one step of the agent's plan is. */
export const PlanStepStatusSchema = z.enum(['pending', 'in_progress', 'completed']);

/** One step of the agent's plan. */
export const PlanStepSchema = z.strictObject({
  step: z.string().min(1).describe('What to do, in a few words.'),
  status: PlanStepStatusSchema.describe('One of: pending, in_progress, completed.'),
});
/** One step of the agent's plan. */
export type PlanStep = z.infer<typeof PlanStepSchema>;

/**
 * The agent's plan as `update_plan` sets it (Codex's shape): the whole list each time, at most one
 * step in progress.
 */
export const PlanUpdateSchema = z
  .strictObject({
    explanation: z.string().optional().describe('Why the plan is what it is now (optional).'),
    plan: z.array(PlanStepSchema).max(100).describe('The steps, in order.'),
  })
  .refine((update) => update.plan.filter((step) => step.status === 'in_progress').length <= 1, { message: 'at most one step may be in_progress', path: ['plan'] });
/** The agent's plan as `update_plan` sets it. */
export type PlanUpdate = z.infer<typeof PlanUpdateSchema>;
