/**
 * `[model_providers.ID]` of config.toml, and the built-in `openai` provider. Only the Responses
 * API is supported, so `wire_api = "chat"` is refused with a message that says so.
 */
import { z } from 'zod';
import { stringTable, tomlTable } from './validation.js';

/** Id of the built-in provider, and the provider used when no layer sets `model_provider`. */
export const DEFAULT_MODEL_PROVIDER_ID = 'openai';

/** `base_url` of the built-in `openai` provider. */
export const OPENAI_BASE_URL = 'https://api.openai.com/v1';

/** The built-in providers as config.toml would write them; a file may override their keys. */
export const BUILT_IN_MODEL_PROVIDERS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  [DEFAULT_MODEL_PROVIDER_ID]: { name: 'OpenAI', base_url: OPENAI_BASE_URL, env_key: 'OPENAI_API_KEY', requires_openai_auth: true },
};

/** Codex caps both retry counts at 100. */
const MAX_RETRIES = 100;

const stringMap = stringTable();
const nonNegativeInt = z.int().min(0);

/** One `[model_providers.ID]`. */
export const ModelProviderTomlSchema = tomlTable(
  z.object({
    name: z.string().optional(),
    base_url: z.string().transform((value, ctx) => {
      if (URL.canParse(value) && /^https?:$/.test(new URL(value).protocol)) return value;
      ctx.issues.push({ code: 'custom', input: value, message: `expected an http or https URL, got ${JSON.stringify(value)}` });
      return z.NEVER;
    }),
    env_key: z.string().optional(),
    wire_api: z
      .string()
      .default('responses')
      .transform((value, ctx) => {
        if (value === 'responses') return 'responses' as const;
        const message =
          value === 'chat'
            ? '`wire_api = "chat"` is no longer supported; only the Responses API is supported (set `wire_api = "responses"`)'
            : `expected responses (only the Responses API is supported), got ${JSON.stringify(value)}`;
        ctx.issues.push({ code: 'custom', input: value, message });
        return z.NEVER;
      }),
    http_headers: stringMap.default({}),
    env_http_headers: stringMap.default({}),
    query_params: stringMap.default({}),
    request_max_retries: nonNegativeInt.max(MAX_RETRIES).default(4),
    stream_max_retries: nonNegativeInt.max(MAX_RETRIES).default(5),
    stream_idle_timeout_ms: z.int().min(1).default(300_000),
    requires_openai_auth: z.boolean().default(false),
    // A Codex key, accepted without a warning and not used here.
    supports_websockets: z.unknown().optional(),
  }),
).transform((raw) => ({
  /** Display name. */
  name: raw.name,
  /** `base_url`: the Responses API is at `<baseUrl>/responses`. */
  baseUrl: raw.base_url,
  /** `env_key`: the variable holding the API key; none means no `Authorization` header. */
  envKey: raw.env_key,
  /** `wire_api`: only the Responses API is supported. @default 'responses' */
  wireApi: raw.wire_api,
  /** `http_headers`: sent with every request. @default {} */
  httpHeaders: raw.http_headers,
  /** `env_http_headers`: header name → variable whose value is sent, when set. @default {} */
  envHttpHeaders: raw.env_http_headers,
  /** `query_params`: appended to every request URL. @default {} */
  queryParams: raw.query_params,
  /** `request_max_retries`: retries of a failed request, at most 100. @default 4 */
  requestMaxRetries: raw.request_max_retries,
  /** `stream_max_retries`: reconnections of a dropped stream, at most 100. @default 5 */
  streamMaxRetries: raw.stream_max_retries,
  /** `stream_idle_timeout_ms`: a stream silent this long is dropped. @default 300000 */
  streamIdleTimeoutMs: raw.stream_idle_timeout_ms,
  /**
   * `requires_openai_auth`: without the `env_key` variable, the API key Codex stored with
   * `codex login --with-api-key` (`$CODEX_HOME/auth.json`) is used. True for the built-in
   * `openai` provider. @default false
   */
  requiresOpenaiAuth: raw.requires_openai_auth,
}));

/** One `[model_providers.ID]`, resolved. */
export type ModelProviderConfig = z.output<typeof ModelProviderTomlSchema>;
