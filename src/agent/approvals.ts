/**
 * Approvals: what the agent asks before it acts, and the answers it understands. The MCP layer
 * implements {@link Approver} with elicitation; anything unclear is a denial.
 */

import type { ApprovalPolicy } from '../protocol/thread.js';
import { abortReason } from '../util/abort.js';
import { TurnAbortedError } from './errors.js';

/** When the agent must ask (Codex's `approval_policy`); defined with the persisted thread format. */
export type { ApprovalPolicy };

/** A change to one file, in the shape the old `codex mcp-server` sent as `codex_changes`. */
export type FileChange = { type: 'add'; content: string } | { type: 'delete'; content: string } | { type: 'update'; unified_diff: string; move_path: string | null };

/** One question for the user. */
export type ApprovalRequest =
  | {
      kind: 'exec';
      threadId: string;
      callId: string;
      environmentId: string;
      cwd: string;
      /** The argv that will run. */
      command: string[];
      reason?: string;
    }
  | {
      kind: 'patch';
      threadId: string;
      callId: string;
      environmentId: string;
      cwd: string;
      /** Absolute path → change. */
      changes: Record<string, FileChange>;
      reason?: string;
    }
  | {
      kind: 'mcp';
      threadId: string;
      callId: string;
      /** Where the MCP server runs. */
      environmentId: string;
      /** The thread's working directory in that environment (a stdio server's default cwd). */
      cwd: string;
      /** The server's name in `[mcp_servers]`. */
      server: string;
      /** The tool's name on that server. */
      tool: string;
      arguments: Record<string, unknown>;
      reason?: string;
    }
  | {
      /** More than the sandbox allows, for the rest of the turn or the session (the Codex engine's `request_permissions`). */
      kind: 'permissions';
      threadId: string;
      callId: string;
      environmentId: string;
      cwd: string;
      /** What is asked, one access a line in words, e.g. `write /srv/data` or `network access`. */
      permissions: string[];
      reason?: string;
    };

/** The user's answer. `abort` also stops the turn. */
export type ApprovalDecision = { decision: 'approved' } | { decision: 'approved_for_session' } | { decision: 'denied'; reason: string } | { decision: 'abort'; reason: string };

/** Asks the user; must resolve (never reject) with a decision, denying when in doubt. */
export interface Approver {
  request(request: ApprovalRequest, signal: AbortSignal): Promise<ApprovalDecision>;
}

/** An approver that denies everything, for clients that cannot be asked. */
export const denyAllApprover: Approver = {
  request: () => Promise.resolve({ decision: 'denied', reason: 'no way to ask the user for approval' }),
};

/**
 * Remembers "approved for this session" answers of one thread. Keys always include the
 * environment (and, for commands, the cwd), so an approval never carries across environments.
 */
export class SessionApprovals {
  readonly #keys = new Set<string>();

  /** True when every key of the request was approved for the session. */
  covers(request: ApprovalRequest): boolean {
    return approvalKeys(request).every((key) => this.#keys.has(key));
  }

  /** Records a for-session approval. */
  remember(request: ApprovalRequest): void {
    for (const key of approvalKeys(request)) this.#keys.add(key);
  }
}

/** What {@link askUnlessCovered} needs of a tool call's context. */
export interface ApprovalContext {
  approver: Approver;
  sessionApprovals: SessionApprovals;
  signal: AbortSignal;
}

/**
 * Asks the user unless "approve for this session" already covers the request, and remembers such
 * an answer. Resolves undefined when the action may go ahead, or the reason it was denied.
 * @throws TurnAbortedError when the user aborts; the abort reason when the turn is interrupted.
 */
export async function askUnlessCovered(context: ApprovalContext, request: ApprovalRequest): Promise<string | undefined> {
  if (context.sessionApprovals.covers(request)) return undefined;
  const decision = await context.approver.request(request, context.signal);
  if (context.signal.aborted) throw abortReason(context.signal);
  switch (decision.decision) {
    case 'approved':
      return undefined;
    case 'approved_for_session':
      context.sessionApprovals.remember(request);
      return undefined;
    case 'denied':
      return decision.reason;
    case 'abort':
      throw new TurnAbortedError(decision.reason);
  }
}

function approvalKeys(request: ApprovalRequest): string[] {
  if (request.kind === 'exec') return [JSON.stringify(['exec', request.environmentId, request.cwd, request.command])];
  if (request.kind === 'mcp') return [JSON.stringify(['mcp', request.environmentId, request.server, request.tool])];
  if (request.kind === 'permissions') return [JSON.stringify(['permissions', request.environmentId, request.cwd, [...request.permissions].sort()])];
  return Object.keys(request.changes).map((path) => JSON.stringify(['patch', request.environmentId, path]));
}

/** Commands that only read, and so run without asking under `untrusted`. */
const SAFE_COMMANDS = new Set([
  'ls',
  'cat',
  'pwd',
  'echo',
  'head',
  'tail',
  'wc',
  'grep',
  'rg',
  'find',
  'which',
  'whoami',
  'true',
  'false',
  'nl',
  'stat',
  'file',
  'uname',
  'date',
  'env',
  'printenv',
  'id',
  'du',
  'df',
  'sort',
  'uniq',
  'cut',
  'tr',
  'diff',
  'basename',
  'dirname',
  'realpath',
  'readlink',
  'tree',
]);
const SAFE_GIT = new Set(['status', 'log', 'diff', 'show', 'branch', 'rev-parse', 'ls-files', 'blame']);
/** Shell syntax that can write, chain or substitute, which makes a command unsafe to skip. */
const SHELL_HAZARDS = /[;&|><`$(){}\n]/;

/**
 * True when `script` (a shell command line) is a single known read-only command. Conservative:
 * any redirection, chaining, substitution or unknown program makes it unsafe. `find` with
 * `-exec`/`-delete` and `sed -i` are unsafe.
 */
export function isKnownSafeCommand(script: string): boolean {
  const trimmed = script.trim();
  if (trimmed.length === 0 || SHELL_HAZARDS.test(trimmed)) return false;
  const words = trimmed.split(/\s+/);
  const program = words[0] ?? '';
  if (program === 'git') return SAFE_GIT.has(words[1] ?? '');
  if (program === 'find') return !words.some((w) => /^-(exec|execdir|ok|okdir|delete|fprint|fprintf|fls)$/.test(w));
  if (program === 'sed') return words[1] === '-n';
  return SAFE_COMMANDS.has(program);
}
