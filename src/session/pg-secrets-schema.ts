import type { Migration } from './pg-database.js';

/**
 * Migration 3 of the PostgreSQL schema: secrets every instance shares (`cmx_secrets`), e.g. the
 * key that seals MCP `requestState` values, so a client's retry verifies on any instance. A row
 * is written once by the first instance that needs it (`ON CONFLICT DO NOTHING`) and only read
 * afterwards; nothing in it is ever sent to a client.
 */
export const SECRETS_MIGRATION: Migration = {
  version: 3,
  name: 'shared secrets',
  sql: `
CREATE TABLE cmx_secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
`,
};
