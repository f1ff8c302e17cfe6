import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ToolsListEra } from '../mcp/handshake.js';
import { codexHome } from './codex-home.js';

/**
 * The worker's `tools/list` results, written at build time (tools/tool-listings.js) beside the
 * bundle, so the relay (mcp-relay.ts) can answer a client's first `tools/list` without loading the
 * tools' zod schemas. Nothing here is imported at run time but Node's own modules: the relay's
 * bundle stays small.
 *
 * The listing depends on one input only: whether the tool names are portable (`environment_add`,
 * …), set by `--portable-tool-names` or by `multienv.portable_tool_names` in the configuration.
 * Neither the protocol version, nor the client's capabilities, nor anything else changes it
 * (test/integration/mcp-early-answers.test.ts compares every one with the server's answer). The
 * flag the relay reads itself; the configuration it does not parse (TOML and its layering are the
 * worker's), so where the configuration might set the key, the relay does not answer at all.
 */

/** The file the build writes beside `dist/cli/main.js`. */
export const TOOL_LISTINGS_FILE = 'tool-listings.json';

/** The variants of the listing: the default tool names, or the portable ones. */
export const TOOL_LISTING_VARIANTS = ['default', 'portable'] as const;

/** Which listing the worker will serve, as far as the relay can tell. */
export interface ToolListingInputs {
  /** `--portable-tool-names` was given: the portable names, whatever the configuration says. */
  portableFlag: boolean;
  /** The `-c key=value` options. */
  overrides: readonly string[];
  env: NodeJS.ProcessEnv;
}

/**
 * The name of the key that makes the names portable, or a TOML escape (`\u…`, `\U…`, `\x…`) that
 * could spell it in a quoted key: either in the configuration, and it might set the key.
 */
const MAY_SET_PORTABLE = /portable_tool_names|\\[uUx]/;

type PlainObject = Record<string, unknown>;

function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The variant the worker will serve, or undefined when the configuration might choose it:
 * `config.toml` (with its profiles) or a `-c` option names the key, or `config.toml` cannot be read
 * (the worker then reports why).
 */
function variantOf(inputs: ToolListingInputs): (typeof TOOL_LISTING_VARIANTS)[number] | undefined {
  if (inputs.portableFlag) return 'portable';
  if (inputs.overrides.some((override) => MAY_SET_PORTABLE.test(override))) return undefined;
  let text: string;
  try {
    // The file the worker reads: CONFIG_FILE_NAME in config/layers.ts (not imported: it loads the TOML parser).
    text = readFileSync(join(codexHome(inputs.env), 'config.toml'), 'utf8');
  } catch (error) {
    return isPlainObject(error) && error.code === 'ENOENT' ? 'default' : undefined;
  }
  return MAY_SET_PORTABLE.test(text) ? undefined : 'default';
}

/** The results in `file` for `variant`, by era; undefined when the file is missing (run from the sources) or not as the build writes it. */
function readListings(file: string, variant: string): Partial<Record<ToolsListEra, PlainObject>> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
  const listings = isPlainObject(parsed) ? parsed[variant] : undefined;
  if (!isPlainObject(listings)) return undefined;
  const result: Partial<Record<ToolsListEra, PlainObject>> = {};
  for (const era of ['legacy', 'modern'] as const) {
    const listing = listings[era];
    if (isPlainObject(listing) && Array.isArray(listing.tools)) result[era] = listing;
  }
  return result;
}

/**
 * The relay's `toolsList` (see `EarlyAnswerOptions`): the worker's result for an era, read from
 * `file` when first asked (not at start: most of a start has no `tools/list` before the worker is
 * up), or undefined when the relay cannot tell which listing the worker serves.
 */
export function builtToolsList(file: string, inputs: ToolListingInputs): (era: ToolsListEra) => Record<string, unknown> | undefined {
  let listings: Partial<Record<ToolsListEra, PlainObject>> | undefined | null = null;
  return (era) => {
    if (listings === null) {
      const variant = variantOf(inputs);
      listings = variant === undefined ? undefined : readListings(file, variant);
    }
    return listings?.[era];
  };
}
