/** `apmatrix mdev list` and `apmatrix mdev get`: matrix devices of a host, as a table, a detailed view or JSON. */
import { CLIENT_OPTIONS, clientContext, clientOptionsHelp } from '../args/client-options.js'
import { parseLabels } from '../args/id-list.js'
import { requireUuid } from '../args/uuid.js'
import type { Mdev } from '../client/api-types.js'
import { listAll } from '../client/list-all.js'
import { withClientErrors } from '../client/report-error.js'
import { type CliCommand, EXIT, UsageError } from '../command.js'
import { MDEV_COLUMNS, describeMdev, mdevRow } from '../format/mdev-view.js'
import { renderTable } from '../format/table.js'

/** The `mdev list` verb. */
export const mdevListCommand: CliCommand = {
  path: ['mdev', 'list'],
  summary: 'list matrix devices (filters: state, owner, labels)',
  help: `Usage: apmatrix mdev list [--state started|stopped] [--owner O] [-l key=value]... [--json]

Lists the matrix devices of a host: desired state; STATUS, the conditions summed up: Ready,
Degraded (reason: ReconcileFailed, AdapterFiltered, NotInHostConfiguration), Progressing (why not Ready
yet, e.g. WaitingForGuest), NotReady (reason), Pending (not reconciled yet) or Deleting; READY (True,
False, Unknown); CONDITIONS, the other conditions that are True (InUseByGuest, AdapterFiltered, ...;
- when none); adapters, usage and control domains (decimal, ranges), generation (generation/observed
while the reconciler catches up), owner.
--json prints {items: [...]} with every device object as the API returns it.

Options:
  --state S           only started or only stopped devices
  --owner O           only devices of this owner
  -l, --label K=V     only devices with this label (repeat: all must match)
${clientOptionsHelp()}
`,
  options: { ...CLIENT_OPTIONS, state: { type: 'string' }, owner: { type: 'string' }, label: { type: 'string', short: 'l', multiple: true } },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const ctx = clientContext(args, io)
      const state = args.values.state
      if (state !== undefined && state !== 'started' && state !== 'stopped') throw new UsageError(`--state: '${String(state)}' is not started or stopped`)
      const labels = parseLabels(args.values.label as string[] | undefined, '--label')
      const label =
        Object.entries(labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',') || undefined
      const items = await listAll<Mdev>(ctx.client, `${ctx.hostPath}/mdevs`, { state, owner: args.values.owner as string | undefined, label })
      if (ctx.json) io.stdout.write(`${JSON.stringify({ items }, null, 2)}\n`)
      else if (items.length === 0) io.stderr.write(`No matrix devices on host ${ctx.host}${label || state || args.values.owner ? ' match' : ''}.\n`)
      else io.stdout.write(renderTable(MDEV_COLUMNS, items.map(mdevRow)))
      return EXIT.OK
    }),
}

/** The `mdev get` verb. */
export const mdevGetCommand: CliCommand = {
  path: ['mdev', 'get'],
  summary: 'show one matrix device: spec, observed matrix and guest matrix, conditions',
  help: `Usage: apmatrix mdev get UUID [--json]

Shows one matrix device: metadata, spec, status (the matrix on the bus and the guest matrix after the
kernel's adapter filtering, V-20) and its conditions. --json prints the object as the API returns it.
Exit code 4 when there is no such device.

Options:
${clientOptionsHelp()}
`,
  options: CLIENT_OPTIONS,
  allowPositionals: true,
  run: (args, io) =>
    withClientErrors(io, async () => {
      const uuid = requireUuid(args.positionals)
      const ctx = clientContext(args, io)
      const { body } = await ctx.client.get<Mdev>(`${ctx.hostPath}/mdevs/${uuid}`)
      io.stdout.write(ctx.json ? `${JSON.stringify(body, null, 2)}\n` : describeMdev(body))
      return EXIT.OK
    }),
}
