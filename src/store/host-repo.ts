import { ApmatrixError } from '../domain/errors.js'
import type { StoreContext } from './context.js'
import { fromJson, toJson } from './json-column.js'
import { dateOf } from './sqlite-direct.js'

/** A registered AP bus (docs/api.md (Resources)). */
export interface HostRecord {
  name: string
  driver: string
  profile: string | null
  machineId: string
  bootId: string
  features: string[]
  maxAdapterId: number
  maxDomainId: number
  createdAt: Date
  updatedAt: Date
}

/** What the service registers for a host at start-up. */
export type HostInput = Omit<HostRecord, 'createdAt' | 'updatedAt' | 'profile'> & { profile?: string | null }

type HostRow = Omit<HostRecord, 'features'> & { features: string }

function toRecord(r: HostRow): HostRecord {
  return { ...r, features: fromJson<string[]>(r.features, []) }
}

/** Hosts: registered by the composition root; matrix devices and masks reference them. */
export class HostRepo {
  constructor(private readonly ctx: StoreContext) {}

  /** Creates or replaces the host's fields (idempotent; a new bootId after a reboot is just an update). */
  upsert(h: HostInput): Promise<HostRecord> {
    const data = { ...h, profile: h.profile ?? null, features: toJson([...h.features].sort()) }
    return this.ctx.write(`host ${h.name}`, async (db) => toRecord(await db.host.upsert({ where: { name: h.name }, create: data, update: data })))
  }

  /** The host; `NOT_FOUND` if it is not registered. */
  get(name: string): Promise<HostRecord> {
    return this.ctx.read(`host ${name}`, async (db, sql) => {
      const d = sql?.get<Omit<HostRow, 'createdAt' | 'updatedAt'> & { createdAt: string; updatedAt: string }>('SELECT * FROM "Host" WHERE "name" = ?', name)
      const r = sql ? d && { ...d, createdAt: dateOf(d.createdAt), updatedAt: dateOf(d.updatedAt) } : await db.host.findUnique({ where: { name } })
      if (!r) throw new ApmatrixError('NOT_FOUND', `host ${name} not found`)
      return toRecord(r)
    })
  }

  /** All hosts by name (a handful per store, so no pagination). */
  list(): Promise<HostRecord[]> {
    return this.ctx.read('hosts', async (db) => (await db.host.findMany({ orderBy: { name: 'asc' } })).map(toRecord))
  }
}
