import { z } from 'zod';
import { ThreadEnvironmentSchema, InstructionFileSchema, PlanUpdateSchema, TurnStatusSchema } from './thread.js';

/**
 * What the status tools report (`codex-status`, `thread/list`, task status): one schema per type,
 * used by the session layer for its types and by the MCP layer as the tools' output schemas.
 */

/** What a lease file holds: the process that writes a thread now. */
export const LeaseHolderSchema = z.object({
  pid: z.number().int().positive(),
  host: z.string(),
  /** The holder's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for it. */
  startTicks: z.number().int().nonnegative().optional(),
  since: z.string(),
});
/** The process holding a thread's lease. */
export type LeaseHolder = z.infer<typeof LeaseHolderSchema>;

/** Another process's request to stop a turn of a thread this process owns: which turn, and why. */
export const InterruptRequestSchema = z.object({ turnId: z.string(), reason: z.string() });
/** Another process's request to stop a turn. */
export type InterruptRequest = z.infer<typeof InterruptRequestSchema>;

/** Where a turn that has not finished is: waiting behind another turn, running, or waiting for the user. */
export const LiveTurnStateSchema = z.enum(['queued', 'running', 'waiting-for-approval']);
/** Where a turn that has not finished is. */
export type LiveTurnState = z.infer<typeof LiveTurnStateSchema>;

/** What a turn that has not finished has done so far. */
export const TurnProgressSchema = z.object({
  turnId: z.string(),
  state: LiveTurnStateSchema,
  /** When the call that started it was accepted (ISO). */
  acceptedAt: z.string(),
  /** When it started running (ISO); null while queued. */
  startedAt: z.string().nullable(),
  modelRequests: z.number(),
  toolCalls: z.object({ started: z.number(), finished: z.number(), failed: z.number() }),
  /** Approval requests waiting for the user's answer. */
  pendingApprovals: z.number(),
  /** The last message the agent wrote in this turn. */
  lastAgentMessage: z.string().nullable(),
  /** The latest events, oldest first. */
  recent: z.array(z.object({ at: z.string(), text: z.string() })),
});
/** What a turn that has not finished has done so far. */
export type TurnProgress = z.infer<typeof TurnProgressSchema>;

/** How a turn ended. */
export const FinishedTurnSchema = z.object({
  turnId: z.string(),
  state: z.literal('finished'),
  status: TurnStatusSchema,
  /** The turn's last agent message (null when it wrote none). */
  lastAgentMessage: z.string().nullable(),
  error: z.string().optional(),
  /** When it ended (ISO). */
  finishedAt: z.string(),
});
/** How a turn ended. */
export type FinishedTurn = z.infer<typeof FinishedTurnSchema>;

/** A thread's state: `running` while a turn runs or waits for a free slot; `failed` when its last turn failed. */
export const ThreadStateSchema = z.enum(['idle', 'running', 'waiting-for-approval', 'failed']);
/** A thread's state as the status tools report it. */
export type ThreadState = z.infer<typeof ThreadStateSchema>;

/** How full a thread's conversation is (see `agent/compact.ts`). */
export const ThreadContextSchema = z
  .object({
    /** Tokens of the last model request, as the provider reported them; null when unknown (none since this process loaded it). */
    tokens: z.number().nullable(),
    /** The token count at which the history is compacted; null when only a context-window error compacts it, or unknown. */
    autoCompactTokenLimit: z.number().nullable(),
    compactions: z.number(),
  })
  .describe(
    'How full the conversation is: tokens of the last model request (null when unknown), the limit at which it is compacted (null: only when the context window is exceeded, or unknown), and how often it was compacted.',
  );
/** How full a thread's conversation is. */
export type ThreadContext = z.infer<typeof ThreadContextSchema>;

/** The state of one thread (`codex-status`). */
export const ThreadStatusSchema = z.object({
  threadId: z.string(),
  status: ThreadStateSchema,
  createdAt: z.string(),
  lastActivity: z.string(),
  /** The sticky environment selection. */
  environments: z.array(ThreadEnvironmentSchema),
  /** The last message the agent wrote, in any turn. */
  lastAgentMessage: z.string().nullable(),
  /** The turn running now (or waiting for a slot), null when none. */
  currentTurn: TurnProgressSchema.nullable(),
  /** Turns waiting behind the current one. */
  queuedTurns: z.number(),
  /** The most recent finished turn. */
  lastTurn: FinishedTurnSchema.nullable(),
  /** The turn the caller asked about, live or finished. */
  turn: z.union([TurnProgressSchema, FinishedTurnSchema]).optional(),
  runningElsewhere: LeaseHolderSchema.extend({ turnId: z.string() })
    .optional()
    .describe('Set when another server process (e.g. the detached worker of a client that went away) runs the current turn.'),
  context: ThreadContextSchema,
  plan: PlanUpdateSchema.nullable().describe("The agent's latest plan (update_plan): steps with pending / in_progress / completed; null when it set none."),
  instructions: z
    .array(InstructionFileSchema)
    .nullable()
    .describe(
      "The instruction files sent for the latest turn: the global AGENTS.md (environmentId null) and each environment's AGENTS.md files, root first; null before any turn recorded them.",
    ),
});
/** The state of one thread (`codex-status`). */
export type ThreadStatus = z.infer<typeof ThreadStatusSchema>;

/** One thread of `thread/list`. */
export const ThreadListEntrySchema = z.object({
  threadId: z.string(),
  /** Null only for a thread file that does not read back (see `error`). */
  createdAt: z.string().nullable(),
  lastActivity: z.string(),
  status: ThreadStateSchema,
  environments: z.array(ThreadEnvironmentSchema),
  /** The turn running now, if any. */
  currentTurnId: z.string().nullable(),
  preview: z.string().nullable().describe('The thread’s first prompt, shortened to 100 characters.'),
  /** Why the thread's file does not read back. */
  error: z.string().optional(),
  runningElsewhere: LeaseHolderSchema.optional().describe('Set when another server process runs the thread’s turn.'),
});
/** One thread of `thread/list`. */
export type ThreadListEntry = z.infer<typeof ThreadListEntrySchema>;
