import { posix } from 'node:path';
import type { ExecClient, FsRequestOptions } from '../../exec/client.js';
import { RpcErrorCode } from '../../protocol/jsonrpc.js';
import { RpcError } from '../../rpc/errors.js';
import { errorMessage } from '../../util/errors.js';
import { askUnlessCovered, type ApprovalRequest, type FileChange } from '../approvals.js';
import { computeUpdate, parsePatch, PatchApplyError, PatchParseError, unifiedDiff, type ParsedPatch } from '../patch.js';
import { resolveOnEnvironment } from './paths.js';
import { ToolError, type CustomTool, type ToolContext } from './tool.js';

/** The Lark grammar Codex-trained models expect (model-tools.md); `withEnvironment` adds the id line. */
function patchGrammar(withEnvironment: boolean): string {
  return [
    withEnvironment ? 'start: begin_patch environment_id? hunk+ end_patch' : 'start: begin_patch hunk+ end_patch',
    ...(withEnvironment ? ['environment_id: "*** Environment ID: " filename LF'] : []),
    'begin_patch: "*** Begin Patch" LF',
    'end_patch: "*** End Patch" LF?',
    '',
    'hunk: add_hunk | delete_hunk | update_hunk',
    'add_hunk: "*** Add File: " filename LF add_line+',
    'delete_hunk: "*** Delete File: " filename LF',
    'update_hunk: "*** Update File: " filename LF change_move? change?',
    '',
    'filename: /(.+)/',
    'add_line: "+" /(.*)/ LF -> line',
    '',
    'change_move: "*** Move to: " filename LF',
    'change: (change_context | change_line)+ eof_line?',
    'change_context: ("@@" | "@@ " /(.+)/) LF',
    'change_line: ("+" | "-" | " ") /(.*)/ LF',
    'eof_line: "*** End of File" LF',
    '',
    '%import common.LF',
    '',
  ].join('\n');
}

function patchDescription(withEnvironment: boolean): string {
  return [
    'Create, edit, move and delete files with a patch. The input is the raw patch text, not JSON:',
    '*** Begin Patch',
    ...(withEnvironment ? ['*** Environment ID: <id>   (optional, right after Begin Patch: the environment to edit; the primary one when omitted)'] : []),
    'then one or more file sections:',
    '*** Add File: <path>  followed by every line of the new file, each prefixed with +',
    '*** Delete File: <path>',
    '*** Update File: <path>  optionally followed by *** Move to: <new path>, then change blocks.',
    "A change block starts with '@@' or '@@ <a line just above the change, such as a function or class header>'",
    "and lists lines prefixed with ' ' (unchanged, about 3 lines before and after each change), '-' (removed) or '+' (added).",
    "'*** End of File' after a block means it ends at the end of the file.",
    '*** End Patch',
    "Paths are relative to the environment's working directory, or absolute. Never use line numbers.",
  ].join('\n');
}

/** What a path holds while the patch is planned: the text, or nothing. */
interface FileState {
  exists: boolean;
  content: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isNotFound(error: unknown): boolean {
  return error instanceof RpcError && error.code === RpcErrorCode.NotFound;
}

/**
 * A patch planned against the environment's files: every new content computed before anything
 * is written, so a hunk that does not fit leaves every file untouched.
 */
class PatchPlan {
  /** The state of each touched path before the patch, in first-touch order. */
  readonly initial = new Map<string, FileState>();
  /** The state of each touched path after the hunks so far. */
  readonly current = new Map<string, FileState>();
  readonly changes: Record<string, FileChange> = {};
  /** `A path` / `M path` / `D path` lines, grouped as Codex prints them. */
  readonly added: string[] = [];
  readonly modified: string[] = [];
  readonly deleted: string[] = [];

  readonly #client: ExecClient;
  readonly #options: FsRequestOptions;

  constructor(client: ExecClient, options: FsRequestOptions) {
    this.#client = client;
    this.#options = options;
  }

  /** Reads a file the first time it is touched; later hunks see the planned state. */
  async load(path: string, shown: string): Promise<FileState> {
    const known = this.current.get(path);
    if (known !== undefined) return known;
    let state: FileState;
    try {
      const bytes = await this.#client.readFile(path, this.#options);
      try {
        state = { exists: true, content: utf8.decode(bytes) };
      } catch {
        throw new PatchApplyError(`${shown} is not UTF-8 text`);
      }
    } catch (error) {
      if (error instanceof PatchApplyError) throw error;
      if (!isNotFound(error)) throw new PatchApplyError(`cannot read ${shown}: ${errorMessage(error)}`);
      state = { exists: false, content: '' };
    }
    this.initial.set(path, state);
    this.current.set(path, state);
    return state;
  }

  /** Whether a path exists, without reading it (for Add File). */
  async probe(path: string, shown: string): Promise<boolean> {
    const known = this.current.get(path);
    if (known !== undefined) return known.exists;
    try {
      await this.#client.getMetadata(path, this.#options);
      return true;
    } catch (error) {
      if (!isNotFound(error)) throw new PatchApplyError(`cannot check ${shown}: ${errorMessage(error)}`);
      const state = { exists: false, content: '' };
      this.initial.set(path, state);
      this.current.set(path, state);
      return false;
    }
  }

  /** The change of one path from its initial to its planned state, for approvals. */
  changeOf(path: string): FileChange {
    const before = this.initial.get(path) ?? { exists: false, content: '' };
    const after = this.current.get(path) ?? before;
    if (!before.exists && after.exists) return { type: 'add', content: after.content };
    if (!after.exists) return { type: 'delete', content: before.content };
    return { type: 'update', unified_diff: unifiedDiff(before.content, after.content), move_path: null };
  }

  /** Paths to write (new or changed content) and to remove, in first-touch order. */
  effects(): { writes: [string, string][]; removes: string[] } {
    const writes: [string, string][] = [];
    const removes: string[] = [];
    for (const [path, after] of this.current) {
      const before = this.initial.get(path);
      if (after.exists && (before?.exists !== true || before.content !== after.content)) writes.push([path, after.content]);
      if (!after.exists && before?.exists === true) removes.push(path);
    }
    return { writes, removes };
  }
}

/** Plans every hunk against the files; throws PatchApplyError when one does not fit. */
async function plan(parsed: ParsedPatch, cwd: string, client: ExecClient, options: FsRequestOptions): Promise<PatchPlan> {
  const result = new PatchPlan(client, options);
  const resolve = (path: string): string => {
    try {
      return resolveOnEnvironment(cwd, path, `the path ${JSON.stringify(path)}`);
    } catch (error) {
      throw new PatchApplyError(errorMessage(error));
    }
  };
  for (const hunk of parsed.hunks) {
    const path = resolve(hunk.path);
    switch (hunk.type) {
      case 'add': {
        if (await result.probe(path, hunk.path)) throw new PatchApplyError(`cannot add ${hunk.path}: it already exists (use '*** Update File: ' to change it)`);
        result.current.set(path, { exists: true, content: hunk.contents });
        result.changes[path] = result.changeOf(path);
        result.added.push(hunk.path);
        break;
      }
      case 'delete': {
        const state = await result.load(path, hunk.path);
        if (!state.exists) throw new PatchApplyError(`cannot delete ${hunk.path}: no such file`);
        result.current.set(path, { exists: false, content: '' });
        result.changes[path] = result.changeOf(path);
        result.deleted.push(hunk.path);
        break;
      }
      case 'update': {
        const state = await result.load(path, hunk.path);
        if (!state.exists) throw new PatchApplyError(`cannot update ${hunk.path}: no such file`);
        const content = computeUpdate(state.content, hunk.chunks, hunk.path);
        const destination = hunk.movePath === undefined ? path : resolve(hunk.movePath);
        if (destination === path) {
          result.current.set(path, { exists: true, content });
          result.changes[path] = result.changeOf(path);
          result.modified.push(hunk.path);
          break;
        }
        // Recorded so the approval and the write know what the destination held.
        await result.load(destination, hunk.movePath ?? hunk.path);
        result.current.set(destination, { exists: true, content });
        result.current.set(path, { exists: false, content: '' });
        result.changes[path] = { type: 'update', unified_diff: unifiedDiff(state.content, content), move_path: destination };
        result.modified.push(hunk.movePath ?? hunk.path);
        break;
      }
    }
  }
  return result;
}

/**
 * `apply_patch`: the freeform patch tool. Parses and plans the whole patch on the environment it
 * names, asks for approval when the policy says so, then writes through that environment's
 * exec-server. A patch that does not parse or fit the files writes nothing and tells the model why.
 */
export function applyPatchTool(options: { multiEnvironment: boolean }): CustomTool {
  return {
    kind: 'custom',
    name: 'apply_patch',
    description: patchDescription(options.multiEnvironment),
    grammar: patchGrammar(options.multiEnvironment),
    run: async (input, context) => {
      let parsed: ParsedPatch;
      try {
        parsed = parsePatch(input);
      } catch (error) {
        if (error instanceof PatchParseError) return `apply_patch verification failed: ${error.message}`;
        throw error;
      }
      const environment = context.environment(parsed.environmentId);
      const client = await environment.client(context.signal);
      // The executor applies the sandbox to every read and write, so a patch cannot reach outside
      // the environment's writable roots, through symlinks or `..` either.
      const fsOptions: FsRequestOptions = { signal: context.signal, sandbox: context.sandbox(environment.id, environment.cwd) };
      let planned: PatchPlan;
      try {
        planned = await plan(parsed, environment.cwd, client, fsOptions);
      } catch (error) {
        if (error instanceof PatchApplyError) return `apply_patch verification failed: ${error.message}`;
        throw error;
      }

      const rejection = await approve(context, {
        kind: 'patch',
        threadId: context.threadId,
        callId: context.callId,
        environmentId: environment.id,
        cwd: environment.cwd,
        changes: planned.changes,
      });
      if (rejection !== undefined) return rejection;

      await write(client, planned, environment.id, fsOptions);
      const lines = [...planned.added.map((p) => `A ${p}`), ...planned.modified.map((p) => `M ${p}`), ...planned.deleted.map((p) => `D ${p}`)];
      context.progress(`patch applied: ${lines.length} file(s) on ${environment.id}`);
      return `Success. Updated the following files:\n${lines.join('\n')}`;
    },
  };
}

/**
 * Asks the user when the policy requires it. Returns the text for the model when the patch is
 * rejected, undefined when it may go on.
 * @throws TurnAbortedError when the user aborts.
 */
async function approve(context: ToolContext, request: ApprovalRequest): Promise<string | undefined> {
  // Other policies do not ask for patches: the sandbox confines where a patch may write.
  if (context.approvalPolicy !== 'untrusted') return undefined;
  const denial = await askUnlessCovered(context, request);
  return denial === undefined ? undefined : `apply_patch was rejected by the user: ${denial}`;
}

/**
 * Writes the planned contents (parents first), then removes deleted files and moved sources. When
 * a step fails (e.g. the sandbox refuses a later file), the files already changed get their
 * earlier contents back, so a patch applies whole or not at all (folders it created stay).
 */
async function write(client: ExecClient, planned: PatchPlan, environmentId: string, options: FsRequestOptions): Promise<void> {
  const { writes, removes } = planned.effects();
  const done: string[] = [];
  const madeDirectories = new Set<string>();
  const step = async (path: string, action: () => Promise<void>): Promise<void> => {
    try {
      await action();
      done.push(path);
    } catch (error) {
      throw new ToolError(`apply_patch failed on ${environmentId} at ${path}: ${errorMessage(error)} (${await rollBack(client, planned, done, options)})`);
    }
  };
  for (const [path, content] of writes) {
    await step(path, async () => {
      const parent = posix.dirname(path);
      if (!madeDirectories.has(parent)) {
        await client.createDirectory(parent, options);
        madeDirectories.add(parent);
      }
      await client.writeFile(path, content, options);
    });
  }
  for (const path of removes) await step(path, () => client.remove(path, options));
}

/** Restores the files a failed patch already changed, newest first; says what came of it. */
async function rollBack(client: ExecClient, planned: PatchPlan, done: readonly string[], options: FsRequestOptions): Promise<string> {
  if (done.length === 0) return 'no file was changed';
  // Undoing must not be cut short by the turn's signal: half a rollback is the worst outcome.
  const undoOptions: FsRequestOptions = { ...options, signal: undefined };
  const failed: string[] = [];
  for (const path of [...done].reverse()) {
    const before = planned.initial.get(path);
    try {
      if (before?.exists === true) await client.writeFile(path, before.content, undoOptions);
      else await client.remove(path, undoOptions);
    } catch (error) {
      failed.push(`${path} (${errorMessage(error)})`);
    }
  }
  return failed.length === 0 ? `no file was changed: the ${done.length} already written were restored` : `could not restore ${failed.join(', ')}`;
}
