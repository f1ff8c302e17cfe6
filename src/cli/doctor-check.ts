/** What a `doctor` check reports (doctor-command.ts, and the checks in modules of their own). */

/** The outcome of one check: `skip` when an earlier failure leaves nothing to check. */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** One line of the doctor's report. */
export interface CheckResult {
  /** Stable id for scripts: `config`, `mcp_servers`, `environments`, `environment:<id>`, `threads` (or `database`), `process_start`, `user`, `bubblewrap`, `network`, `model`, `engine`. */
  id: string;
  /** What was checked, for people. */
  title: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** What to do about a warning or failure. */
  fix?: string;
}

/** One check's result; `fix` only when there is one. */
export function check(id: string, title: string, status: CheckStatus, detail: string, fix?: string): CheckResult {
  return fix === undefined ? { id, title, status, detail } : { id, title, status, detail, fix };
}
