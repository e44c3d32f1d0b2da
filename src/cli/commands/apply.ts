/**
 * `apmatrix apply -f desired.json`: the declarative, atomic apply of a host's whole desired state
 * (PUT /v1/hosts/{host}/desired), then, unless `--no-wait`, a wait until every device of the document is
 * Ready with observedGeneration == generation and every device the apply deleted is gone.
 */
import { DEFAULT_REQUEST_TIMEOUT_MS, CLIENT_OPTIONS, clientContext, clientOptionsHelp } from '../args/client-options.js'
import { DOCUMENT_HELP, readDocument } from '../args/document.js'
import { formatDuration, parseDuration } from '../args/duration.js'
import type { ApplyResult } from '../client/api-types.js'
import { withClientErrors } from '../client/report-error.js'
import { DEFAULT_WAIT_TIMEOUT_MS } from '../client/wait-ready.js'
import { waitWithProgress } from '../client/wait-with-progress.js'
import { type CliCommand, EXIT } from '../command.js'

/** The `apply` verb. */
export const applyCommand: CliCommand = {
  path: ['apply'],
  summary: "apply a host's whole desired state atomically and wait until it is Ready",
  help: `Usage: apmatrix apply -f FILE [--host NAME] [--no-wait] [--timeout DURATION] [--json]

Stores the document as the host's whole desired state in one atomic write (devices of the same owner
that the document omits are deleted), prints what changed, then waits until every device of the document
is Ready for its new generation and every deleted device is gone. The progress goes to stderr (a status
line on a terminal, one line per change otherwise). A refused document changes nothing: every violation
is printed with its fix (exit 3). Exit 7 when the devices are not Ready before the timeout (the desired
state stays stored; the reconciler keeps working on it).

${DOCUMENT_HELP}

Options:
  -f, --file FILE     the document (- for standard input)
  --no-wait           return once the document is stored
${clientOptionsHelp({ timeout: `how long to wait for Ready (default ${DEFAULT_WAIT_TIMEOUT_MS / 1000}s; each request at most ${DEFAULT_REQUEST_TIMEOUT_MS / 1000}s)` })}
`,
  options: { ...CLIENT_OPTIONS, file: { type: 'string', short: 'f' }, 'no-wait': { type: 'boolean' } },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const waitMs = typeof args.values.timeout === 'string' ? parseDuration(args.values.timeout, '--timeout') : DEFAULT_WAIT_TIMEOUT_MS
      const doc = await readDocument(args.values.file, io)
      const ctx = clientContext(args, io, Math.min(DEFAULT_REQUEST_TIMEOUT_MS, Math.max(waitMs, 5_000)))
      const { body } = await ctx.client.request<ApplyResult>('PUT', `${ctx.hostPath}/desired`, { body: doc })
      if (ctx.json) io.stdout.write(`${JSON.stringify(body, null, 2)}\n`)
      else {
        io.stdout.write(`masks: generation ${body.masks.generation}\n`)
        for (const m of body.mdevs) io.stdout.write(`${m.uuid}: ${m.action} (generation ${m.generation})\n`)
      }
      if (args.values['no-wait'] === true || body.mdevs.length === 0) return EXIT.OK
      const targets = body.mdevs.map((m) => ({ uuid: m.uuid, generation: m.generation, gone: m.action === 'deleted' }))
      const start = Date.now()
      await waitWithProgress(io, ctx, targets, waitMs)
      io.stderr.write(`all ${targets.length} device(s) converged in ${formatDuration(Date.now() - start)}\n`)
      return EXIT.OK
    }),
}
