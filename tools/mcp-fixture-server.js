// A small stdio MCP server for tests and benchmarks of MCP servers inside sessions (issue 5):
// it says where it runs (`whereami`), can crash on request (`crash`), and has a tool without
// annotations (`write_note`, so approval policies apply to it). Real SDK server, real process.
//
// Run: `node tools/mcp-fixture-server.js` (speaks MCP on stdin/stdout).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import process from 'node:process';
import { z } from 'zod';

const server = new McpServer({ name: 'mcp-fixture', version: '1.0.0' });

server.registerTool(
  'whereami',
  {
    description: 'Says where this server runs: its cwd, pid, parent pid and the MCP_FIXTURE_MARK variable.',
    inputSchema: {},
    annotations: { readOnlyHint: true },
  },
  () => {
    const where = { cwd: process.cwd(), pid: process.pid, ppid: process.ppid, marker: process.env.MCP_FIXTURE_MARK ?? null };
    return { content: [{ type: 'text', text: JSON.stringify(where) }], structuredContent: where };
  },
);

server.registerTool('crash', { description: 'Makes this server exit with code 7.', inputSchema: {} }, () => {
  process.stderr.write('fixture crashing on purpose\n');
  process.exit(7);
});

server.registerTool('write_note', { description: 'Pretends to write a note (a tool that says nothing about side effects).', inputSchema: { text: z.string() } }, ({ text }) => ({
  content: [{ type: 'text', text: `noted: ${text}` }],
}));

await server.connect(new StdioServerTransport());
