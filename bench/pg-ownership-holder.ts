/**
 * A lease holder for the take-over figure of `pg-ownership.bench.ts`: opens PgOwnership on the
 * database `argv[2]` with a lease of `argv[3]` ms, takes the threads `argv[4..]`, says `held` on
 * stdout and keeps them (heartbeats going) until it is killed.
 */
import { openDatabase } from '../src/session/pg-database.js';
import { PG_MIGRATIONS } from '../src/session/pg-migrations.js';
import { PgOwnership } from '../src/session/pg-ownership.js';
import { silentLogger } from '../src/util/logger.js';

const [url, leaseMs, ...threads] = process.argv.slice(2);
if (url === undefined || leaseMs === undefined) throw new Error('usage: pg-ownership-holder.ts URL LEASE_MS THREAD_ID...');
const db = await openDatabase({ url, migrations: PG_MIGRATIONS, logger: silentLogger });
const ownership = await PgOwnership.open({ pool: db.pool, url, leaseMs: Number(leaseMs) });
for (const threadId of threads) await ownership.acquire(threadId);
process.stdout.write('held\n');
// Heartbeat timers do not keep a process alive; the holder lives until it is killed.
setInterval(() => undefined, 60_000);
