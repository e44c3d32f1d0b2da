/**
 * Loading of `proto/apmatrix/emulator/v1/emulator.proto` (the controls only an emulator has; its sysfs
 * face is the host-bus service, src/hostbus/proto.ts) and the shapes of its messages in JavaScript under
 * the common loader options.
 */
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { PROTO_LOADER_OPTIONS, type WireU64 } from '../hostbus/proto.js'
import { projectRoot } from '../paths.js'

/** The proto file, resolved from the project root so src/ (tests) and dist/ (built) both find it. */
export const EMULATOR_PROTO_FILE = path.join(projectRoot, 'proto/apmatrix/emulator/v1/emulator.proto')

/** The fully qualified service name (health status key, reflection, HostBus Info.services). */
export const EMULATOR_CONTROL_SERVICE_NAME = 'apmatrix.emulator.v1.EmulatorControl'

/** The package definition (for reflection) and the generated client/service constructor. */
export interface EmulatorProto {
  definition: protoLoader.PackageDefinition
  EmulatorControl: grpc.ServiceClientConstructor
}

let cached: EmulatorProto | undefined

/** Loads the proto once per process. */
export function loadEmulatorProto(): EmulatorProto {
  if (!cached) {
    const definition = protoLoader.loadSync(EMULATOR_PROTO_FILE, PROTO_LOADER_OPTIONS)
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      apmatrix: { emulator: { v1: { EmulatorControl: grpc.ServiceClientConstructor } } }
    }
    cached = { definition, EmulatorControl: pkg.apmatrix.emulator.v1.EmulatorControl }
  }
  return cached
}

export type { WireU64 }

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

/** The emulator control's InfoResponse. */
export interface WireEmulatorInfo {
  profile: string
  kernel: string
  boot_id: string
  now: number
  clock: string
}

export interface WireFaultRule {
  path: string
  rate: number
  kind: string
  delay_ms: number
}

export interface WireFaultConfig {
  rules: WireFaultRule[]
  seed?: number | null
}

export interface WireFaultStatus {
  rules: Array<WireFaultRule & { matched: WireU64; injected: WireU64 }>
  seed: number
  writes: WireU64
  failed: WireU64
  delayed: WireU64
}
