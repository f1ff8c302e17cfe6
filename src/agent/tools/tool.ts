import type { ExecClient } from '../../exec/client.js';
import type { RemoteProcess } from '../../exec/remote-process.js';
import type { EnvPolicy, SandboxContext } from '../../protocol/exec.js';
import type { PlanUpdate } from '../../protocol/thread.js';
import type { Approver, ApprovalPolicy, SessionApprovals } from '../approvals.js';

/** One environment as a turn sees it: the id the model uses and the working directory there. */
export interface TurnEnvironment {
  id: string;
  /** Absolute path on that environment's host. */
  cwd: string;
  /** Connects lazily; rejects with a clear error when the environment is unreachable. */
  client(signal?: AbortSignal): Promise<ExecClient>;
}

/** A failure the model should read (a bad argument, an unknown environment, a denial). */
export class ToolError extends Error {
  override readonly name = 'ToolError';
}

/** What a tool returns to the model. */
export type ToolOutput = string | ToolContentItem[];

/** Rich tool output, e.g. an image for `view_image`. */
export type ToolContentItem = { type: 'input_text'; text: string } | { type: 'input_image'; image_url: string };

/** Everything a tool call may use. */
export interface ToolContext {
  threadId: string;
  callId: string;
  /** The turn's environments, primary first; empty when the turn has no environment access. */
  environments: readonly TurnEnvironment[];
  /**
   * The environment a call names (`environment_id`), or the primary one when it names none.
   * @throws ToolError naming the known ids, or saying there is no environment access.
   */
  environment(id: string | undefined): TurnEnvironment;
  approvalPolicy: ApprovalPolicy;
  approver: Approver;
  sessionApprovals: SessionApprovals;
  /** The thread-scoped store of processes left running by `exec_command`. */
  processes: ProcessTable;
  /** How a command's environment variables are built on that environment (`envPolicy` + overlay). */
  commandEnvironment(environmentId: string): { envPolicy: EnvPolicy; env: Record<string, string> };
  /**
   * The sandbox to request there for an operation in `cwd` (a command's workdir, or the
   * environment's cwd for file operations); null for none (full access).
   */
  sandbox(environmentId: string, cwd: string): SandboxContext | null;
  /** `login: true` may run the shell as a login shell (`allow_login_shell`); otherwise it is refused. */
  allowLoginShell: boolean;
  /** Bound on tool output returned to the model, in tokens (≈ 4 bytes each). */
  maxOutputTokens: number;
  /** A short human progress line (`command started: ls`). */
  progress(message: string): void;
  /** The model set its plan (`update_plan`). */
  plan(update: PlanUpdate): void;
  /** Aborts when the turn is interrupted. */
  signal: AbortSignal;
}

/** Processes that outlived their `exec_command` call, addressed by `session_id` in `write_stdin`. */
export interface ProcessTable {
  /** Registers a process; says which entry, if any, was evicted to make room. */
  register(entry: RunningProcessEntry): ProcessRegistration;
  get(sessionId: number): RunningProcessEntry | undefined;
  remove(sessionId: number): void;
  /** The session ids held, oldest first. */
  sessionIds(): number[];
  /** Terminates every process (when the thread is closed). */
  terminateAll(): Promise<void>;
}

/** An entry removed to make room for a new one (its process was terminated). */
export interface EvictedProcess {
  sessionId: number;
  environmentId: string;
  /** False when the process had already finished and only its unread output was dropped. */
  wasRunning: boolean;
}

/** The result of {@link ProcessTable.register}. */
export interface ProcessRegistration {
  sessionId: number;
  evicted?: EvictedProcess;
}

/** A process left running by `exec_command`. */
export interface RunningProcessEntry {
  environmentId: string;
  process: RemoteProcess;
  /** Wall-clock start, for `Wall time`. */
  startedAt: number;
}

/** A function tool: JSON arguments. */
export interface FunctionTool {
  kind: 'function';
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: Record<string, unknown>;
  run(args: unknown, context: ToolContext): Promise<ToolOutput>;
}

/** A freeform (custom) tool: the model's raw text is the input, constrained by a grammar. */
export interface CustomTool {
  kind: 'custom';
  name: string;
  description: string;
  /** A Lark grammar. */
  grammar: string;
  run(input: string, context: ToolContext): Promise<ToolOutput>;
}

/** Any tool offered to the model. */
export type AgentTool = FunctionTool | CustomTool;
