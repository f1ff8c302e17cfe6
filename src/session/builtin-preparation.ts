import type { GlobalInstructions } from '../agent/instructions.js';
import { discoverProjectDocs, type ProjectDocs } from '../agent/project-docs.js';
import { applyPatchTool } from '../agent/tools/apply-patch.js';
import { execCommandTool, writeStdinTool } from '../agent/tools/exec-command.js';
import { listDirTool } from '../agent/tools/list-dir.js';
import { mcpFailureNotice, mcpTools } from '../agent/tools/mcp-tool.js';
import type { AgentTool, TurnEnvironment } from '../agent/tools/tool.js';
import { updatePlanTool } from '../agent/tools/update-plan.js';
import { viewImageTool } from '../agent/tools/view-image.js';
import type { McpTurnServers, ThreadMcpServers } from '../environments/mcp-servers.js';
import type { SandboxContext } from '../protocol/exec.js';
import type { ThreadEnvironment } from '../protocol/thread.js';
import type { ResolvedThreadSettings } from './settings.js';

/** What a built-in turn gathered from its environments and MCP servers before the model is called. */
export interface PreparedTurn {
  /** The shell of each environment, in the turn's order (undefined when it is not known). */
  shells: (string | undefined)[];
  projectDocs: ProjectDocs[];
  globalInstructions: GlobalInstructions | undefined;
  tools: readonly AgentTool[];
  mcpNotice: string | undefined;
  requiredFailure: McpTurnServers['failures'][number] | undefined;
}

/** What {@link prepareTurn} needs. */
export interface TurnPreparation {
  settings: ResolvedThreadSettings;
  environments: readonly TurnEnvironment[];
  selection: readonly ThreadEnvironment[];
  mcp: ThreadMcpServers;
  sandboxOf(environmentId: string, cwd: string): SandboxContext | null;
  signal: AbortSignal;
  /** Reports what went wrong but does not stop the turn (an unreadable AGENTS.md, an MCP server that failed). */
  progress(message: string): void;
  globalInstructions(): Promise<GlobalInstructions | undefined>;
}

/**
 * What a turn needs from its environments before the model is called: each one's shell and
 * AGENTS.md files, the user's global instructions (all at once: one round trip each), and the
 * tools, with the thread's MCP servers started.
 */
export async function prepareTurn(turn: TurnPreparation): Promise<PreparedTurn> {
  const { environments, signal } = turn;
  const [shells, projectDocs, globalInstructions] = await Promise.all([
    Promise.all(
      environments.map(async (environment) => {
        try {
          return (await environment.client(signal)).info.shell?.name ?? undefined;
        } catch {
          return undefined;
        }
      }),
    ),
    Promise.all(environments.map((environment) => discoverProjectDocs(environment, turn.settings.projectDocs, turn.sandboxOf(environment.id, environment.cwd), signal))),
    turn.globalInstructions(),
  ]);
  for (const docs of projectDocs) {
    if (docs.error !== undefined) turn.progress(`AGENTS.md files of environment ${docs.environmentId} could not be read: ${docs.error}`);
  }
  const multi = environments.length > 1;
  const builtIn = agentTools(multi);
  const mcp = await prepareMcpServers(turn);
  // The built-in tools are shared (their JSON is built once); MCP tools make a new array.
  const tools = mcp.tools.length === 0 ? builtIn : [...builtIn, ...mcpTools(mcp.tools, { reservedNames: builtIn.map((tool) => tool.name), multiEnvironment: multi })];
  const mcpNotice = mcpFailureNotice(mcp.failures);
  const requiredFailure = mcp.failures.find((failure) => failure.required);
  return { shells, projectDocs, globalInstructions, tools, mcpNotice, requiredFailure };
}

/** Starts the MCP servers this turn can use; each failure is also a progress event. */
async function prepareMcpServers(turn: TurnPreparation): Promise<McpTurnServers> {
  if (!turn.mcp.configured) return { tools: [], failures: [] };
  const prepared = await turn.mcp.prepare(turn.selection, turn.signal);
  for (const failure of prepared.failures) turn.progress(failure.error);
  return prepared;
}

/** The tools offered, by whether the turn has several environments; built once each. */
const AGENT_TOOLS = new Map<boolean, readonly AgentTool[]>();

/**
 * The tools of a turn. The same array every time (the tools are stateless), so the model client
 * serializes their specs once instead of with every request.
 */
function agentTools(multiEnvironment: boolean): readonly AgentTool[] {
  let tools = AGENT_TOOLS.get(multiEnvironment);
  if (tools === undefined) {
    tools = [
      execCommandTool({ multiEnvironment }),
      writeStdinTool(),
      applyPatchTool({ multiEnvironment }),
      viewImageTool({ multiEnvironment }),
      listDirTool({ multiEnvironment }),
      updatePlanTool(),
    ];
    AGENT_TOOLS.set(multiEnvironment, tools);
  }
  return tools;
}
