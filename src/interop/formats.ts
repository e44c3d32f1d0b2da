import { ApmatrixError } from '../domain/errors.js'
import type { MdevDesired, MdevSpec } from '../domain/mdev.js'
import { formatLibvirtHostdev } from './libvirt-hostdev.js'
import { formatLibvirtNodedev, importLibvirtNodedev, type LibvirtNodedevImportOptions } from './libvirt-nodedev.js'
import { formatMdevctlDefinition, importMdevctlDump, mdevctlDefinitionPath, type SkippedDefinition } from './mdevctl.js'
import { clip } from '../domain/text.js'

/** The `format` values of `GET .../mdevs/{uuid}/export` and gRPC `ExportMdev` (docs/api.md (Reconcile), §6). */
export const EXPORT_FORMATS = ['mdevctl', 'libvirt-nodedev', 'libvirt-hostdev'] as const
export type ExportFormat = (typeof EXPORT_FORMATS)[number]

/** The `format` values of `POST .../import` and gRPC `ImportMdevs`. */
export const IMPORT_FORMATS = ['mdevctl', 'libvirt-nodedev'] as const
export type ImportFormat = (typeof IMPORT_FORMATS)[number]

/** An exported document: its text, its media type, and where the foreign tool keeps it (mdevctl only). */
export interface ExportedDocument {
  format: ExportFormat
  contentType: 'application/json' | 'application/xml'
  body: string
  /** mdevctl: the definition file path (`/etc/mdevctl.d/matrix/<uuid>`). */
  path?: string
}

/** What an import produced: the matrix devices and the foreign definitions it left out (mdevctl only). */
export interface ImportResult {
  devices: MdevDesired[]
  skipped: SkippedDefinition[]
}

/**
 * Exports one matrix device in a foreign tool's format. Pure. Throws INVALID_ARGUMENT for an unknown format
 * or a malformed UUID.
 */
export function exportMatrixDevice(device: { uuid: string; spec: MdevSpec }, format: string): ExportedDocument {
  switch (format as ExportFormat) {
    case 'mdevctl':
      return { format: 'mdevctl', contentType: 'application/json', body: formatMdevctlDefinition(device), path: mdevctlDefinitionPath(device.uuid) }
    case 'libvirt-nodedev':
      return { format: 'libvirt-nodedev', contentType: 'application/xml', body: formatLibvirtNodedev(device) }
    case 'libvirt-hostdev':
      return { format: 'libvirt-hostdev', contentType: 'application/xml', body: formatLibvirtHostdev(device.uuid) }
  }
  throw unknownFormat(format, EXPORT_FORMATS)
}

/**
 * Imports matrix devices from a foreign document: `mdevctl` takes a `mdevctl list --defined --dumpjson`
 * document (text or parsed JSON), `libvirt-nodedev` one node-device XML text. Pure. Throws
 * INVALID_ARGUMENT / OUT_OF_RANGE with every violation (see importMdevctlDump, importLibvirtNodedev).
 */
export function importMatrixDevices(body: unknown, format: string, opts: LibvirtNodedevImportOptions = {}): ImportResult {
  switch (format as ImportFormat) {
    case 'mdevctl':
      return importMdevctlDump(body, opts)
    case 'libvirt-nodedev':
      if (typeof body !== 'string') {
        throw new ApmatrixError('INVALID_ARGUMENT', 'libvirt-nodedev import: the body must be XML text', {
          violations: [{ rule: 'INVALID_ARGUMENT', field: 'body', message: 'libvirt-nodedev import: the body must be XML text' }],
        })
      }
      return { devices: [importLibvirtNodedev(body, opts)], skipped: [] }
  }
  throw unknownFormat(format, IMPORT_FORMATS)
}

function unknownFormat(format: string, known: readonly string[]): ApmatrixError {
  const message = `format: ${JSON.stringify(clip(String(format), 32))} is not one of ${known.join(', ')}`
  return new ApmatrixError('INVALID_ARGUMENT', message, { violations: [{ rule: 'INVALID_ARGUMENT', field: 'format', message }] })
}
