/**
 * `doctor`'s check of the PostgreSQL database that keeps the threads (`multienv.store` or
 * `CODEX_MULTIENV_DATABASE_URL`): that it answers, the schema version against this version's, the
 * clock skew between this host and the database (leases use the database's clock; logs use this
 * host's), and the leases in it. Nothing in the database is changed. `pg` and the store's modules
 * load only when a database is configured.
 */
import type { EffectiveConfig } from '../config/settings.js';
import { errorMessage } from '../util/errors.js';
import { check, type CheckResult, type CheckStatus } from './doctor-check.js';
import { databaseUrlOf } from './thread-storage.js';

/** Clock skew beyond which `doctor` warns: logged times of hosts disagree by that much. */
const SKEW_WARN_MS = 1_000;

/** How long connecting may take before the check fails. */
const CONNECT_TIMEOUT_MS = 10_000;

const TITLE = 'thread database';

function result(status: CheckStatus, detail: string, fix?: string): CheckResult {
  return check('database', TITLE, status, detail, fix);
}

/** The `database` check; undefined when the threads are in files (the `threads` check covers them). */
export async function checkDatabase(config: EffectiveConfig | undefined, env: NodeJS.ProcessEnv): Promise<CheckResult | undefined> {
  let url: string | undefined;
  try {
    url = databaseUrlOf(config?.multienv.databaseUrl, env.CODEX_MULTIENV_DATABASE_URL);
  } catch (error) {
    return result('fail', errorMessage(error), 'set CODEX_MULTIENV_DATABASE_URL to a postgres:// or postgresql:// URL, or unset it');
  }
  if (url === undefined) return undefined;
  const [{ probeDatabase, redactedUrl }, { PG_MIGRATIONS }, { leaseCounts, measureClockSkew }] = await Promise.all([
    import('../session/pg-database.js'),
    import('../session/pg-migrations.js'),
    import('../session/pg-lease-sql.js'),
  ]);
  const where = redactedUrl(url);
  let probe: Awaited<ReturnType<typeof probeDatabase>>;
  try {
    probe = await probeDatabase(url, CONNECT_TIMEOUT_MS);
  } catch (error) {
    return result('fail', errorMessage(error), 'start the database, or correct the URL (host, port or ?host=/socket/dir, user, password, database)');
  }
  try {
    const known = PG_MIGRATIONS.length;
    if (probe.schemaVersion > known) {
      return result('fail', `${where}: schema version ${probe.schemaVersion}, newer than this codex-multienv knows (${known})`, 'upgrade codex-multienv on this host');
    }
    const skewMs = await measureClockSkew(probe.pool);
    // Signed after rounding: a skew of -0.3 ms reads "+0 ms", not an unsigned "0 ms".
    const roundedMs = Math.round(skewMs);
    const skew = `clock skew ${roundedMs >= 0 ? '+' : ''}${roundedMs} ms`;
    const skewFix = Math.abs(skewMs) > SKEW_WARN_MS ? 'synchronize this host’s clock (NTP): leases are safe, but logged times of hosts disagree' : undefined;
    if (probe.schemaVersion < known) {
      const pending = PG_MIGRATIONS.slice(probe.schemaVersion).map((migration) => `${migration.version} (${migration.name})`);
      return result('warn', `${where}: schema version ${probe.schemaVersion}; the next server start applies migration ${pending.join(', ')}; ${skew}`, skewFix);
    }
    const leases = await leaseCounts(probe.pool);
    const detail = `${where}: schema version ${probe.schemaVersion} (current), ${skew}, ${leases.live} live lease${leases.live === 1 ? '' : 's'} held by ${leases.instances} instance${leases.instances === 1 ? '' : 's'}${leases.expired === 0 ? '' : `, ${leases.expired} expired (taken over at the next call on their threads)`}`;
    return result(skewFix === undefined ? 'ok' : 'warn', detail, skewFix);
  } catch (error) {
    return result('fail', `${where}: ${errorMessage(error)}`, 'check that the database user may read the cmx_ tables');
  } finally {
    await probe.close();
  }
}
