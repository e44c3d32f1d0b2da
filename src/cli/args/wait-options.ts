/** `--wait` and `--wait-timeout` of the writing `mdev` verbs. */
import { type CliArgs, UsageError } from '../command.js'
import { DEFAULT_WAIT_TIMEOUT_MS } from '../client/wait-ready.js'
import { parseDuration } from './duration.js'

/** The option declarations. */
export const WAIT_OPTIONS = { wait: { type: 'boolean' }, 'wait-timeout': { type: 'string' } } as const

/** Their help lines. */
export const WAIT_HELP = `  --wait              wait until the reconciler made it so (Ready for the new generation, or gone)
  --wait-timeout D    how long --wait waits (default ${DEFAULT_WAIT_TIMEOUT_MS / 1000}s); exit 7 when it runs out`

/** How long to wait, or undefined without `--wait`. {@link UsageError} for a bad duration or a timeout without --wait. */
export function waitTimeoutOf(args: CliArgs): number | undefined {
  const text = args.values['wait-timeout']
  if (typeof text === 'string' && args.values.wait !== true) throw new UsageError('--wait-timeout needs --wait')
  if (args.values.wait !== true) return undefined
  return typeof text === 'string' ? parseDuration(text, '--wait-timeout') : DEFAULT_WAIT_TIMEOUT_MS
}
