import { cleanToolSchema, formatMcpResult, MAX_TOOL_NAME_LENGTH, mcpCallNeedsApproval, mcpFailureNotice, mcpToolName } from '../../../src/agent/tools/mcp-tool.js';

describe('mcpToolName', () => {
  it('is mcp__<server>__<tool> when that is a valid, free name', () => {
    expect(mcpToolName('docs', 'search', new Set())).toBe('mcp__docs__search');
    expect(mcpToolName('every-thing', 'get-env', new Set())).toBe('mcp__every-thing__get-env');
  });

  it('replaces characters the API refuses', () => {
    expect(mcpToolName('docs', 'files/read.v2', new Set())).toBe('mcp__docs__files_read_v2');
  });

  it('shortens long names to 64 characters with a stable hash, and keeps clashing names apart', () => {
    const long = mcpToolName('server', 'x'.repeat(100), new Set());
    expect(long).toHaveLength(MAX_TOOL_NAME_LENGTH);
    expect(long).toMatch(/^mcp__server__x+_[0-9a-f]{8}$/);
    expect(mcpToolName('server', 'x'.repeat(100), new Set())).toBe(long);
    const taken = new Set(['mcp__docs__a_b']);
    const other = mcpToolName('docs', 'a.b', taken);
    expect(other).not.toBe('mcp__docs__a_b');
    expect(other).toMatch(/^mcp__docs__a_b_[0-9a-f]{8}$/);
    expect(mcpToolName('docs', 'a.b', new Set([...taken, other]))).not.toBe(other);
  });
});

describe('cleanToolSchema', () => {
  it('keeps what the Responses API accepts and drops the rest', () => {
    expect(
      cleanToolSchema({
        $schema: 'http://json-schema.org/draft-07/schema#',
        type: 'object',
        properties: { q: { type: 'string', description: 'query', 'x-vendor': 1 }, n: { type: 'integer', minimum: 1, default: 5 } },
        required: ['q', 'gone'],
        additionalProperties: false,
      }),
    ).toEqual({
      type: 'object',
      properties: { q: { type: 'string', description: 'query' }, n: { type: 'integer', minimum: 1, default: 5 } },
      required: ['q'],
      additionalProperties: false,
    });
  });

  it('makes every schema typed: inferred, first non-null of a list, arrays with items', () => {
    expect(
      cleanToolSchema({
        properties: {
          tags: { items: { enum: ['a', 'b'] } },
          list: { type: 'array' },
          maybe: { type: ['null', 'number'] },
          anything: true,
          nested: { properties: { deep: {} } },
          tuple: { type: 'array', items: [{ type: 'number' }, { type: 'string' }] },
        },
      }),
    ).toEqual({
      type: 'object',
      properties: {
        tags: { type: 'array', items: { type: 'string', enum: ['a', 'b'] } },
        list: { type: 'array', items: { type: 'string' } },
        maybe: { type: 'number' },
        anything: { type: 'string' },
        nested: { type: 'object', properties: { deep: { type: 'string' } } },
        tuple: { type: 'array', items: { type: 'number' } },
      },
    });
  });

  it('turns oneOf into anyOf and keeps $ref with its $defs', () => {
    expect(
      cleanToolSchema({
        type: 'object',
        properties: { v: { oneOf: [{ type: 'string' }, { type: 'number' }] }, r: { $ref: '#/$defs/R' } },
        $defs: { R: { type: 'object', properties: { a: { type: 'boolean' } } } },
      }),
    ).toEqual({
      type: 'object',
      properties: { v: { anyOf: [{ type: 'string' }, { type: 'number' }] }, r: { $ref: '#/$defs/R' } },
      $defs: { R: { type: 'object', properties: { a: { type: 'boolean' } } } },
    });
  });

  it('always gives an object at the top', () => {
    expect(cleanToolSchema(undefined)).toEqual({ type: 'object', properties: {} });
    expect(cleanToolSchema({ type: 'string' })).toEqual({ type: 'object', properties: {} });
    expect(cleanToolSchema({ type: 'object' })).toEqual({ type: 'object', properties: {} });
  });
});

describe('formatMcpResult', () => {
  it('joins text items; images become input_image items', () => {
    expect(
      formatMcpResult(
        {
          content: [
            { type: 'text', text: 'a' },
            { type: 'text', text: 'b' },
          ],
        },
        100,
      ),
    ).toBe('a\nb');
    expect(
      formatMcpResult(
        {
          content: [
            { type: 'text', text: 'see' },
            { type: 'image', data: 'AAAA', mimeType: 'image/png' },
          ],
        },
        100,
      ),
    ).toEqual([
      { type: 'input_text', text: 'see' },
      { type: 'input_image', image_url: 'data:image/png;base64,AAAA' },
    ]);
  });

  it('prefers structured content over its text copy', () => {
    expect(formatMcpResult({ content: [{ type: 'text', text: '{"a": 1}' }], structuredContent: { a: 1 } }, 100)).toBe('{"a":1}');
  });

  it('describes what it cannot show, and says when the tool failed or returned nothing', () => {
    expect(
      formatMcpResult(
        {
          content: [
            { type: 'audio', data: 'AAAA', mimeType: 'audio/wav' },
            { type: 'resource_link', uri: 'file:///a.txt', name: 'a.txt', mimeType: 'text/plain' },
            { type: 'resource', resource: { uri: 'file:///b.txt', text: 'inline text' } },
            { type: 'resource', resource: { uri: 'file:///c.bin', blob: 'AAAA', mimeType: 'application/octet-stream' } },
          ],
        },
        100,
      ),
    ).toBe(
      '[audio (audio/wav, 3 bytes) not shown]\n[resource link: a.txt file:///a.txt (text/plain)]\ninline text\n[embedded resource file:///c.bin (application/octet-stream): binary content not shown]',
    );
    expect(formatMcpResult({ content: [{ type: 'text', text: 'bad input' }], isError: true }, 100)).toBe('The MCP tool reported an error:\nbad input');
    expect(formatMcpResult({ content: [] }, 100)).toBe('(the tool returned no content)');
  });

  it('bounds the text it returns', () => {
    const text = formatMcpResult({ content: [{ type: 'text', text: 'x'.repeat(10_000) }] }, 100);
    expect(typeof text === 'string' && text.length < 1000).toBe(true);
    expect(text).toMatch(/tokens truncated/);
  });
});

describe('mcpCallNeedsApproval', () => {
  it('never asks under never and on-failure', () => {
    expect(mcpCallNeedsApproval('never', { destructiveHint: true })).toBe(false);
    expect(mcpCallNeedsApproval('on-failure', undefined)).toBe(false);
  });

  it('asks under untrusted unless the tool is read-only', () => {
    expect(mcpCallNeedsApproval('untrusted', undefined)).toBe(true);
    expect(mcpCallNeedsApproval('untrusted', { destructiveHint: false })).toBe(true);
    expect(mcpCallNeedsApproval('untrusted', { readOnlyHint: true })).toBe(false);
  });

  it('asks under on-request unless the tool is read-only or says it is not destructive', () => {
    expect(mcpCallNeedsApproval('on-request', undefined)).toBe(true);
    expect(mcpCallNeedsApproval('on-request', { destructiveHint: false })).toBe(false);
    expect(mcpCallNeedsApproval('on-request', { readOnlyHint: true, destructiveHint: true })).toBe(false);
  });
});

describe('mcpFailureNotice', () => {
  it('is nothing without failures, else one escaped line per server', () => {
    expect(mcpFailureNotice([])).toBeUndefined();
    expect(mcpFailureNotice([{ server: 'a', environmentId: 'box', required: false, error: 'exited <1>' }])).toBe(
      '<mcp_servers_unavailable>\n  <server name="a" environment="box">exited &lt;1&gt;</server>\n</mcp_servers_unavailable>',
    );
  });
});
