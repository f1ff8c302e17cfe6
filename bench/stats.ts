/** Small statistics helpers for benchmarks (benchmarks print; tests never assert on time). */

/** The p-th percentile (0..100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

/** The median. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Milliseconds since `start` (a `performance.now()` value). */
export function since(start: number): number {
  return performance.now() - start;
}

/** Formats a number with a fixed number of decimals. */
export function fmt(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

/** Prints rows as an aligned table. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  process.stdout.write(`${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
}

/** One row of a raw-figures table: how many, min, p50, p95, p99 and max of `values` (ms). */
export function rawRow(label: string, values: readonly number[]): string[] {
  return [label, String(values.length), fmt(Math.min(...values)), fmt(median(values)), fmt(percentile(values, 95)), fmt(percentile(values, 99)), fmt(Math.max(...values))];
}

/** Prints the "raw figures (ms)" table: one {@link rawRow} per series. */
export function printRawFigures(rows: string[][]): void {
  process.stdout.write('\nraw figures (ms)\n');
  printTable(['series', 'n', 'min', 'p50', 'p95', 'p99', 'max'], rows);
}
