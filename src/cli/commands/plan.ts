/** `apmatrix plan -f desired.json`: the dry-run plan of a desired-state document; never stores. */
import { CLIENT_OPTIONS, clientContext, clientOptionsHelp } from '../args/client-options.js'
import { DOCUMENT_HELP, readDocument } from '../args/document.js'
import type { Plan } from '../client/api-types.js'
import { withClientErrors } from '../client/report-error.js'
import { type CliCommand, type CliIo, EXIT } from '../command.js'
import { renderPlan } from '../format/plan-view.js'

/** Prints a plan (text or JSON) and returns its exit code: 0 without violations, 3 with (docs/api.md (Admission)). */
export function printPlan(io: CliIo, json: boolean, plan: Plan): number {
  io.stdout.write(json ? `${JSON.stringify(plan, null, 2)}\n` : renderPlan(plan))
  return plan.summary.violations.count ? EXIT.REFUSED : EXIT.OK
}

/** The `plan` verb. */
export const planCommand: CliCommand = {
  path: ['plan'],
  summary: 'dry-run a desired-state document: operations, violations with fixes, claimed APQNs',
  help: `Usage: apmatrix plan -f FILE [--host NAME] [--json]

Asks the server what applying the document would do, without storing anything: the ordered bus
operations, the APQNs it claims with their current owners, the host queues that would be drained,
adapters a guest would lose to filtering (V-20), and every violation with its suggested fix.
A list longer than 64 rows is printed as counts and APQN ranges (05.0000-05.00ff); --json prints
the server's whole answer (docs/api.md, Plan views).
Exit 0 when the document is acceptable, 3 when it has violations.

${DOCUMENT_HELP}

Options:
  -f, --file FILE     the document (- for standard input)
${clientOptionsHelp()}
`,
  options: { ...CLIENT_OPTIONS, file: { type: 'string', short: 'f' } },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const doc = await readDocument(args.values.file, io)
      const ctx = clientContext(args, io)
      // The full view: short lists print row by row, long ones as the summary's ranges (format/plan-view.ts).
      const { body } = await ctx.client.request<Plan>('POST', `${ctx.hostPath}/plan`, { body: doc, query: { view: 'full' } })
      return printPlan(io, ctx.json, body)
    }),
}
