/**
 * `apmatrix inventory`: the AP cards (and with `--queues` their queues) of a host as a table in the
 * habit of `lszcrypt` (docs/api.md (Resources) Inventory: "this replaces scraping lszcrypt"), or the raw JSON.
 */
import { CLIENT_OPTIONS, clientContext, clientOptionsHelp } from '../args/client-options.js'
import type { Adapter, Queue } from '../client/api-types.js'
import { listAll } from '../client/list-all.js'
import { withClientErrors } from '../client/report-error.js'
import { type CliCommand, EXIT } from '../command.js'
import { renderTable } from '../format/table.js'

const help = `Usage: apmatrix inventory [--host NAME] [--queues] [--json] [--server URL]

Lists the AP cards of a host like lszcrypt: CARD.DOMAIN, TYPE, MODE, STATUS, REQUESTS (requests
processed), DRIVER and OWNER (the matrix device a queue is assigned to). With --queues every card is
followed by its queues. --json prints {host, adapters, queues, domains} as the API returns them.

Options:
  --queues            also list the queues (APQNs) of each card
${clientOptionsHelp()}
`

const MODES: Record<string, string> = { cca: 'CCA-Coproc', ep11: 'EP11-Coproc', accel: 'Accelerator' }

/** The lszcrypt-like status word: checkstop and config-off win over online/offline. */
function status(d: { config: boolean; chkstop: boolean; online: boolean | null }): string {
  if (!d.config) return 'deconfig'
  if (d.chkstop) return 'checkstop'
  return d.online === false ? 'offline' : 'online'
}

/** Rows of the inventory table, cards in apid order, each followed by its queues when asked. */
export function inventoryRows(adapters: readonly Adapter[], queues: readonly Queue[], withQueues: boolean): string[][] {
  const rows: string[][] = []
  for (const a of [...adapters].sort((x, y) => x.apid - y.apid)) {
    const own = queues.filter((q) => q.apid === a.apid).sort((x, y) => x.apqi - y.apqi)
    const requests = own.reduce((n, q) => n + (q.requestCount ?? 0), 0)
    rows.push([a.apid.toString(16).padStart(2, '0'), a.type, MODES[a.mode] ?? a.mode, status(a), String(requests), a.driver, '-'])
    if (!withQueues) continue
    for (const q of own) {
      const driver = q.driver === 'vfio_ap' && q.vfioStatus ? `vfio_ap (${q.vfioStatus})` : q.driver
      rows.push([q.apqn, a.type, MODES[a.mode] ?? a.mode, status(q), String(q.requestCount ?? '-'), driver, q.owner ?? '-'])
    }
  }
  return rows
}

/** The `inventory` verb. */
export const inventoryCommand: CliCommand = {
  path: ['inventory'],
  summary: 'list AP cards and queues of a host (like lszcrypt)',
  help,
  options: { ...CLIENT_OPTIONS, queues: { type: 'boolean' } },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const ctx = clientContext(args, io)
      const [adapters, queues] = await Promise.all([
        ctx.client.get<{ items: Adapter[] }>(`${ctx.hostPath}/adapters`),
        listAll<Queue>(ctx.client, `${ctx.hostPath}/queues`),
      ])
      if (ctx.json) {
        const { body: domains } = await ctx.client.get<unknown>(`${ctx.hostPath}/domains`)
        io.stdout.write(`${JSON.stringify({ host: ctx.host, adapters: adapters.body.items, queues, domains }, null, 2)}\n`)
        return EXIT.OK
      }
      const rows = inventoryRows(adapters.body.items, queues, args.values.queues === true)
      io.stdout.write(renderTable(['CARD.DOMAIN', 'TYPE', 'MODE', 'STATUS', 'REQUESTS', 'DRIVER', 'OWNER'], rows))
      return EXIT.OK
    }),
}
