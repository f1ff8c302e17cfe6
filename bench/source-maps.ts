import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { z } from 'zod';

/** A source map file as the bundler writes it (the fields `node:module`'s SourceMap reads). */
const SourceMapSchema = z.object({
  version: z.number(),
  file: z.string().default(''),
  sourceRoot: z.string().default(''),
  sources: z.array(z.string()),
  names: z.array(z.string()),
  mappings: z.string(),
});

const sourceMaps = new Map<string, SourceMap | undefined>();

/** The source map beside a bundled script (`<path>.map`), read once; undefined when there is none. */
export function sourceMapOf(path: string): SourceMap | undefined {
  if (!sourceMaps.has(path)) {
    const mapPath = `${path}.map`;
    sourceMaps.set(path, existsSync(mapPath) ? new SourceMap({ ...SourceMapSchema.parse(JSON.parse(readFileSync(mapPath, 'utf8'))), sourcesContent: [] }) : undefined);
  }
  return sourceMaps.get(path);
}
