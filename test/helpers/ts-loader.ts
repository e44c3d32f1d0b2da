/**
 * The `--import` value that lets a child `node` run TypeScript files the way the tests run (tsx, as the
 * `node-arg` of the tap configuration in package.json), for tests that spawn a `.ts` entry of their own.
 */
export const TS_IMPORT: string = import.meta.resolve('tsx')
