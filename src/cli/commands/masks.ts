/**
 * `apmatrix masks get|set`: the host's apmask and aqmask (docs/api.md (REST)), desired and observed. `set`
 * passes the kernel's write syntax through unchanged (B-21: `0x...` absolute, `+n,-m,+a-b` relative to
 * the current desired mask), so what works with `echo ... > /sys/bus/ap/apmask` works here.
 */
import { CLIENT_OPTIONS, clientContext, clientOptionsHelp } from '../args/client-options.js'
import type { DryRun, Masks } from '../client/api-types.js'
import { withClientErrors } from '../client/report-error.js'
import { type CliCommand, type CliIo, EXIT, UsageError } from '../command.js'
import { formatRanges } from '../format/ids.js'
import { renderTable } from '../format/table.js'
import { printPlan } from './plan.js'

/** The masks as a table: each mask desired and observed, in hex and as id ranges. */
export function renderMasks(m: Masks): string {
  const rows: string[][] = []
  for (const k of ['apmask', 'aqmask'] as const) {
    const ids = `${k}Ids` as const
    rows.push([k, 'desired', m.spec[k], formatRanges(m.spec[ids])])
    rows.push(['', 'observed', m.status ? m.status[k] : '-', m.status ? formatRanges(m.status[ids]) : '(not read yet)'])
  }
  const head = `host ${m.metadata.host}, generation ${m.metadata.generation}${m.status ? `, observed at ${m.status.observedAt}` : ''}\n`
  return head + renderTable(['MASK', '', 'VALUE', 'IDS (held by the host drivers)'], rows)
}

function print(io: CliIo, json: boolean, m: Masks): void {
  io.stdout.write(json ? `${JSON.stringify(m, null, 2)}\n` : renderMasks(m))
}

/** The `masks get` verb. */
export const masksGetCommand: CliCommand = {
  path: ['masks', 'get'],
  summary: 'show the host apmask and aqmask, desired and observed',
  help: `Usage: apmatrix masks get [--host NAME] [--json]

Shows the apmask and aqmask of a host: the desired value (stored) and the observed value (read from the
bus), in hex and as id ranges. APQNs inside apmask x aqmask belong to the host's default drivers; a
matrix device can only use APQNs outside it.

Options:
${clientOptionsHelp()}
`,
  options: CLIENT_OPTIONS,
  run: (args, io) =>
    withClientErrors(io, async () => {
      const ctx = clientContext(args, io)
      print(io, ctx.json, (await ctx.client.get<Masks>(`${ctx.hostPath}/masks`)).body)
      return EXIT.OK
    }),
}

/** The `masks set` verb. */
export const masksSetCommand: CliCommand = {
  path: ['masks', 'set'],
  summary: 'set the host apmask/aqmask (kernel syntax: 0x..., +n,-m,+a-b)',
  help: `Usage: apmatrix masks set [--apmask=SPEC] [--aqmask=SPEC] [--dry-run] [--host NAME] [--json]

Sets the desired masks in the kernel's syntax (B-21): an absolute 0x hex mask, or a relative list like
+7,-5,-6 or -0x10-0x1f applied to the current desired mask. A change that would take an APQN from a
matrix device is refused (BUSY, exit 3) with the device named.

A value that starts with '-' must be attached with '=': --apmask=-5,-6 (with a space, '--apmask -5'
reads -5 as an option and is refused as a usage error).

Options:
  --apmask=SPEC       the new apmask (adapters kept by the host drivers)
  --aqmask=SPEC       the new aqmask (domains kept by the host drivers)
  --dry-run           print the plan (queues drained, devices affected, violations) without storing
${clientOptionsHelp()}
`,
  options: { ...CLIENT_OPTIONS, apmask: { type: 'string' }, aqmask: { type: 'string' }, 'dry-run': { type: 'boolean' } },
  run: (args, io) =>
    withClientErrors(io, async () => {
      const body: Record<string, string> = {}
      for (const k of ['apmask', 'aqmask'] as const) if (typeof args.values[k] === 'string') body[k] = args.values[k] as string
      if (Object.keys(body).length === 0) throw new UsageError('nothing to set: give --apmask=SPEC and/or --aqmask=SPEC')
      const ctx = clientContext(args, io)
      const dryRun = args.values['dry-run'] === true
      const { body: out } = await ctx.client.request<Masks | DryRun>('PUT', `${ctx.hostPath}/masks`, {
        body,
        query: { dryRun: dryRun || undefined, view: dryRun ? 'full' : undefined },
      })
      if ('dryRun' in out) return printPlan(io, ctx.json, out.plan)
      print(io, ctx.json, out)
      return EXIT.OK
    }),
}
