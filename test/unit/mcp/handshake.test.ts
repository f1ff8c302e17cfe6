// The answers given before the server exists (handshake.ts) against the SDK's own: the versions it
// negotiates, and the requests its schema accepts. An early answer to a request the server would
// refuse could not be taken back, so every request answered early must be one the SDK accepts.
import { InitializeRequestSchema, LATEST_PROTOCOL_VERSION, ListToolsRequestSchema, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { LEGACY_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS, earlyAnswer, plainToolsList } from '../../../src/mcp/handshake.js';

const VERSION = '9.9.9';
const initialize = (params: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ jsonrpc: '2.0', id: 7, method: 'initialize', params, ...extra });
const valid = { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'client', version: '1' } };
const discover = (meta: unknown, id: unknown = 'd'): Record<string, unknown> => ({ jsonrpc: '2.0', id, method: 'server/discover', params: { _meta: meta } });
const modernMeta = { 'io.modelcontextprotocol/protocolVersion': MODERN_PROTOCOL_VERSIONS[0], 'io.modelcontextprotocol/clientCapabilities': {} };

describe('early answers (handshake.ts)', () => {
  it('negotiates the versions the installed SDK negotiates, newest first', () => {
    expect(LEGACY_PROTOCOL_VERSIONS).toEqual(SUPPORTED_PROTOCOL_VERSIONS);
    expect(LEGACY_PROTOCOL_VERSIONS[0]).toBe(LATEST_PROTOCOL_VERSION);
  });

  it('answers only initialize requests the SDK accepts, and replays them to the server', () => {
    const cases: unknown[] = [
      initialize(valid),
      initialize({ ...valid, protocolVersion: '1999-01-01' }),
      initialize({ ...valid, clientInfo: { name: 'c', version: '1', title: 'C', websiteUrl: 'https://example.invalid', description: 'd', extra: 1 } }),
      initialize({
        ...valid,
        capabilities: {
          experimental: { x: {} },
          sampling: { context: {}, tools: {} },
          elicitation: { form: { applyDefaults: true }, url: {} },
          roots: { listChanged: true },
          tasks: { list: {}, cancel: {}, requests: { sampling: { createMessage: {} }, elicitation: { create: {} } } },
          extensions: { 'vendor/x': {} },
          ownCapability: 5,
        },
      }),
      initialize({ ...valid, unknownMember: true }),
      // Each of these the SDK refuses, or only its schema can judge: left to the server.
      initialize({ ...valid, protocolVersion: 2025 }),
      initialize({ ...valid, clientInfo: { name: 'c' } }),
      initialize({ ...valid, clientInfo: { name: 'c', version: '1', title: 3 } }),
      initialize({ ...valid, clientInfo: { name: 'c', version: '1', icons: [{ src: 'x' }] } }),
      initialize({ ...valid, capabilities: [] }),
      initialize({ ...valid, capabilities: { roots: { listChanged: 'yes' } } }),
      initialize({ ...valid, capabilities: { roots: null } }),
      initialize({ ...valid, capabilities: { sampling: { tools: 1 } } }),
      initialize({ ...valid, capabilities: { elicitation: { form: { applyDefaults: 'no' } } } }),
      initialize({ ...valid, capabilities: { experimental: { x: 1 } } }),
      initialize({ ...valid, capabilities: { extensions: { x: 'y' } } }),
      initialize({ ...valid, capabilities: { tasks: { requests: { sampling: { createMessage: 2 } } } } }),
      initialize({ ...valid, _meta: { progressToken: 1 } }),
      initialize({ ...valid, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } }),
      initialize(valid, { id: 1.5 }),
      initialize(valid, { id: null }),
      initialize(valid, { jsonrpc: '1.0' }),
      initialize(valid, { extra: 'member' }),
      initialize(undefined),
      initialize(valid, { method: 'initialise' }),
    ];
    const answered = cases.filter((request) => earlyAnswer(request, VERSION) !== undefined);
    expect(answered).toHaveLength(5);
    for (const request of answered) {
      expect(InitializeRequestSchema.safeParse(request).success).toBe(true);
      const early = earlyAnswer(request, VERSION)!;
      expect(early.replay).toEqual(request);
      expect(early.answer).toMatchObject({ jsonrpc: '2.0', id: 7, result: { serverInfo: { name: 'codex-multienv-mcp', version: VERSION } } });
    }
    expect(earlyAnswer(cases[1], VERSION)?.answer).toMatchObject({ result: { protocolVersion: LATEST_PROTOCOL_VERSION } });
  });

  it('takes as a plain tools/list only one asking for the whole listing that the SDK accepts, of the era it names', () => {
    const list = (params?: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      jsonrpc: '2.0',
      id: 'l',
      method: 'tools/list',
      ...(params === undefined ? {} : { params }),
      ...extra,
    });
    const plain: [unknown, string][] = [
      [list(), 'legacy'],
      [list({}), 'legacy'],
      [list({ _meta: { progressToken: 3 } }), 'legacy'],
      [list({ _meta: modernMeta }), 'modern'],
      [list({ _meta: { ...modernMeta, progressToken: 'p', 'vendor/x': 1 } }), 'modern'],
    ];
    for (const [request, era] of plain) {
      expect(ListToolsRequestSchema.safeParse(request).success).toBe(true);
      expect(plainToolsList(request)).toEqual({ id: 'l', era, request });
    }
    // A page, params of its own, a version not served here, a log level, a task: left to the server.
    for (const request of [
      list({ cursor: 'next' }),
      list({ other: 1 }),
      list([]),
      list({ _meta: { ...modernMeta, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }),
      list({ _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN_PROTOCOL_VERSIONS[0] } }),
      list({ _meta: { ...modernMeta, 'io.modelcontextprotocol/logLevel': 'debug' } }),
      list({ _meta: { 'io.modelcontextprotocol/related-task': { taskId: 't' } } }),
      list(undefined, { id: null }),
      list(undefined, { method: 'tools/call' }),
    ])
      expect(plainToolsList(request)).toBeUndefined();
  });

  it('answers a plainly valid server/discover, done with it; leaves every other to the server (which answers its errors)', () => {
    expect(earlyAnswer(discover(modernMeta), VERSION)).toEqual({
      answer: {
        jsonrpc: '2.0',
        id: 'd',
        result: expect.objectContaining({ resultType: 'complete', supportedVersions: MODERN_PROTOCOL_VERSIONS, _meta: expect.any(Object) }),
      },
    });
    for (const meta of [
      { ...modernMeta, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' },
      { 'io.modelcontextprotocol/protocolVersion': MODERN_PROTOCOL_VERSIONS[0] },
      { ...modernMeta, 'io.modelcontextprotocol/clientCapabilities': { elicitation: 1 } },
      { ...modernMeta, 'io.modelcontextprotocol/logLevel': 'loud' },
      { ...modernMeta, progressToken: 0.5 },
      null,
    ]) {
      expect(earlyAnswer(discover(meta), VERSION)).toBeUndefined();
    }
    expect(earlyAnswer({ ...discover(modernMeta), id: 2.5 }, VERSION)).toBeUndefined();
    expect(earlyAnswer({ jsonrpc: '2.0', id: 1, method: 'tools/list' }, VERSION)).toBeUndefined();
    expect(earlyAnswer('not a message', VERSION)).toBeUndefined();
  });
});
