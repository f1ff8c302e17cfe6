import { z } from 'zod';

/**
 * `text` parsed as JSON and checked by `schema`: `{ value }`, or `{ error }` saying why not (not
 * JSON, or what the schema found wrong).
 */
export function parseJsonAs<T>(schema: z.ZodType<T>, text: string): { value: T; error?: undefined } | { value?: undefined; error: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { error: `not JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { value: parsed.data } : { error: z.prettifyError(parsed.error) };
}
