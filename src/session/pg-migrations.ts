import type { Migration } from './pg-database.js';
import { OWNERSHIP_MIGRATION } from './pg-ownership-schema.js';
import { SECRETS_MIGRATION } from './pg-secrets-schema.js';
import { STORE_MIGRATION } from './pg-store-schema.js';

/** Every schema migration of the PostgreSQL store and ownership, in version order (see `pg-database.ts`). */
export const PG_MIGRATIONS: readonly Migration[] = [STORE_MIGRATION, OWNERSHIP_MIGRATION, SECRETS_MIGRATION];
