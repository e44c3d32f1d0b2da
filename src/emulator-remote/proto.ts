/**
 * Loading of `proto/apmatrix/emulator/v1/emulator.proto` and the shapes its messages take in
 * JavaScript under the loader options below (keepCase, uint64 as decimal strings, defaults filled
 * in, the set member of a oneof named in the oneof's field).
 */
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { projectRoot } from '../paths.js'

/** The proto file, resolved from the project root so src/ (tests) and dist/ (built) both find it. */
export const EMULATOR_PROTO_FILE = path.join(projectRoot, 'proto/apmatrix/emulator/v1/emulator.proto')

/** The fully qualified service name (health status key and reflection). */
export const EMULATOR_SERVICE_NAME = 'apmatrix.emulator.v1.Emulator'

const loaderOptions: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }

/** The package definition (for reflection) and the generated client/service constructor. */
export interface EmulatorProto {
  definition: protoLoader.PackageDefinition
  Emulator: grpc.ServiceClientConstructor
}

let cached: EmulatorProto | undefined

/** Loads the proto once per process. */
export function loadEmulatorProto(): EmulatorProto {
  if (!cached) {
    const definition = protoLoader.loadSync(EMULATOR_PROTO_FILE, loaderOptions)
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      apmatrix: { emulator: { v1: { Emulator: grpc.ServiceClientConstructor } } }
    }
    cached = { definition, Emulator: pkg.apmatrix.emulator.v1.Emulator }
  }
  return cached
}

/** uint64 fields arrive as decimal strings (longs: String) and may be sent as numbers. */
export type WireU64 = string | number

export interface WireHardwareAction {
  action: string
  apid?: number
  apqi?: number
  raw_type?: number
  type?: string
  mode?: string
  functions?: number
  control?: boolean
  notify?: boolean
}

export interface WireRequestStats {
  submitted: WireU64
  completed: WireU64
  flushed: WireU64
  rejected: WireU64
}

export interface WireInfo {
  profile: string
  kernel: string
  boot_id: string
  now: number
  clock: string
}

export interface WireEvent {
  seq: WireU64
  time: number
  kind: string
  boot_id: string
  body?: 'uevent' | 'log' | 'apcb' | 'request'
  uevent?: { action: string; devpath: string; env: Record<string, string> } | null
  log?: { level: string; message: string } | null
  apcb?: { uuid: string; guest: string; apm: string; aqm: string; adm: string } | null
  request?: { apqn: string; result: string } | null
}

export interface WireWriteLogEntry {
  seq: WireU64
  wall_time_ms: number
  path: string
  value: string
  fence_host: string
  fence_holder: string
  fence_token: WireU64
  errno: string
  boot_id: string
  fence_refused: boolean
  origin: string
}

export interface WireWriteLog {
  entries: WireWriteLogEntry[]
  first_seq: WireU64
  last_seq: WireU64
  highest_token: Record<string, WireU64>
}
