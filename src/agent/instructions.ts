import type { ResponseInputItem, UserMessageInputItem } from '../protocol/responses.js';
import type { InstructionFile } from '../protocol/thread.js';
import type { ProjectDocs } from './project-docs.js';
import type { TurnEnvironment } from './tools/tool.js';

/**
 * Our base instructions (replaced by `base_instructions` / `model_instructions_file`). What changes
 * from turn to turn (environments, sandbox, approval policy, AGENTS.md files) is not here but in
 * the context messages, sent when it changes.
 */
export const BASE_INSTRUCTIONS = `You are a coding agent. A user (often another agent acting for a person) gives you a task; you carry it out with tools, in one or more execution environments, and report back. Work autonomously until the task is done or you truly need the user: there is usually nobody watching in real time.

# Environments
- Every tool that runs a command or touches files runs in exactly one environment: this machine, a remote host or a container. The <environment_context> message lists the environments of this turn, the primary one first, each with its working directory, shell, what its sandbox allows, and where its commands' variables come from. A newer <environment_context> replaces older ones.
- Name the environment with environment_id (for apply_patch, a "*** Environment ID: <id>" line right after "*** Begin Patch"). Without it a call runs in the primary environment. Paths are paths on that environment's host; relative paths start at its working directory.
- Environments do not share files, processes or installed tools: to move data between them, read it in one and write it in the other. Never assume a path that exists in one exists in another.
- If no environment is listed, you cannot run commands or touch files this turn: answer from what you know and say what you could not check.

# Tools
- exec_command runs a shell command and returns its output; a command still running after yield_time_ms comes back with a session_id, and write_stdin sends it input or polls it for more output (empty chars). Prefer fast read-only commands to explore: rg and rg --files, ls, sed -n, head, git status, git diff. Set workdir rather than using cd. Keep output small (filters, head), since long output is truncated.
- apply_patch edits files: add, delete, update or move them with its patch format. Use it for every hand edit; do not write files with shell redirection or editors when a patch will do. Read the relevant part of a file before patching it so the context lines match.
- view_image shows you a local image file; list_dir lists a directory tree.
- update_plan keeps a short plan the user can see, for work of several steps: steps of a few words, at most one in_progress, updated as you go. Skip it for simple tasks and never plan instead of doing.
- Tools named mcp__<server>__<tool> come from MCP servers the user configured; use them as their descriptions say.
- Independent read-only calls can run in parallel; calls that depend on each other run one at a time.

# Sandbox, approvals and denials
- Each environment's sandbox (in <environment_context>) limits what commands and file edits may do: which paths are writable, whether the network is reachable. Work inside it. If something fails because of the sandbox, say so plainly, and, when the approval policy allows asking, request the command again with the reason it needs more access.
- The approval policy in <environment_context> says when the user is asked before a command runs. If the user declines, do not retry the same thing in another form: find another way within the limits, or stop and explain what you need.
- Never work around a denial or the sandbox, and never read, print or send secrets (keys, tokens, passwords) you come across.

# Project instructions
- <project_instructions> carries the user's global instructions and the AGENTS.md files of each environment's project, labelled with their environment and path. A file applies to the tree under its folder, in that environment only. Where they disagree, a deeper file wins over a file above it, project files win over the global file, and the user's messages in this conversation win over all files. A newer <project_instructions> replaces older ones.

# How to work
- Understand before changing: find the relevant code, read it, and follow the conventions you see there. Fix the cause, not the symptom; keep changes as small as the task allows; do not rename, reformat or restructure code the task does not touch.
- Check your work when you can: run the tests, build or linter that cover the change, narrowest first. If you cannot check something, say so.
- Do not commit, push, create branches or delete work unless the user asked; leave unrelated changes in the workspace alone, even if you did not make them.
- If a command fails, read the error and adapt; do not repeat the same call unchanged.

# Reporting
When you are done, reply with a short summary: what you changed and where (environment and path), how you checked it, and anything left for the user. Plain text or light Markdown; no long listings of files you did not change. If you stopped early, say why and what is needed to continue.`;

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The opening tags of context messages: each kind is sent again only when its text changed. */
export const CONTEXT_MESSAGE_TAGS = ['<environment_context>', '<project_instructions>'] as const;

/** The context tag a user message opens with, if it is a context message. */
export function contextTagOf(text: string): string | undefined {
  return CONTEXT_MESSAGE_TAGS.find((tag) => text.startsWith(tag));
}

function userText(item: ResponseInputItem): string | undefined {
  if (item.type !== 'message' || item.role !== 'user') return undefined;
  const [first, ...rest] = item.content;
  if (first?.type !== 'input_text' || rest.length > 0) return undefined;
  return first.text;
}

/**
 * The context messages that must be sent before the next prompt: those whose text differs from
 * the latest message of the same kind in `history` (a context never sent is always sent, except
 * an empty project-instructions report, which only replaces an earlier one).
 */
export function contextUpdates(history: readonly ResponseInputItem[], context: readonly string[]): string[] {
  const latest = new Map<string, string>();
  for (let index = history.length - 1; index >= 0 && latest.size < CONTEXT_MESSAGE_TAGS.length; index--) {
    const text = userText(history[index]!);
    const tag = text === undefined ? undefined : contextTagOf(text);
    if (tag !== undefined && text !== undefined && !latest.has(tag)) latest.set(tag, text);
  }
  return context.filter((text) => {
    const tag = contextTagOf(text);
    if (tag === undefined) return true;
    const previous = latest.get(tag);
    if (previous === undefined) return text !== NO_PROJECT_INSTRUCTIONS;
    return previous !== text;
  });
}

/** What the environment context message says about one environment. */
export interface EnvironmentContextEntry {
  environment: TurnEnvironment;
  shell?: string;
  /** What the sandbox allows there, in one line. */
  permissions?: string;
  /** Where commands' environment variables come from there. */
  commandEnvironment?: string;
}

/**
 * The `<environment_context>` user message that opens every turn: the turn's environments with
 * the primary first, each with its working directory, shell, sandbox permissions and where its
 * commands' variables come from, and the date.
 */
export function environmentContextMessage(entries: readonly EnvironmentContextEntry[], now: Date, timezone: string, approvalPolicy?: string): string {
  const lines = ['<environment_context>'];
  if (entries.length === 0) {
    lines.push('  <environments none="true">No execution environment is available in this turn; tools that run commands or touch files will fail.</environments>');
  } else {
    lines.push('  <environments>');
    entries.forEach((entry, index) => {
      lines.push(`    <environment id="${escapeXml(entry.environment.id)}" primary="${index === 0 ? 'true' : 'false'}">`);
      lines.push(`      <cwd>${escapeXml(entry.environment.cwd)}</cwd>`);
      if (entry.shell !== undefined) lines.push(`      <shell>${escapeXml(entry.shell)}</shell>`);
      if (entry.permissions !== undefined) lines.push(`      <permissions>${escapeXml(entry.permissions)}</permissions>`);
      if (entry.commandEnvironment !== undefined) lines.push(`      <command_environment>${escapeXml(entry.commandEnvironment)}</command_environment>`);
      lines.push('    </environment>');
    });
    lines.push('  </environments>');
  }
  if (approvalPolicy !== undefined) lines.push(`  <approval_policy>${escapeXml(approvalPolicy)}: ${APPROVAL_POLICY_MEANING[approvalPolicy] ?? 'see the user'}</approval_policy>`);
  lines.push(`  <current_date>${now.toISOString().slice(0, 10)}</current_date>`);
  lines.push(`  <timezone>${escapeXml(timezone)}</timezone>`);
  lines.push('</environment_context>');
  return lines.join('\n');
}

/** What each approval policy means for the model, in one line. */
const APPROVAL_POLICY_MEANING: Record<string, string> = {
  untrusted: 'commands other than known-safe reads ask the user first',
  'on-failure': "commands run in the sandbox; one the sandbox blocked may be retried with the user's approval",
  'on-request': 'commands run in the sandbox; ask for more access (with a reason) when a task needs it, and the user decides',
  never: 'the user is never asked: work within the sandbox, and report what it blocked',
};

/** The report that no instruction file applies any more (sent only to replace an earlier report). */
export const NO_PROJECT_INSTRUCTIONS = '<project_instructions>\nNo global instructions or AGENTS.md files apply any more.\n</project_instructions>';

/** The user's global instructions (`$CODEX_HOME/AGENTS.override.md` or `AGENTS.md`). */
export interface GlobalInstructions {
  path: string;
  text: string;
}

/**
 * The `<project_instructions>` message: the user's global instructions and, per environment, the
 * AGENTS.md files from its project root down to its working directory, each labelled with where
 * it came from (the model must know which environment a file governs).
 */
export function projectInstructionsMessage(global: GlobalInstructions | undefined, docs: readonly ProjectDocs[]): string {
  const withFiles = docs.filter((entry) => entry.files.length > 0);
  if (global === undefined && withFiles.length === 0) return NO_PROJECT_INSTRUCTIONS;
  const lines = ['<project_instructions>'];
  if (global !== undefined) lines.push(`<user_instructions path="${escapeXml(global.path)}">`, global.text.trimEnd(), '</user_instructions>');
  for (const entry of withFiles) {
    lines.push(`<environment id="${escapeXml(entry.environmentId)}" cwd="${escapeXml(entry.cwd)}">`);
    entry.files.forEach((file, index) => {
      lines.push(`<agents_md path="${escapeXml(file.path)}"${file.truncated ? ' truncated="true"' : ''}>`, entry.texts[index]!.trimEnd(), '</agents_md>');
    });
    lines.push('</environment>');
  }
  lines.push('</project_instructions>');
  return lines.join('\n');
}

/** The instruction files behind a {@link projectInstructionsMessage}, for the thread record and status. */
export function instructionFiles(global: GlobalInstructions | undefined, docs: readonly ProjectDocs[]): InstructionFile[] {
  return [
    ...(global === undefined ? [] : [{ environmentId: null, path: global.path, bytes: Buffer.byteLength(global.text), truncated: false }]),
    ...docs.flatMap((entry) => entry.files.map((file) => ({ environmentId: entry.environmentId, path: file.path, bytes: file.bytes, truncated: file.truncated }))),
  ];
}

/** A user or developer message of one text part. */
export function inputMessage(role: 'user' | 'developer', text: string): UserMessageInputItem {
  return { type: 'message', role, content: [{ type: 'input_text', text }] };
}
