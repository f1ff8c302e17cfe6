import type { TurnEnvironment } from './tools/tool.js';

/** Our base instructions: concise, and explicit about environments. */
export const BASE_INSTRUCTIONS = `You are a coding agent working for a user through tools. You can run commands, read and edit files, and look at images in one or more execution environments: this machine, remote hosts or containers.

How to work:
- Understand the task, look at the relevant code, make the change, and check it (build, tests, or a quick run) when that is practical.
- Use exec_command to run shell commands and write_stdin to talk to commands that are still running. Prefer fast read-only commands (rg, ls, cat, sed -n) to explore.
- Edit files with apply_patch. Keep changes minimal and consistent with the surrounding code.
- Each tool call runs in exactly one environment. When several environments are available, name the one you mean with environment_id (or the "*** Environment ID:" line of a patch); without it the call runs in the primary environment. Paths are interpreted on that environment's host, relative to its working directory.
- If a command is rejected by the user or fails, do not repeat it unchanged; adapt or explain.
- Never expose secrets you come across.

When you are done, reply with a short summary of what you did and anything the user should check.`;

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
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
export function environmentContextMessage(entries: readonly EnvironmentContextEntry[], now: Date, timezone: string): string {
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
  lines.push(`  <current_date>${now.toISOString().slice(0, 10)}</current_date>`);
  lines.push(`  <timezone>${escapeXml(timezone)}</timezone>`);
  lines.push('</environment_context>');
  return lines.join('\n');
}
