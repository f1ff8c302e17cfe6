import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { RELATED_TASK_META_KEY } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { ApprovalDecision, ApprovalRequest, Approver } from '../agent/approvals.js';
import { errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';

/** Default bound on waiting for the user's answer. */
export const DEFAULT_APPROVAL_TIMEOUT_MS = 300_000;

/** The choices offered in the form; their values are what `content.decision` carries. */
const CHOICES = [
  { value: 'approve', title: 'Approve once' },
  { value: 'approve_for_session', title: 'Approve for this session (this environment and directory)' },
  { value: 'deny', title: 'Deny' },
] as const;

/**
 * `_meta` that any MCP result may carry. It is the only member an answer may have besides those of
 * its shape: a clear answer is exactly one shape, never a mixture.
 */
const ResultMetaSchema = z.record(z.string(), z.unknown()).optional();

/** A standard `ElicitResult`. `content` is checked per action, below. */
const ElicitAnswerSchema = z.strictObject({
  action: z.enum(['accept', 'decline', 'cancel']),
  content: z.unknown().optional(),
  _meta: ResultMetaSchema,
});

/** The form's content of an `accept`: exactly one of our choices. */
const AcceptedContentSchema = z.strictObject({ decision: z.enum(CHOICES.map((c) => c.value)) });

/** The old server's denial with the text the model is told; any extra members still deny. */
const LegacyDeniedSchema = z.looseObject({ denied: z.looseObject({ rejection: z.string().optional() }) });

/**
 * The old server's approval with an exec-policy amendment (a command prefix to allow from now on),
 * honoured as an approval of this command once (we keep no exec policy file). Only the exact,
 * well-formed shape: a non-empty argv of non-empty strings.
 */
const LegacyAmendmentSchema = z.strictObject({
  approved_execpolicy_amendment: z.strictObject({ proposed_execpolicy_amendment: z.array(z.string().min(1)).min(1) }),
});

/** The old `codex mcp-server` answer: exactly `{ "decision": ReviewDecision }`. */
const LegacyAnswerSchema = z.strictObject({
  decision: z.union([z.enum(['approved', 'approved_for_session', 'denied', 'abort', 'timed_out', 'approved_mcp_policy_amendment']), LegacyDeniedSchema, LegacyAmendmentSchema]),
  _meta: ResultMetaSchema,
});

/** Characters of an unclear answer quoted in the denial's reason. */
const ANSWER_PREVIEW_CHARS = 200;

function unclear(answer: unknown): ApprovalDecision {
  let text: string;
  try {
    text = JSON.stringify(answer) ?? String(answer);
  } catch {
    text = String(answer);
  }
  const preview = text.length <= ANSWER_PREVIEW_CHARS ? text : `${text.slice(0, ANSWER_PREVIEW_CHARS)}…`;
  return { decision: 'denied', reason: `the approval answer was not a clear choice (got ${preview})` };
}

const hasMember = (answer: unknown, key: string): boolean => typeof answer === 'object' && answer !== null && Object.hasOwn(answer, key);

/**
 * Turns whatever the client answered into a decision. Only an answer that is exactly one of the
 * clear shapes approves (see the README's *Approvals*); any other answer is a denial: an unknown
 * shape or choice, an `accept` without a choice, an answer carrying an `action` that is not a valid
 * `ElicitResult` (also when it carries an old-style `decision` as well), a malformed amendment.
 */
export function parseApprovalAnswer(answer: unknown): ApprovalDecision {
  // An answer with an `action` is a standard one, whatever else it holds: it is never read as old-style.
  if (hasMember(answer, 'action')) {
    const standard = ElicitAnswerSchema.safeParse(answer);
    if (!standard.success) return unclear(answer);
    if (standard.data.action === 'decline') return { decision: 'denied', reason: 'the user declined' };
    if (standard.data.action === 'cancel') return { decision: 'denied', reason: 'the user dismissed the approval request' };
    const content = AcceptedContentSchema.safeParse(standard.data.content);
    if (!content.success) return unclear(answer);
    const choice = content.data.decision;
    if (choice === 'approve') return { decision: 'approved' };
    if (choice === 'approve_for_session') return { decision: 'approved_for_session' };
    return { decision: 'denied', reason: 'the user denied it' };
  }
  const legacy = LegacyAnswerSchema.safeParse(answer);
  if (!legacy.success) return unclear(answer);
  const decision = legacy.data.decision;
  if (decision === 'approved' || decision === 'approved_mcp_policy_amendment') return { decision: 'approved' };
  if (decision === 'approved_for_session') return { decision: 'approved_for_session' };
  if (decision === 'abort') return { decision: 'abort', reason: 'the user aborted the turn' };
  if (decision === 'denied') return { decision: 'denied', reason: 'the user denied it' };
  if (decision === 'timed_out') return { decision: 'denied', reason: 'the approval request timed out' };
  if ('denied' in decision) return { decision: 'denied', reason: decision.denied.rejection ?? 'the user denied it' };
  // The one shape left (the compiler checks it is): a well-formed exec-policy amendment.
  decision satisfies z.infer<typeof LegacyAmendmentSchema>;
  return { decision: 'approved' };
}

function quoteArg(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Characters of an MCP tool call's arguments shown in the approval message. */
const ARGUMENTS_PREVIEW_CHARS = 500;

function previewArguments(args: Record<string, unknown>): string {
  const text = JSON.stringify(args);
  return text.length <= ARGUMENTS_PREVIEW_CHARS ? text : `${text.slice(0, ARGUMENTS_PREVIEW_CHARS)}… (${text.length} characters)`;
}

/** The human message of a request: what, where (environment and cwd) and why. */
export function approvalMessage(request: ApprovalRequest): string {
  const reason = request.reason === undefined ? '' : `\nReason: ${request.reason}`;
  if (request.kind === 'exec') {
    return `Allow Codex to run \`${request.command.map(quoteArg).join(' ')}\` in environment \`${request.environmentId}\` with working directory \`${request.cwd}\`?${reason}`;
  }
  if (request.kind === 'mcp') {
    return `Allow Codex to call the tool \`${request.tool}\` of MCP server \`${request.server}\` in environment \`${request.environmentId}\` with arguments ${previewArguments(request.arguments)}?${reason}`;
  }
  if (request.kind === 'permissions') {
    const asked = request.permissions.length === 0 ? 'nothing named' : request.permissions.join('; ');
    return `Allow Codex more permissions in environment \`${request.environmentId}\` with working directory \`${request.cwd}\`: ${asked}?${reason}`;
  }
  const files = Object.keys(request.changes);
  const list = files.slice(0, 10).join(', ') + (files.length > 10 ? `, … (${files.length} files)` : '');
  return `Allow Codex to apply proposed code changes in environment \`${request.environmentId}\` (${list})?${reason}`;
}

/** The standard `elicitation/create` params of an approval: a form with one choice, `decision`. */
export function approvalElicitationParams(request: ApprovalRequest): Record<string, unknown> {
  return {
    mode: 'form',
    message: approvalMessage(request),
    requestedSchema: {
      type: 'object',
      properties: {
        decision: {
          type: 'string',
          title: 'Decision',
          description: 'Approve once, approve for this session (same environment and directory), or deny.',
          enum: CHOICES.map((c) => c.value),
          enumNames: CHOICES.map((c) => c.title),
        },
      },
      required: ['decision'],
    },
  };
}

/** `codex_elicitation` per request kind (the first two are the old server's values). */
const ELICITATION_KINDS = { exec: 'exec-approval', patch: 'patch-approval', mcp: 'mcp-tool-call-approval', permissions: 'permissions-approval' } as const satisfies Record<
  ApprovalRequest['kind'],
  string
>;

/** Options of {@link ElicitationApprover}. */
export interface ElicitationApproverOptions {
  server: Server;
  /** @default DEFAULT_APPROVAL_TIMEOUT_MS */
  timeoutMs?: number;
  logger?: Logger;
  /** The `tools/call` request id, sent as `codex_mcp_tool_call_id`. */
  toolCallId?: string | number;
  /** The current turn id, sent as `codex_event_id` (known only once the turn is queued). */
  turnId?: () => string | undefined;
  /** The MCP task of the call (known once it is recorded), sent as `_meta["io.modelcontextprotocol/related-task"]` (MCP Tasks). */
  relatedTaskId?: () => string | undefined;
}

/**
 * Asks the MCP client through `elicitation/create` (form mode) with a flat enum schema, plus the
 * old `codex mcp-server` vendor fields so hubs built for it keep working. Anything that is not a
 * clear approval (an error, a timeout, an unknown answer, a client without elicitation) is a denial.
 */
export class ElicitationApprover implements Approver {
  readonly #options: ElicitationApproverOptions;
  readonly #logger: Logger;

  constructor(options: ElicitationApproverOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
  }

  async request(request: ApprovalRequest, signal: AbortSignal): Promise<ApprovalDecision> {
    const capabilities = this.#options.server.getClientCapabilities();
    const elicitation = capabilities?.elicitation;
    // A bare `elicitation: {}` (2025-06-18 clients) means form; url-only clients cannot show forms.
    const supportsForm = elicitation !== undefined && (elicitation.form !== undefined || elicitation.url === undefined);
    if (!supportsForm) {
      return { decision: 'denied', reason: 'the MCP client cannot show approval requests (no form elicitation support); use approval-policy "never" or a client with elicitation' };
    }
    const params: Record<string, unknown> = {
      ...approvalElicitationParams(request),
      threadId: request.threadId,
      codex_elicitation: ELICITATION_KINDS[request.kind],
      codex_call_id: request.callId,
      codex_environment_id: request.environmentId,
      codex_cwd: request.cwd,
    };
    if (this.#options.toolCallId !== undefined) params.codex_mcp_tool_call_id = String(this.#options.toolCallId);
    const turnId = this.#options.turnId?.();
    if (turnId !== undefined) params.codex_event_id = turnId;
    if (request.reason !== undefined) params.codex_reason = request.reason;
    // Sent straight to the client (not queued for `tasks/result`): over stdio every client gets it,
    // whether or not it follows the task's `input_required` with `tasks/result`.
    const relatedTaskId = this.#options.relatedTaskId?.();
    if (relatedTaskId !== undefined) params._meta = { [RELATED_TASK_META_KEY]: { taskId: relatedTaskId } };
    if (request.kind === 'exec') params.codex_command = request.command;
    else if (request.kind === 'patch') params.codex_changes = request.changes;
    else if (request.kind === 'permissions') params.codex_permissions = request.permissions;
    else Object.assign(params, { codex_mcp_server: request.server, codex_mcp_tool: request.tool, codex_mcp_arguments: request.arguments });
    try {
      const answer = await this.#options.server.request({ method: 'elicitation/create', params }, z.unknown(), {
        signal,
        timeout: this.#options.timeoutMs ?? DEFAULT_APPROVAL_TIMEOUT_MS,
      });
      const decision = parseApprovalAnswer(answer);
      this.#logger.info('approval answered', { kind: request.kind, environment: request.environmentId, decision: decision.decision });
      return decision;
    } catch (error) {
      if (signal.aborted) return { decision: 'abort', reason: 'the turn was interrupted while waiting for approval' };
      this.#logger.warn('approval request failed; denying', { error: errorMessage(error) });
      return { decision: 'denied', reason: `the approval request failed: ${errorMessage(error)}` };
    }
  }
}
