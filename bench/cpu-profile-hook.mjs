// Preloaded with `NODE_OPTIONS=--import=<this file>` (Node 20 refuses `--cpu-prof` there): profiles
// each thread it runs in (the main thread, and worker threads, which load it too) with the inspector
// and writes `<CPU_PROFILE_DIR>/<pid>-<threadId>.cpuprofile` when the thread exits.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { threadId } from 'node:worker_threads';

const dir = process.env.CPU_PROFILE_DIR ?? '.';
const session = new Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.setSamplingInterval', { interval: Number(process.env.CPU_PROFILE_INTERVAL_US ?? 200) });
session.post('Profiler.start');
process.on('exit', () => {
  // An in-process session answers synchronously, so this runs to completion inside 'exit'.
  session.post('Profiler.stop', (error, result) => {
    if (error === null) writeFileSync(join(dir, `${process.pid}-${threadId}.cpuprofile`), JSON.stringify(result.profile));
  });
});
