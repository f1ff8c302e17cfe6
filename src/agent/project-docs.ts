import { posix } from 'node:path';
import type { SandboxContext } from '../protocol/exec.js';
import { errorMessage } from '../util/errors.js';
import type { TurnEnvironment } from './tools/tool.js';

/** How project instruction files are found (Codex's `project_doc_*` and `project_root_markers` keys). */
export interface ProjectDocOptions {
  /** Bytes of instructions sent per environment; later files are cut, then left out. 0 sends none. */
  maxBytes: number;
  /** Names tried after `AGENTS.md` in each folder. */
  fallbackFilenames: readonly string[];
  /** A folder holding one of these is the project root. */
  rootMarkers: readonly string[];
}

/** One instruction file that was found and sent. */
export interface ProjectDocFile {
  /** Absolute path on the environment's host. */
  path: string;
  /** Bytes sent (less than the file's size when {@link truncated}). */
  bytes: number;
  truncated: boolean;
}

/** The instruction files that apply to one environment's working directory, root first. */
export interface ProjectDocs {
  environmentId: string;
  cwd: string;
  files: ProjectDocFile[];
  /** The files' texts, in the same order. */
  texts: string[];
  /** Why the environment's files could not be read (it was unreachable); the turn goes on without them. */
  error?: string;
}

/** A file in the folder overrides `AGENTS.md` there (Codex's rule). */
export const OVERRIDE_FILENAME = 'AGENTS.override.md';
/** The standard project instructions file. */
export const AGENTS_FILENAME = 'AGENTS.md';

/** `dir` and its ancestors, nearest first. */
function ancestors(dir: string): string[] {
  const result = [dir];
  for (let current = dir; posix.dirname(current) !== current;) {
    current = posix.dirname(current);
    result.push(current);
  }
  return result;
}

/**
 * Finds and reads the project instruction files for one environment, through that environment (a
 * remote environment's files come from its host): the project root is the nearest folder at or
 * above the working directory that holds a root marker (none found: only the working directory
 * counts); in each folder from the root down to the working directory, the first non-empty file of
 * `AGENTS.override.md`, `AGENTS.md` and the fallback names is taken. Files are read root first and
 * cut at {@link ProjectDocOptions.maxBytes} in total. Reads obey the environment's sandbox, so a
 * `deny` rule hides a file here too. Stats run in parallel: one round trip per step on a remote host.
 */
export async function discoverProjectDocs(environment: TurnEnvironment, options: ProjectDocOptions, sandbox: SandboxContext | null, signal: AbortSignal): Promise<ProjectDocs> {
  const docs: ProjectDocs = { environmentId: environment.id, cwd: environment.cwd, files: [], texts: [] };
  if (options.maxBytes <= 0 || !posix.isAbsolute(environment.cwd)) return docs;
  try {
    const client = await environment.client(signal);
    const request = { sandbox, signal };
    const stat = async (path: string): Promise<{ isFile: boolean; isDirectory: boolean; size: number } | undefined> => {
      try {
        const metadata = await client.getMetadata(path, request);
        return { isFile: metadata.isFile, isDirectory: metadata.isDirectory, size: Number(metadata.size) };
      } catch (error) {
        if (signal.aborted) throw error;
        // Missing, denied or unreadable: not an instruction file, as for Codex.
        return undefined;
      }
    };
    const above = ancestors(posix.normalize(environment.cwd));
    const markers = await Promise.all(above.map((dir) => Promise.all(options.rootMarkers.map((marker) => stat(posix.join(dir, marker))))));
    const rootIndex = markers.findIndex((found) => found.some((entry) => entry !== undefined));
    const dirs = (rootIndex < 0 ? [above[0]!] : above.slice(0, rootIndex + 1)).reverse();
    const names = [OVERRIDE_FILENAME, AGENTS_FILENAME, ...options.fallbackFilenames.filter((name) => name !== OVERRIDE_FILENAME && name !== AGENTS_FILENAME)];
    const candidates = await Promise.all(dirs.map((dir) => Promise.all(names.map(async (name) => ({ path: posix.join(dir, name), meta: await stat(posix.join(dir, name)) })))));
    let budget = options.maxBytes;
    for (const inDir of candidates) {
      if (budget <= 0) break;
      const chosen = inDir.find((candidate) => candidate.meta?.isFile === true && candidate.meta.size > 0);
      if (chosen === undefined) continue;
      let data: Buffer;
      try {
        data = await client.readFile(chosen.path, request);
      } catch (error) {
        if (signal.aborted) throw error;
        continue;
      }
      const text = new TextDecoder().decode(data.subarray(0, budget));
      if (text.trim().length === 0) continue;
      const truncated = data.length > budget;
      const bytes = Math.min(data.length, budget);
      budget -= bytes;
      docs.files.push({ path: chosen.path, bytes, truncated });
      docs.texts.push(text);
    }
    return docs;
  } catch (error) {
    if (signal.aborted) throw error;
    return { ...docs, files: [], texts: [], error: errorMessage(error) };
  }
}
