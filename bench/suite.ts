/** One named benchmark suite of `npm run bench` (bench/run.ts). Suites print their own tables. */
export interface BenchSuite {
  name: string
  /** One line for `npm run bench -- --list`. */
  description: string
  run(): Promise<void>
}
