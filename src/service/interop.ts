/**
 * Interoperation with the host's other tools (issue 4 §4): a stored matrix device exported in mdevctl's
 * or libvirt's format, and foreign documents imported (or foreign devices on the bus adopted).
 */
import { ApmatrixError, invalidArgument, type Violation } from '../domain/errors.js'
import { sameSpec } from '../domain/mdev.js'
import { EXPORT_FORMATS, exportMatrixDevice, IMPORT_FORMATS, importMatrixDevices } from '../interop/formats.js'
import type { EventInput } from '../store/index.js'
import { planned, withMdev } from './host-state.js'
import type { MatrixDevices } from './matrix-devices.js'
import { checkFormat, checkOwner } from './mdev-input.js'
import type { MutationRunner } from './mutation-runner.js'
import { mdevEvent } from './resource-events.js'
import type { CallContext, ExportView, ImportAction, ImportOptions, ImportView, MdevView, Mutation } from './types.js'
import { mdevView } from './views.js'

/** The import and export operations of the service. */
export class Interop {
  constructor(
    private readonly mdevs: MatrixDevices,
    private readonly runner: MutationRunner,
  ) {}

  /**
   * One stored matrix device in a foreign tool's format (`mdevctl` definition JSON, libvirt node-device
   * XML, libvirt guest hostdev XML). INVALID_ARGUMENT for an unknown format, NOT_FOUND.
   */
  async exportMdev(host: string, uuid: string, format: string, ctx: CallContext = {}): Promise<ExportView> {
    checkFormat(format, EXPORT_FORMATS)
    const m = (await this.mdevs.getMdev(host, uuid, ctx)).value
    // The foreign formats have no drain policy: it is not exported.
    const { drain: _drain, ...spec } = m.spec
    return exportMatrixDevice({ uuid: m.metadata.uuid, spec }, format)
  }

  /**
   * Imports every matrix device of a foreign document (`mdevctl list --defined --dumpjson` as text or
   * parsed JSON; one libvirt node-device XML text), all or nothing, through the admission of a create
   * over the whole host (every violation reported). Per device: new → created with `origin: imported`
   * and an MdevDefined event; a device on the bus that the store does not know → adopted (it becomes
   * ours, docs/api.md (Reconcile)); stored with the same spec → left as is; stored with another spec, or being
   * deleted → ALREADY_EXISTS (every such device listed). INVALID_ARGUMENT / OUT_OF_RANGE for a malformed
   * document or format. Honours dryRun and idempotencyKey; `created` is true when any device was stored.
   */
  async importMdevs(host: string, format: string, document: unknown, ctx: CallContext & ImportOptions = {}): Promise<Mutation<ImportView>> {
    checkFormat(format, IMPORT_FORMATS)
    if (ctx.state !== undefined && format !== 'libvirt-nodedev')
      throw invalidArgument('state', 'only a libvirt-nodedev import takes a state (mdevctl documents carry start auto|manual)')
    if (ctx.state !== undefined && ctx.state !== 'started' && ctx.state !== 'stopped') throw invalidArgument('state', 'must be started or stopped')
    const owner = ctx.owner === undefined ? null : checkOwner(ctx.owner)
    return this.runner.run<ImportView>(ctx, {
      host,
      action: 'mdev.import',
      target: `hosts/${host}/import`,
      request: { format, document, owner, state: ctx.state ?? null },
      prepare: (state, stored) => {
        const doc = importMatrixDevices(document, format, { limits: state.limits, ...(ctx.state ? { state: ctx.state } : {}) })
        const violations: Violation[] = []
        const actions: ImportAction[] = []
        let after = state
        for (const d of doc.devices) {
          const cur = stored.mdevs.find((m) => m.uuid === d.uuid)
          if (cur?.deletionRequestedAt) {
            violations.push({
              rule: 'ALREADY_EXISTS',
              field: d.uuid,
              message: `matrix device ${d.uuid} exists and is being deleted`,
              fix: 'wait until it is gone, or import it under another uuid',
            })
          } else if (cur && !sameSpec(cur.spec, d.spec)) {
            violations.push({
              rule: 'ALREADY_EXISTS',
              field: d.uuid,
              message: `matrix device ${d.uuid} already exists with a different spec`,
              fix: 'change it with PUT or PATCH, or import it under another uuid',
            })
          } else if (cur) {
            actions.push({ uuid: d.uuid, action: 'unchanged' })
          } else {
            // Adoption: the foreign device leaves `foreign` and becomes one of ours; admission then judges the document's matrix.
            const adopted = after.foreign.some((f) => f.uuid === d.uuid)
            after = { ...withMdev(after, planned(d.uuid, d.spec)), foreign: after.foreign.filter((f) => f.uuid !== d.uuid) }
            actions.push({ uuid: d.uuid, action: adopted ? 'adopted' : 'created' })
          }
        }
        if (violations.length) {
          throw new ApmatrixError(
            'ALREADY_EXISTS',
            `import refused: ${violations[0]!.message}${violations.length > 1 ? ` (${violations.length} devices in all)` : ''}`,
            { violations },
          )
        }
        const specOf = new Map(doc.devices.map((d) => [d.uuid, d.spec]))
        return {
          after,
          focus: new Set(actions.map((a) => a.uuid)),
          apply: async (tx) => {
            const events: EventInput[] = []
            const items: MdevView[] = []
            for (const a of actions) {
              if (a.action === 'unchanged') {
                items.push(mdevView(stored.mdevs.find((m) => m.uuid === a.uuid)!))
                continue
              }
              const { mdev } = await tx.mdevs.create({ host, uuid: a.uuid, spec: specOf.get(a.uuid)!, owner, origin: 'imported' })
              events.push(
                mdevEvent(mdev, 'MdevDefined', a.action === 'adopted' ? `adopted from the bus by a ${format} import` : `defined by a ${format} import`),
              )
              items.push(mdevView(mdev))
            }
            const count = (x: ImportAction['action']) => actions.filter((a) => a.action === x).length
            return {
              result: { items, actions, skipped: doc.skipped },
              created: events.length > 0,
              events,
              detail: {
                format,
                createdDevices: count('created'),
                adoptedDevices: count('adopted'),
                unchangedDevices: count('unchanged'),
                skippedDefinitions: doc.skipped.length,
              },
            }
          },
        }
      },
    })
  }
}
