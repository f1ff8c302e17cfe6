import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { openDatabase, redactedUrl, type Migration } from '../../../src/session/pg-database.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';
import { silentLogger } from '../../../src/util/logger.js';
import { startPostgres, type PostgresCluster } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/process.js';

const FIRST: Migration = { version: 1, name: 'counters', sql: 'CREATE TABLE counters (name text PRIMARY KEY, value integer NOT NULL)' };
const SECOND: Migration = { version: 2, name: 'counter notes', sql: "ALTER TABLE counters ADD COLUMN note text NOT NULL DEFAULT ''" };

describe('PostgreSQL database: connection and schema migrations', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let cluster: PostgresCluster;

  beforeAll(async () => {
    dir = await tempDir('cmx-pg-');
    cluster = await startPostgres(dir.path);
  });

  afterAll(async () => {
    await cluster.stop();
    await dir.cleanup();
  });

  async function databaseUrl(name: string): Promise<string> {
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    return cluster.url.replace('/postgres?', `/${name}?`);
  }

  it('applies each migration once, also when instances start together, and picks up later ones', async () => {
    const url = await databaseUrl('migrations');
    const opened = await Promise.all([1, 2, 3].map(() => openDatabase({ url, migrations: [FIRST], logger: silentLogger })));
    expect(opened.map((db) => db.schemaVersion)).toEqual([1, 1, 1]);
    const [first] = opened;
    if (first === undefined) throw new Error('no database');
    const applied = await first.pool.query<{ version: number }>('SELECT version FROM cmx_schema_migrations ORDER BY version');
    expect(applied.rows.map((row) => row.version)).toEqual([1]);
    await Promise.all(opened.map((db) => db.close()));

    const later = await openDatabase({ url, migrations: [FIRST, SECOND], logger: silentLogger });
    expect(later.schemaVersion).toBe(2);
    await later.pool.query("INSERT INTO counters (name, value, note) VALUES ('a', 1, 'x')");
    await later.close();
    await later.close();
  });

  it('refuses a database whose schema is newer than this version', async () => {
    const url = await databaseUrl('newer');
    await (await openDatabase({ url, migrations: [FIRST, SECOND], logger: silentLogger })).close();
    const error = await openDatabase({ url, migrations: [FIRST], logger: silentLogger }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.FailedPrecondition);
    expect((error as LocalError).message).toMatch(/schema is at version 2, newer than this codex-multienv knows \(1\)/);
  });

  it('rolls a failing migration back whole and says which database failed, without its password', async () => {
    const url = await databaseUrl('broken');
    const broken: Migration = { version: 2, name: 'broken', sql: 'ALTER TABLE no_such_table ADD COLUMN x integer' };
    const error = await openDatabase({ url, migrations: [FIRST, broken], logger: silentLogger }).catch((e: unknown) => e);
    expect((error as LocalError).code).toBe(LocalErrorCode.Unavailable);
    expect((error as LocalError).message).toMatch(/no_such_table/);
    // Nothing of the failed run stayed: the first migration is applied again by the next start.
    const db = await openDatabase({ url, migrations: [FIRST], logger: silentLogger });
    expect(db.schemaVersion).toBe(1);
    await db.close();
  });

  it('says the database is unreachable, with the URL and without the password', async () => {
    const url = `postgresql://postgres:s3cret@localhost/postgres?host=${encodeURIComponent(`${dir.path}/nowhere`)}`;
    const error = await openDatabase({ url, migrations: [FIRST], logger: silentLogger, connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
    expect((error as LocalError).code).toBe(LocalErrorCode.Unavailable);
    expect((error as LocalError).message).toContain('cannot use the database postgresql://postgres:***@localhost/postgres');
    expect((error as LocalError).message).not.toContain('s3cret');
    expect(redactedUrl('not a url')).toBe('(an unparsable database URL)');
  });

  it('rejects a migration list whose versions are not consecutive', async () => {
    await expect(openDatabase({ url: cluster.url, migrations: [SECOND], logger: silentLogger })).rejects.toThrow(/migration counter notes has version 2, expected 1/);
  });
});
