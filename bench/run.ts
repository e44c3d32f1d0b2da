/**
 * Benchmark entry: `npm run bench` runs every suite, `npm run bench -- emulator` only the named ones,
 * `npm run bench -- --list` lists them. Benchmarks report figures; they never pass or fail
 * (style.md habit 6): a missed goal is a row marked MISSED in the goal table printed at the end
 * (bench/goals.ts), with each suite's wall time. A suite that throws is reported, the others still run,
 * and the run exits 1. A new suite is one file exporting a {@link BenchSuite} plus one line below.
 */
import { consoleSuite } from './console.js'
import { emulatorSuite } from './emulator.js'
import { fuseSuite } from './fuse.js'
import { printGoalTable } from './goals.js'
import { printTable } from './http-load-helpers.js'
import { grpcSuite } from './grpc.js'
import { securitySuite } from './security.js'
import { serviceSuite } from './service.js'
import { writesSuite } from './writes.js'
import type { BenchSuite } from './suite.js'

const suites: readonly BenchSuite[] = [emulatorSuite, serviceSuite, writesSuite, grpcSuite, securitySuite, fuseSuite, consoleSuite]

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--list') || argv.includes('--help') || argv.includes('-h')) {
    console.log('Usage: npm run bench [-- SUITE...]\n\nSuites:')
    for (const s of suites) console.log(`  ${s.name.padEnd(12)} ${s.description}`)
    return 0
  }
  const unknown = argv.filter((a) => !suites.some((s) => s.name === a))
  if (unknown.length > 0) {
    console.error(`bench: unknown suite ${unknown.map((u) => `'${u}'`).join(', ')} (known: ${suites.map((s) => s.name).join(', ')})`)
    return 2
  }
  const chosen = argv.length === 0 ? suites : suites.filter((s) => argv.includes(s.name))
  const durations: string[][] = [['suite', 'wall time', 'outcome']]
  let failed = false
  const t0 = performance.now()
  for (const s of chosen) {
    console.log(`\n== ${s.name}: ${s.description} ==`)
    const start = performance.now()
    let outcome = 'ok'
    try {
      await s.run()
    } catch (e) {
      failed = true
      outcome = `FAILED: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`
      console.error(`bench: suite ${s.name} failed:`, e)
    }
    durations.push([s.name, `${((performance.now() - start) / 1000).toFixed(1)} s`, outcome])
  }
  durations.push(['total', `${((performance.now() - t0) / 1000).toFixed(1)} s`, ''])
  console.log('\n== suites ==')
  printTable(durations)
  printGoalTable(chosen.map((s) => s.name))
  return failed ? 1 : 0
}

process.exitCode = await main(process.argv.slice(2))
// A service a suite could not close (a reconcile pass cut at its cap) would keep the process alive.
setTimeout(() => process.exit(), 2000).unref()
