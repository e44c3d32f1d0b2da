/**
 * Server reflection that strict clients can use. @grpc/reflection 1.0.4 serves the file descriptors
 * @grpc/proto-loader builds (one file per package, e.g. `apmatrix_v1.proto`), and neither declares a
 * file's `dependency` list; clients that build a descriptor pool (grpcurl, Python's protobuf) then
 * cannot resolve `google.protobuf.FieldMask` and the wrappers. Also, protobufjs names the entry
 * type of `map<K, V> labels` `Labels` where protoc names it `LabelsEntry`, which those clients refuse
 * ("map_entry should not be set explicitly"). This fills in `dependency` from the type references of
 * each file and renames map entries as protoc does, before the definition goes to the reflection service.
 */
import { createRequire } from 'node:module'
import type * as protoLoader from '@grpc/proto-loader'

interface FileProto {
  name?: string
  package?: string
  dependency: string[]
  messageType: MessageProto[]
  service: Array<{ method: Array<{ inputType?: string; outputType?: string }> }>
}
interface MessageProto {
  name?: string
  field: Array<{ name?: string; typeName?: string }>
  nestedType: MessageProto[]
  options?: { mapEntry?: boolean } | null
}
interface Codec {
  decode(b: Uint8Array): FileProto
  encode(m: FileProto): { finish(): Uint8Array }
}

// The FileDescriptorProto codec of protobufjs, the library @grpc/proto-loader and @grpc/reflection use.
const { FileDescriptorProto } = createRequire(import.meta.url)('protobufjs/ext/descriptor') as { FileDescriptorProto: Codec }

/** A copy of `definition` whose file descriptors declare the files they depend on. */
export function withFileDependencies(definition: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  // Every type of a loaded file lists the same descriptor buffers: decode each buffer once.
  const decoded = new Map<Buffer, FileProto>()
  const decode = (bin: Buffer) => {
    let f = decoded.get(bin)
    if (!f) decoded.set(bin, (f = FileDescriptorProto.decode(bin)))
    return f
  }
  const files = new Map<string, FileProto>()
  for (const v of Object.values(definition)) {
    for (const bin of (v as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const f = decode(bin)
      if (f.name && !files.has(f.name)) files.set(f.name, f)
    }
  }
  for (const f of files.values()) renameMapEntries(f.messageType)
  // Fully qualified message name (`.pkg.Msg`, nested `.pkg.Msg.Inner`) → its file.
  const owner = new Map<string, string>()
  const index = (file: string, prefix: string, ms: MessageProto[]) => {
    for (const m of ms) {
      owner.set(`${prefix}.${m.name}`, file)
      index(file, `${prefix}.${m.name}`, m.nestedType ?? [])
    }
  }
  for (const [name, f] of files) index(name, f.package ? `.${f.package}` : '', f.messageType)
  const encoded = new Map<string, Buffer>()
  for (const [name, f] of files) {
    const deps = new Set<string>(f.dependency ?? [])
    // proto-loader keeps type names as written (`google.protobuf.FieldMask`, `MdevSpec`): resolve them
    // like protoc, innermost scope first.
    const ref = (t: string | undefined, scope: string) => {
      if (!t) return
      let o: string | undefined
      if (t.startsWith('.')) o = owner.get(t)
      else {
        for (let s = scope; o === undefined; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
          o = owner.get(`${s}.${t}`)
          if (!s) break
        }
      }
      if (o && o !== name) deps.add(o)
    }
    const pkg = f.package ? `.${f.package}` : ''
    const walk = (ms: MessageProto[], scope: string) => {
      for (const m of ms) {
        for (const fl of m.field ?? []) ref(fl.typeName, `${scope}.${m.name}`)
        walk(m.nestedType ?? [], `${scope}.${m.name}`)
      }
    }
    walk(f.messageType, pkg)
    for (const s of f.service ?? []) for (const m of s.method ?? []) ref(m.inputType, pkg), ref(m.outputType, pkg)
    f.dependency = [...deps].sort()
    encoded.set(name, Buffer.from(FileDescriptorProto.encode(f).finish()))
  }
  const out: protoLoader.PackageDefinition = {}
  for (const [k, v] of Object.entries(definition)) {
    const bins = (v as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos
    out[k] = bins ? ({ ...v, fileDescriptorProtos: bins.map((b) => encoded.get(decode(b).name ?? '') ?? b) } as typeof v) : v
  }
  return out
}

/** protoc's map entry name: `control_domains` → `ControlDomainsEntry`. */
function entryName(field: string): string {
  return `${field.replace(/(?:^|_)([a-z0-9])/g, (_, c: string) => c.toUpperCase())}Entry`
}

function renameMapEntries(ms: MessageProto[]): void {
  for (const m of ms) {
    for (const nested of m.nestedType ?? []) {
      if (!nested.options?.mapEntry || !nested.name) continue
      const field = (m.field ?? []).find((f) => f.typeName === nested.name || f.typeName?.endsWith(`.${m.name}.${nested.name}`))
      if (!field?.name) continue
      nested.name = entryName(field.name)
      field.typeName = nested.name
    }
    renameMapEntries(m.nestedType ?? [])
  }
}
