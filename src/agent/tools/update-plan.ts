import { z } from 'zod';
import { PlanUpdateSchema } from '../../protocol/thread.js';
import { parseToolArgs } from './args.js';
import type { FunctionTool } from './tool.js';

/** The name Codex gives its planning tool. */
export const UPDATE_PLAN_TOOL = 'update_plan';

/** The arguments' JSON Schema, derived from the one schema of a plan update (without `$schema`, as tools send it). */
let parameters: Record<string, unknown> | undefined;

/**
 * {@link parameters}, derived at the first thread's tools: this module loads with the server (for
 * {@link UPDATE_PLAN_TOOL}), and deriving a JSON Schema is work a start does not need.
 */
function planParameters(): Record<string, unknown> {
  parameters ??= Object.fromEntries(Object.entries(z.toJSONSchema(PlanUpdateSchema, { io: 'input' })).filter(([key]) => key !== '$schema'));
  return parameters;
}

/**
 * `update_plan`: the model keeps a short plan of steps and marks its progress. Nothing runs; the
 * plan is shown to the MCP client (progress notifications, `codex-status`) and stays in the
 * thread's history, where the model reads it back.
 */
export function updatePlanTool(): FunctionTool {
  return {
    kind: 'function',
    name: UPDATE_PLAN_TOOL,
    description:
      'Keeps the task plan the user sees up to date. Send the whole plan each time: short steps, each pending, in_progress or completed, with at most one in_progress. Use it for work of several steps; skip it for simple tasks. Mark a step completed as soon as it is done.',
    parameters: planParameters(),
    run(args, context) {
      const update = parseToolArgs(PlanUpdateSchema, args, UPDATE_PLAN_TOOL);
      context.plan(update);
      return Promise.resolve('Plan updated');
    },
  };
}
