/**
 * Benchmark entry: `npm run bench` runs every suite, `npm run bench -- emulator` only the named ones,
 * `npm run bench -- --list` lists them. Benchmarks report figures; they never pass or fail
 * (style.md habit 6). A new suite is one file exporting a {@link BenchSuite} plus one line below.
 */
import { consoleSuite } from './console.js'
import { emulatorSuite } from './emulator.js'
import { fuseSuite } from './fuse.js'
import { grpcSuite } from './grpc.js'
import { serviceSuite } from './service.js'
import { writesSuite } from './writes.js'
import type { BenchSuite } from './suite.js'

const suites: readonly BenchSuite[] = [emulatorSuite, serviceSuite, writesSuite, grpcSuite, fuseSuite, consoleSuite]

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
  for (const s of chosen) {
    console.log(`\n== ${s.name}: ${s.description} ==`)
    await s.run()
  }
  return 0
}

process.exitCode = await main(process.argv.slice(2))
