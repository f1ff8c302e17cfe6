import { z } from 'zod';
import { errorMessage } from '../../util/errors.js';
import { parseToolArgs } from './args.js';
import { resolveOnEnvironment } from './paths.js';
import { ToolError, type FunctionTool } from './tool.js';

/** Largest image `view_image` sends to the model. */
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;

const ArgsSchema = z.object({ path: z.string().min(1), environment_id: z.string().optional() }).strict();

function mimeOf(bytes: Buffer): string | undefined {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.subarray(0, 6).toString('latin1') === 'GIF87a' || bytes.subarray(0, 6).toString('latin1') === 'GIF89a') return 'image/gif';
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp';
  return undefined;
}

/** `view_image`: reads an image in an environment and shows it to the model. */
export function viewImageTool(options: { multiEnvironment: boolean }): FunctionTool {
  const properties: Record<string, unknown> = {
    path: { type: 'string', description: 'Path of a PNG, JPEG, GIF or WebP image, absolute or relative to the working directory.' },
  };
  if (options.multiEnvironment) properties.environment_id = { type: 'string', description: 'Environment to read from; defaults to the primary one.' };
  return {
    kind: 'function',
    name: 'view_image',
    description: 'Look at an image file from an environment (screenshots, diagrams, rendered output).',
    parameters: { type: 'object', properties, required: ['path'], additionalProperties: false },
    run: async (raw, context) => {
      const args = parseToolArgs(ArgsSchema, raw, 'view_image');
      const environment = context.environment(args.environment_id);
      const path = resolveOnEnvironment(environment.cwd, args.path, 'path');
      const client = await environment.client(context.signal);
      const options = { signal: context.signal, sandbox: context.sandbox(environment.id, environment.cwd) };
      let bytes: Buffer;
      try {
        const meta = await client.getMetadata(path, options);
        if (!meta.isFile) throw new ToolError(`view_image: ${path} is not a file`);
        if (meta.size > MAX_IMAGE_BYTES) throw new ToolError(`view_image: ${path} is ${meta.size} bytes, over the ${MAX_IMAGE_BYTES}-byte limit`);
        bytes = await client.readFile(path, options);
      } catch (error) {
        if (error instanceof ToolError) throw error;
        throw new ToolError(`view_image: cannot read ${path} on ${environment.id}: ${errorMessage(error)}`);
      }
      const mime = mimeOf(bytes);
      if (mime === undefined) throw new ToolError(`view_image: ${path} is not a PNG, JPEG, GIF or WebP image`);
      return [{ type: 'input_image', image_url: `data:${mime};base64,${bytes.toString('base64')}` }];
    },
  };
}
