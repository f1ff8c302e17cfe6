import type { z } from 'zod';
import { ToolError } from './tool.js';

/** Parses a tool's JSON arguments; a bad one is a {@link ToolError} naming the field. */
export function parseToolArgs<T extends z.ZodType>(schema: T, args: unknown, tool: string): z.output<T> {
  const result = schema.safeParse(args ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = issue.path.map(String).join('.');
    return field.length === 0 ? issue.message : `${field}: ${issue.message}`;
  });
  throw new ToolError(`invalid ${tool} arguments: ${problems.join('; ')}`);
}
