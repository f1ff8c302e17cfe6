import { posix } from 'node:path';
import { z } from 'zod';
import type { ExecClient, FsRequestOptions } from '../../exec/client.js';
import { errorMessage } from '../../util/errors.js';
import { parseToolArgs } from './args.js';
import { resolveOnEnvironment } from './paths.js';
import { ToolError, type FunctionTool } from './tool.js';

const ArgsSchema = z
  .object({
    dir_path: z.string().min(1),
    offset: z.number().int().min(1).optional(),
    limit: z.number().int().min(1).max(1000).optional(),
    depth: z.number().int().min(1).max(10).optional(),
    environment_id: z.string().optional(),
  })
  .strict();

/** Bound on directories read by one call, so a huge tree cannot stall a turn. */
const MAX_DIRECTORIES_READ = 500;

interface Line {
  text: string;
}

async function walk(client: ExecClient, dir: string, depth: number, indent: string, out: Line[], budget: { dirs: number }, options: FsRequestOptions): Promise<void> {
  if (budget.dirs <= 0) return;
  budget.dirs -= 1;
  const entries = (await client.readDirectory(dir, options)).sort((a, b) => a.fileName.localeCompare(b.fileName));
  for (const entry of entries) {
    const suffix = entry.isDirectory ? '/' : entry.isFile ? '' : '?';
    out.push({ text: `${indent}${entry.fileName}${suffix}` });
    if (entry.isDirectory && depth > 1) await walk(client, posix.join(dir, entry.fileName), depth - 1, `${indent}  `, out, budget, options);
  }
}

/** `list_dir`: lists a directory tree in an environment, sorted, paginated. */
export function listDirTool(options: { multiEnvironment: boolean }): FunctionTool {
  const properties: Record<string, unknown> = {
    dir_path: { type: 'string', description: 'Directory to list, absolute or relative to the working directory.' },
    offset: { type: 'number', description: 'First entry to return, 1-based. Default 1.' },
    limit: { type: 'number', description: 'Maximum entries to return. Default 25.' },
    depth: { type: 'number', description: 'How many levels to descend. Default 2.' },
  };
  if (options.multiEnvironment) properties.environment_id = { type: 'string', description: 'Environment to list in; defaults to the primary one.' };
  return {
    kind: 'function',
    name: 'list_dir',
    description: 'List the entries of a directory (directories end with /), descending a few levels.',
    parameters: { type: 'object', properties, required: ['dir_path'], additionalProperties: false },
    run: async (raw, context) => {
      const args = parseToolArgs(ArgsSchema, raw, 'list_dir');
      const { offset = 1, limit = 25, depth = 2 } = args;
      const environment = context.environment(args.environment_id);
      const dir = resolveOnEnvironment(environment.cwd, args.dir_path, 'dir_path');
      const client = await environment.client(context.signal);
      const lines: Line[] = [];
      try {
        await walk(client, dir, depth, '', lines, { dirs: MAX_DIRECTORIES_READ }, { signal: context.signal, sandbox: context.sandbox(environment.id, environment.cwd) });
      } catch (error) {
        throw new ToolError(`list_dir: cannot list ${dir} on ${environment.id}: ${errorMessage(error)}`);
      }
      const page = lines.slice(offset - 1, offset - 1 + limit);
      const more = lines.length > offset - 1 + limit ? `\nMore than ${limit} entries found; continue with offset ${offset + limit}.` : '';
      return `Absolute path: ${dir}\n${page.map((line) => line.text).join('\n')}${more}`;
    },
  };
}
