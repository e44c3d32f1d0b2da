/** Host masks (docs/api.md (Resources) "Host masks"): the desired apmask/aqmask and the ones on the bus. */
import { ApmatrixError, type Violation } from '../domain/errors.js'
import type { Mask } from '../domain/mask.js'
import { parseMaskInput, rejection } from './admission.js'
import type { HostAccess } from './host-access.js'
import type { MutationRunner } from './mutation-runner.js'
import { checkPrecondition, precondition } from './preconditions.js'
import type { Fresh, ReadCache } from './read-cache.js'
import { masksChangedEvent } from './resource-events.js'
import type { CallContext, MasksInput, MasksView, Mutation } from './types.js'
import { masksView } from './views.js'

/** The masks operations of the service. */
export class Masks {
  constructor(
    private readonly cache: ReadCache,
    private readonly access: HostAccess,
    private readonly runner: MutationRunner,
    private readonly clock: () => Date,
  ) {}

  /**
   * Desired masks (spec, from the read cache) and the masks on the bus (status, from the bus's host facts;
   * null if the bus cannot be read). NOT_FOUND.
   */
  async getMasks(host: string): Promise<Fresh<MasksView>> {
    const h = this.access.managed(host)
    const [rec, observed] = await Promise.all([
      this.cache.masks(host),
      this.access.facts(h).then(
        (o) => ({ apmask: o.apmask, aqmask: o.aqmask, at: this.clock() }),
        () => null,
      ),
    ])
    return { value: masksView(host, rec.value, observed), staleMs: rec.staleMs }
  }

  /**
   * Changes the desired masks. Each of apmask/aqmask: any kernel syntax (relative terms apply to the
   * current DESIRED mask) or an array of ids; absent = unchanged. BUSY (rule 4, B-24) for every APQN a
   * matrix device (ours or foreign) holds that the change would hand back to the host. CONFLICT (ifMatch).
   */
  async setMasks(host: string, input: MasksInput, ctx: CallContext = {}): Promise<Mutation<MasksView>> {
    const out = await this.runner.run<{ generation: number }>(ctx, {
      host,
      action: 'masks.set',
      target: `hosts/${host}/masks`,
      request: input,
      prepare: (state, stored) => {
        const violations: Violation[] = []
        let errno: ApmatrixError['errno']
        const parse = (v: MasksInput['apmask'], cur: Mask, field: string) => {
          if (v === undefined) return cur
          try {
            return parseMaskInput(v, cur, field)
          } catch (e) {
            if (!(e instanceof ApmatrixError)) throw e
            violations.push(...e.violations)
            errno ??= e.errno
            return cur
          }
        }
        const apmask = parse(input.apmask, state.apmask, 'apmask')
        const aqmask = parse(input.aqmask, state.aqmask, 'aqmask')
        if (violations.length) throw rejection(violations, 'masks', errno)
        checkPrecondition(ctx, stored.masks?.resourceVersion, `masks of ${host} have`)
        return {
          after: { ...state, apmask, aqmask },
          focus: new Set(),
          apply: async (tx) => {
            const rec = await tx.masks.set(host, { apmask: apmask.toString(), aqmask: aqmask.toString() }, precondition(ctx, stored.masks?.resourceVersion))
            // Also a first set of masks that were only adopted (generation 0 -> 1): the stored row changed.
            const changed = rec.resourceVersion !== stored.masks?.resourceVersion
            return { result: { generation: rec.generation }, events: changed ? [masksChangedEvent(host, rec)] : [] }
          },
        }
      },
    })
    if (out.dryRun) return out
    return { dryRun: false, result: (await this.getMasks(host)).value }
  }
}
