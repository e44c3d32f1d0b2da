/**
 * The role model (docs/security.md (Roles)): verbs x resources as DATA, in the spirit of Kubernetes RBAC
 * and libvirt's node-device permissions, and the bindings file that maps callers to roles.
 *
 * A small table rather than a policy engine (casbin, @casl/ability): the only conditions are "own matrix
 * devices" (tenant) and "these hosts" (binding), both plain comparisons; a table reads as the docs'
 * role table and the authorization matrix test derives its expectations from the same object.
 */
import fs from 'node:fs'
import { Type, type Static } from 'typebox'
import Value from 'typebox/value'
import { LineCounter, parseDocument } from 'yaml'

/** What a caller does (libvirt-like: read covers getattr/list; run is a read-only computation such as a plan). */
export const VERBS = ['read', 'watch', 'run', 'create', 'update', 'delete'] as const
export type Verb = (typeof VERBS)[number]

/**
 * What it is done to. `identity` is the caller's own identity (whoami), granted to every authenticated caller;
 * `imports` is bulk import of foreign definitions; `desired` is apply of a desired-state document.
 */
export const RESOURCES = ['hosts', 'inventory', 'masks', 'mdevs', 'desired', 'imports', 'plans', 'events', 'emulator', 'sysfs', 'audit', 'identity'] as const
export type Resource = (typeof RESOURCES)[number]

/** One grant of a role; `own`: only matrix devices whose owner is the caller's tenant name. */
export interface Rule {
  readonly resources: readonly Resource[] | '*'
  readonly verbs: readonly Verb[] | '*'
  readonly own?: boolean
}

const READ: Verb[] = ['read']
const ALL: Verb[] = [...VERBS]

/** The roles (issue 9 §2). Every role may read its own identity (whoami). */
export const ROLE_TABLE: Readonly<Record<string, readonly Rule[]>> = {
  viewer: [
    // Everything but raw sysfs and the audit trail.
    { resources: ['hosts', 'inventory', 'masks', 'mdevs', 'emulator'], verbs: READ },
    { resources: ['plans'], verbs: ['run'] },
    { resources: ['events'], verbs: ['watch'] },
  ],
  tenant: [
    { resources: ['hosts', 'inventory'], verbs: READ },
    { resources: ['mdevs'], verbs: ['read', 'create', 'update', 'delete'], own: true },
    { resources: ['plans'], verbs: ['run'] },
    { resources: ['events'], verbs: ['watch'] },
  ],
  operator: [
    { resources: ['hosts', 'inventory', 'masks', 'emulator'], verbs: READ },
    { resources: ['mdevs'], verbs: ALL },
    { resources: ['desired'], verbs: ['update'] },
    { resources: ['imports'], verbs: ['create'] },
    { resources: ['plans'], verbs: ['run'] },
    { resources: ['events'], verbs: ['watch'] },
  ],
  'host-admin': [
    { resources: ['hosts', 'inventory', 'emulator'], verbs: READ },
    { resources: ['masks'], verbs: ['read', 'update'] },
    { resources: ['mdevs'], verbs: ALL },
    { resources: ['desired'], verbs: ['update'] },
    { resources: ['imports'], verbs: ['create'] },
    { resources: ['plans'], verbs: ['run'] },
    { resources: ['events'], verbs: ['watch'] },
  ],
  'emulator-admin': [
    { resources: ['hosts', 'inventory'], verbs: READ },
    { resources: ['emulator', 'sysfs'], verbs: ['read', 'update'] },
    { resources: ['events'], verbs: ['watch'] },
  ],
  admin: [{ resources: '*', verbs: '*' }],
}

/** The role names. */
export const ROLE_NAMES = Object.keys(ROLE_TABLE)

const Name = Type.String({ minLength: 1, maxLength: 256 })
const HostName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' })

/** One binding: who (subjects, groups, token names), which roles, optionally which hosts and which tenant name. */
export const BindingSchema = Type.Object(
  {
    /** Certificate names, JWT subjects, static token names (each as the principal's subject). */
    subjects: Type.Optional(Type.Array(Name, { maxItems: 1000 })),
    /** JWT groups (claim `groups`). */
    groups: Type.Optional(Type.Array(Name, { maxItems: 1000 })),
    roles: Type.Array(Type.String({ enum: ROLE_NAMES }), { minItems: 1, maxItems: 16 }),
    /** Limits these roles to these hosts; absent = every host. */
    hosts: Type.Optional(Type.Array(HostName, { minItems: 1, maxItems: 1000 })),
    /** The owner name a tenant manages; default: the subject. */
    tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  },
  { additionalProperties: false },
)
export type Binding = Static<typeof BindingSchema>

/** The bindings file: `{ bindings: [...] }`. */
export const RbacFileSchema = Type.Object({ bindings: Type.Array(BindingSchema, { maxItems: 10_000 }) }, { additionalProperties: false })
export type RbacFile = Static<typeof RbacFileSchema>

/** A bindings file that does not read or validate; the message names the file, the line and the field. */
export class RbacFileError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RbacFileError'
  }
}

/** What a binding grants a caller. */
export interface Grant {
  roles: string[]
  hosts: string[] | null
  tenant: string | null
}

/** Resolves callers to roles. */
export class Bindings {
  constructor(readonly file: RbacFile) {}

  /** Everything the bindings grant a caller known by `names` (its subject first) or one of `groups`: roles, host limit (null = any), tenant name. */
  grant(names: readonly string[], groups: readonly string[]): Grant {
    const roles = new Set<string>()
    let hosts: Set<string> | null = new Set()
    let anyHost = false
    let tenant: string | null = null
    for (const b of this.file.bindings) {
      const hit = (b.subjects?.some((s) => names.includes(s)) ?? false) || (b.groups?.some((g) => groups.includes(g)) ?? false)
      if (!hit) continue
      for (const r of b.roles) roles.add(r)
      if (b.hosts) for (const h of b.hosts) hosts.add(h)
      else anyHost = true
      if (b.roles.includes('tenant')) tenant ??= b.tenant ?? names[0] ?? null
    }
    if (anyHost) hosts = null
    return { roles: [...roles].sort(), hosts: hosts ? [...hosts].sort() : null, tenant }
  }
}

/**
 * Reads and validates a bindings file (YAML or JSON; JSON is YAML). RbacFileError naming the file, the
 * line and the field of the first problems.
 */
export function loadBindings(file: string): Bindings {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (e) {
    throw new RbacFileError(`${file}: cannot be read (${(e as Error).message})`)
  }
  return parseBindings(text, file)
}

/** {@link loadBindings} of a text (`name` is used in messages). */
export function parseBindings(text: string, name = 'roles file'): Bindings {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false })
  const lineOf = (offset: number | undefined) => (offset === undefined ? 1 : lines.linePos(offset).line)
  if (doc.errors.length) {
    const e = doc.errors[0]!
    throw new RbacFileError(`${name}: line ${lineOf(e.pos[0])}: ${e.message.split('\n')[0]}`)
  }
  const data = doc.toJS({ maxAliasCount: 100 }) as unknown
  const errors = [...Value.Errors(RbacFileSchema, data)].filter((e) => e.keyword !== 'boolean')
  if (errors.length) {
    const parts = errors.slice(0, 5).map((e) => {
      const path = e.instancePath.split('/').filter(Boolean)
      let node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined
      // A missing or extra key: point at the object that should (not) have it.
      for (let i = path.length; !node?.range && i > 0; i--) node = doc.getIn(path.slice(0, i - 1), true) as typeof node
      const field = path.length ? path.join('.') : '(top level)'
      const extra = e.keyword === 'additionalProperties' ? ` (${JSON.stringify((e.params as { additionalProperties?: unknown }).additionalProperties)})` : ''
      const allowed = e.keyword === 'enum' ? ` (roles: ${ROLE_NAMES.join(', ')})` : ''
      return `line ${lineOf(node?.range?.[0])}: ${field}: ${e.message}${extra}${allowed}`
    })
    throw new RbacFileError(`${name}: ${parts.join('; ')}`)
  }
  return new Bindings(data as RbacFile)
}
