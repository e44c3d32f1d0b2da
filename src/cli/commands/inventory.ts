/**
 * `apmatrix inventory`: the AP cards (and with `--queues` their queues) of a host as a table in the
 * habit of `lszcrypt` (docs/api.md (Resources) Inventory: "this replaces scraping lszcrypt"), `-V` with
 * lszcrypt -V's columns, `--domains` the adapters x domains grid with owners (lszcrypt -d style), or the
 * raw JSON.
 */
import { CLIENT_OPTIONS, type ClientContext, clientContext, clientOptionsHelp } from '../args/client-options.js'
import type { Adapter, DomainsView, Masks, Mdev, Queue } from '../client/api-types.js'
import { listAll } from '../client/list-all.js'
import { withClientErrors } from '../client/report-error.js'
import { type CliCommand, EXIT, UsageError } from '../command.js'
import { buildDomainGrid, renderDomainGrid } from '../format/domain-grid.js'
import { INVENTORY_COLUMNS, INVENTORY_VERBOSE_COLUMNS, inventoryRows } from '../format/inventory-view.js'
import { renderTable } from '../format/table.js'

const help = `Usage: apmatrix inventory [--host NAME] [--queues] [-V] [--json] [--server URL]
       apmatrix inventory --domains [--host NAME] [--json] [--server URL]

Lists the AP cards of a host like lszcrypt: CARD.DOMAIN, TYPE, MODE, STATUS, REQUESTS (requests
processed), DRIVER and OWNER (the matrix device a queue is assigned to; "in use" when it is a device
these credentials may not see, e.g. another tenant's). With --queues every card is
followed by its queues. STATUS is deconfig, chkstop, online or offline; for a queue bound to vfio_ap its
vfio_ap status (unassigned, assigned, in use); - for an unbound queue. A card's REQUESTS and PENDING are
the sums over its queues.

-V, --verbose adds lszcrypt -V's columns after REQUESTS: PENDING (requests queued and in flight),
HWTYPE (10 = CEX4 .. 14 = CEX8), QDEPTH (the card's hardware queue depth) and FUNCTIONS (one letter per
function, - where absent: S APSC, M RSA ME 4K, C RSA CRT 4K, D CCA, A accelerator, X EP11, N APXA,
H stateless filtering).

-d, --domains draws the adapters x domains grid instead (lszcrypt -d style, 16 domains per block, hex
ids): each APQN is two characters, its owner and a mark.
  owner  # the host's default drivers (inside apmask x aqmask)   - free for vfio_ap (no device)
         . not configured (no such queue)    A, B, ... a matrix device (listed below the grid)
  mark   * in a guest   ~ filtered from the guest (in the device's matrix, not in its guest matrix)
         ? unbound (no driver)   ! checkstopped, offline or deconfigured (queue or card)
The U/C/B row says which domains the host has as usage, control or both. The legend lists every device:
uuid, state, status, guest and control domains.

--json prints {host, adapters, queues, domains} as the API returns them; with --domains also masks,
mdevs and the host (the API answers the grid is drawn from).

Options:
  --queues            also list the queues (APQNs) of each card
  -V, --verbose       add PENDING, HWTYPE, QDEPTH and FUNCTIONS (lszcrypt -V)
  -d, --domains       the adapters x domains grid with owners and marks
${clientOptionsHelp()}
`

/** The answers of the inventory routes. */
async function readInventory(ctx: ClientContext): Promise<{ adapters: Adapter[]; queues: Queue[]; domains: DomainsView }> {
  const [adapters, queues, domains] = await Promise.all([
    ctx.client.get<{ items: Adapter[] }>(`${ctx.hostPath}/adapters`),
    listAll<Queue>(ctx.client, `${ctx.hostPath}/queues`),
    ctx.client.get<DomainsView>(`${ctx.hostPath}/domains`),
  ])
  return { adapters: adapters.body.items, queues, domains: domains.body }
}

/** The `inventory` verb. */
export const inventoryCommand: CliCommand = {
  path: ['inventory'],
  summary: 'list AP cards and queues of a host (like lszcrypt); -V verbose; --domains the grid',
  help,
  options: { ...CLIENT_OPTIONS, queues: { type: 'boolean' }, verbose: { type: 'boolean', short: 'V' }, domains: { type: 'boolean', short: 'd' } },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const grid = args.values.domains === true
      if (grid && (args.values.queues === true || args.values.verbose === true))
        throw new UsageError('--domains draws the grid: it does not take --queues or --verbose')
      const ctx = clientContext(args, io)
      const inv = await readInventory(ctx)
      if (!grid) {
        if (ctx.json) {
          io.stdout.write(`${JSON.stringify({ host: ctx.host, ...inv }, null, 2)}\n`)
          return EXIT.OK
        }
        const verbose = args.values.verbose === true
        const rows = inventoryRows(inv.adapters, inv.queues, { withQueues: args.values.queues === true, verbose })
        io.stdout.write(renderTable(verbose ? INVENTORY_VERBOSE_COLUMNS : INVENTORY_COLUMNS, rows))
        return EXIT.OK
      }
      const [masks, mdevs, hostView] = await Promise.all([
        ctx.client.get<Masks>(`${ctx.hostPath}/masks`),
        listAll<Mdev>(ctx.client, `${ctx.hostPath}/mdevs`),
        ctx.client.get<{ features: string[] }>(ctx.hostPath),
      ])
      if (ctx.json) {
        const doc = { host: ctx.host, ...inv, masks: masks.body, mdevs, hostInfo: hostView.body }
        io.stdout.write(`${JSON.stringify(doc, null, 2)}\n`)
        return EXIT.OK
      }
      const g = buildDomainGrid({ host: ctx.host, ...inv, masks: masks.body, mdevs, features: hostView.body.features })
      io.stdout.write(renderDomainGrid(g, inv.domains))
      return EXIT.OK
    }),
}
