/**
 * The shapes of the REST answers the client verbs read (docs/api.md (REST); the server's schemas are in
 * src/transport/http/schemas.ts). `--json` prints bodies as the server sent them, so nothing is lost.
 * Type-only imports: the CLI loads none of the service's code.
 */

import type { AdapterView, ApplyResult, ConditionView, DomainsView, MasksView, MdevView, Page, PlanAnswer, PlanView, QueueView } from '../../service/types.js'

// The service's views are the JSON bodies of the REST API (dates already strings), so the client reads
// them through the same types: a change of the contract breaks the CLI's build, not its users.
export type { ApplyResult, DomainsView, Page }
export type Adapter = AdapterView
export type Queue = QueueView
export type Condition = ConditionView
export type Mdev = MdevView
export type MdevSpec = MdevView['spec']
export type Masks = MasksView
/** A plan as answered: the summary, and with `view=full` every list. */
export type Plan = PlanAnswer
export type PlanOp = PlanView['operations'][number]

/** The answer of a mutating call with `?dryRun=true`. */
export interface DryRun {
  dryRun: true
  plan: Plan
}

/** An event of `GET /v1/events` (docs/api.md (Resources) Event). */
export interface ApiEvent {
  seq: number
  time: string
  host: string
  kind: string
  name: string
  type: string
  message?: string
  requestId?: string | null
  actor?: string | null
  data?: Record<string, unknown>
}

/** The Ready condition of a device, if reported. */
export function readyCondition(m: Mdev): Condition | undefined {
  return m.status.conditions?.find((c) => c.type === 'Ready')
}

/** Whether the device has converged: Ready True for its current generation. */
export function isConverged(m: Mdev): boolean {
  const ready = readyCondition(m)
  return m.status.observedGeneration === m.metadata.generation && ready?.status === 'True' && ready.observedGeneration === m.metadata.generation
}
