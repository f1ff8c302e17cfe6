import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ThreadListEntrySchema, ThreadStateSchema, ThreadStatusSchema } from '../protocol/status.js';
import type { ThreadManager } from '../session/thread-manager.js';
import { errorMessage } from '../util/errors.js';
import { defineTool, type McpTool, type ToolExtra } from './tools.js';
import { plainError } from './turn-call.js';

/** How long `turn/interrupt` waits for the interrupted turn to wind down before it answers. */
export const INTERRUPT_WAIT_MS = 10_000;

/** The longest wait a call may ask for (the largest timer Node.js has). */
export const MAX_WAIT_MS = 2_147_483_647;

/** A wait budget argument in milliseconds. */
export const WaitMsSchema = z.number().int().min(0).max(MAX_WAIT_MS);

/** What the status tools need from the server. */
export interface OpsToolsOptions {
  threads: ThreadManager;
  names: { status: string; threadList: string; threadClose: string; turnInterrupt: string };
  /** Aborts when the client cancels the call. */
  cancelSignal(extra: ToolExtra): AbortSignal;
}

function jsonResult(structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(structured, null, 2) }], structuredContent: structured };
}

/** `codex-status`, `thread/list`, `thread/close` and `turn/interrupt`. */
export function opsTools(options: OpsToolsOptions): McpTool[] {
  const { threads, names } = options;
  return [
    defineTool({
      name: names.status,
      title: 'Codex thread status',
      description:
        'The state of a thread (idle, running, waiting-for-approval, failed), its current turn’s progress, its last agent message and its environments. With waitMs, first waits up to that long for the thread’s turns (or turnId) to finish, e.g. after codex or codex-reply answered with status "running".',
      input: z.object({
        threadId: z.string().describe('The thread id returned by codex.'),
        turnId: z.string().optional().describe('A turn of the thread to report on (and to wait for) specifically.'),
        waitMs: WaitMsSchema.optional().describe('Wait up to this many milliseconds for the turn(s) to finish before answering (default 0: answer at once).'),
      }),
      output: z.object(ThreadStatusSchema.shape),
      annotations: { readOnlyHint: true },
      run: async (args, extra) => {
        try {
          if (args.waitMs !== undefined && args.waitMs > 0)
            await threads.waitForTurns(args.threadId, { turnId: args.turnId, timeoutMs: args.waitMs, signal: options.cancelSignal(extra) });
          const status = await threads.status(args.threadId, args.turnId);
          return jsonResult({ ...status });
        } catch (error) {
          return plainError(`${names.status}: ${errorMessage(error)}`);
        }
      },
    }),

    defineTool({
      name: names.threadList,
      title: 'List threads',
      description:
        'Threads known to this server (in memory and stored), most recent activity first: id, created, last activity, status and environments. One page at a time: when more follow, the answer has nextCursor; pass it as cursor for the next page.',
      input: z.object({
        status: ThreadStateSchema.optional().describe('Only threads in this state.'),
        limit: z.number().int().min(1).max(1000).optional().describe('At most this many threads per page (default 100).'),
        cursor: z.string().max(1000).optional().describe('The nextCursor of the previous page; omitted: the first page.'),
      }),
      output: z.object({
        threads: z.array(ThreadListEntrySchema),
        total: z.number().describe('Matching threads on all pages.'),
        nextCursor: z.string().optional().describe('Where the next page starts; absent on the last page.'),
      }),
      annotations: { readOnlyHint: true },
      run: async (args) => {
        try {
          const page = await threads.list({ status: args.status, limit: args.limit ?? 100, cursor: args.cursor });
          return jsonResult({ threads: page.threads, total: page.total, ...(page.nextCursor === undefined ? {} : { nextCursor: page.nextCursor }) });
        } catch (error) {
          return plainError(`${names.threadList}: ${errorMessage(error)}`);
        }
      },
    }),

    defineTool({
      name: names.threadClose,
      title: 'Close a thread',
      description:
        'Closes a thread with no running turn: stops its commands still registered and its MCP servers, and frees it from memory; it can be continued later with codex-reply (read back from its file). With archive: true its file is also moved to the archived folder, so it is no longer listed or continued; nothing is deleted.',
      input: z.object({
        threadId: z.string().describe('The thread id.'),
        archive: z.boolean().optional().describe('Also move the thread file to the archived folder (default false).'),
      }),
      output: z.object({
        threadId: z.string(),
        archivedTo: z.string().nullable().describe('Where the thread file went, when archived.'),
        stoppedCommands: z.number().describe('Commands of the thread that were stopped.'),
        stoppedMcpServers: z.number().describe('MCP servers of the thread that were stopped.'),
      }),
      annotations: { destructiveHint: true, idempotentHint: false },
      run: async (args) => {
        try {
          const closed = await threads.closeThread(args.threadId, { archive: args.archive === true });
          const stopped = `${closed.stoppedCommands} command${closed.stoppedCommands === 1 ? '' : 's'} and ${closed.stoppedMcpServers} MCP server${closed.stoppedMcpServers === 1 ? '' : 's'} stopped`;
          const text = `Closed thread ${closed.threadId} (${stopped})${closed.archivedTo === null ? '; codex-reply continues it' : `; archived to ${closed.archivedTo}`}.`;
          return { content: [{ type: 'text', text }], structuredContent: { ...closed } };
        } catch (error) {
          return plainError(`${names.threadClose}: ${errorMessage(error)}`);
        }
      },
    }),

    defineTool({
      name: names.turnInterrupt,
      title: 'Interrupt a turn',
      description:
        'Stops the running turn of a thread (or the given turn; a queued one is withdrawn) and its commands, also when another server process runs it. The call that started the turn, if still open, is answered as interrupted. Waits briefly for the turn to wind down.',
      input: z.object({
        threadId: z.string().describe('The thread id.'),
        turnId: z.string().optional().describe('The turn to stop; default: the thread’s running turn.'),
      }),
      output: z.object({
        threadId: z.string(),
        turnId: z.string().nullable().describe('The turn interrupted, null when nothing was running.'),
        interrupted: z.boolean(),
        stopped: z.boolean().describe('The turn has finished (false: still winding down).'),
        status: ThreadStateSchema,
      }),
      annotations: { destructiveHint: true, idempotentHint: true },
      run: async (args, extra) => {
        try {
          const interrupted = await threads.interrupt(args.threadId, args.turnId);
          let stopped = true;
          if (interrupted !== undefined) {
            stopped = await threads.waitForTurns(args.threadId, { turnId: interrupted.turnId, timeoutMs: INTERRUPT_WAIT_MS, signal: options.cancelSignal(extra) });
          }
          const { status } = await threads.status(args.threadId);
          const structured = { threadId: args.threadId, turnId: interrupted?.turnId ?? null, interrupted: interrupted !== undefined, stopped, status };
          const text =
            interrupted === undefined
              ? `Nothing to interrupt: thread ${args.threadId} has no running turn${args.turnId === undefined ? '' : ` ${args.turnId}`} here (status ${status}).`
              : `Interrupted turn ${interrupted.turnId} of thread ${args.threadId}${interrupted.elsewhere === undefined ? '' : ` (running in server process pid ${interrupted.elsewhere.pid})`}${stopped ? '' : ' (still winding down)'}; status ${status}.`;
          return { content: [{ type: 'text', text }], structuredContent: structured };
        } catch (error) {
          return plainError(`${names.turnInterrupt}: ${errorMessage(error)}`);
        }
      },
    }),
  ];
}
