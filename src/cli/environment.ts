/**
 * The `APMATRIX_*` environment variables that apmatrix reads, and the warning for one it does not know:
 * a misspelt setting (`APMATRIX_PROFLE=full`) would otherwise be ignored in silence and the process run
 * on the default. Every verb warns on stderr at start and carries on (an unknown variable is not an error:
 * it may belong to a newer release or to a script).
 */
import { closestMatch } from 'leven'
import { AGENT_SETTINGS } from '../agent/agent-config.js'
import { SETTINGS } from '../settings.js'
import { EMULATOR_TLS_SETTINGS } from '../hostbus/tls-settings.js'

/** Read by the command itself rather than as a setting of `serve` or `agent`. */
const CLI_VARIABLES = [
  'APMATRIX_SERVER',
  'APMATRIX_DEBUG',
  'APMATRIX_FUSE_DEVICE',
  'APMATRIX_TOKEN',
  'APMATRIX_CACERT',
  'APMATRIX_CERT',
  'APMATRIX_KEY',
] as const

/**
 * Read by the project's tests (test/helpers/required-tools.ts, the crash suite, the Python client test),
 * which hand their environment down to the `apmatrix` processes they start.
 */
const TEST_VARIABLES = ['APMATRIX_REQUIRE_TOOLS', 'APMATRIX_REQUIRE_POSTGRES', 'APMATRIX_CRASH_SEED', 'APMATRIX_PYTHON'] as const

/** The benchmarks' knobs (bench/*.ts) share this prefix; they are not settings of any verb. */
const BENCH_PREFIX = 'APMATRIX_BENCH_'

/** Every `APMATRIX_*` name apmatrix reads (settings of serve, agent and emulator serve, the client's, the harness's). */
export const KNOWN_VARIABLES: readonly string[] = [
  ...Object.values(SETTINGS).map((s) => s.env),
  ...Object.values(AGENT_SETTINGS).map((s) => s.env),
  ...Object.values(EMULATOR_TLS_SETTINGS).map((s) => s.env),
  ...CLI_VARIABLES,
  ...TEST_VARIABLES,
].filter((name) => name.startsWith('APMATRIX_'))

/**
 * The closest known name to `name` by Levenshtein distance, when it is close enough to be a slip (at most
 * a third of the part after `APMATRIX_`, and at least 2 edits allowed); undefined otherwise.
 */
export function closestKnownVariable(name: string): string | undefined {
  const maxDistance = Math.max(2, Math.floor((name.length - 'APMATRIX_'.length) / 3))
  return closestMatch(name, KNOWN_VARIABLES, { maxDistance })
}

/**
 * One warning line for each `APMATRIX_*` variable of `env` that apmatrix does not read, naming the closest
 * known one when there is one; sorted by name. Empty when every such variable is known.
 */
export function unknownVariableWarnings(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env)
    .filter((name) => name.startsWith('APMATRIX_') && !name.startsWith(BENCH_PREFIX) && !KNOWN_VARIABLES.includes(name))
    .sort()
    .map((name) => {
      const near = closestKnownVariable(name)
      return `apmatrix: warning: ${name} is not a setting apmatrix reads; it is ignored${near ? ` (did you mean ${near}?)` : ''}\n`
    })
}
