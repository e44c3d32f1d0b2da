/**
 * The one rule for tests that need something the machine may lack (a Debian tool, FUSE, PostgreSQL):
 * they run when it is there, are SKIPPED loudly when it is not, and FAIL instead of skipping where the
 * machine is supposed to have everything: under CI=... (any value but '', 0, false), or with
 * APMATRIX_REQUIRE_TOOLS=1 (tools, FUSE) / APMATRIX_REQUIRE_POSTGRES=1 (PostgreSQL).
 */
import type { Test } from 'tap'

/** What a test may need: `tools` (Debian tools, FUSE, namespaces) or `postgres` (TEST_POSTGRES_URL). */
export type Requirement = 'tools' | 'postgres'

const ENV: Record<Requirement, string> = { tools: 'APMATRIX_REQUIRE_TOOLS', postgres: 'APMATRIX_REQUIRE_POSTGRES' }

/** True when the machine must have what `what` names (CI, or its APMATRIX_REQUIRE_* variable set to 1). */
export function requiredHere(what: Requirement): boolean {
  const ci = process.env.CI
  return (ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false') || process.env[ENV[what]] === '1'
}

/**
 * Registers `body` as subtest `name` when `missing` is undefined. Otherwise the subtest is skipped with
 * `missing` printed loudly on stderr, or fails with it when {@link requiredHere}(`what`).
 */
export function requireOrSkip(t: Test, name: string, missing: string | undefined, body: (t: Test) => Promise<void>, what: Requirement = 'tools'): void {
  if (missing === undefined) {
    t.test(name, body)
    return
  }
  if (requiredHere(what)) {
    t.test(name, async (t) => {
      t.fail(`REQUIRED here (CI or ${ENV[what]}=1): ${missing}`)
    })
  } else {
    console.error(`\n*** test '${name}' SKIPPED: ${missing} ***\n`)
    t.test(name, { skip: missing }, async () => {})
  }
}
