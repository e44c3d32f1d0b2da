import { normalizeUuid } from '../domain/mdev.js'

/**
 * The guest side of a matrix device: the `<hostdev>` element that goes into a libvirt domain's `<devices>`
 * (formatdomain, mdev host devices: `model='vfio-ap'`, at most one per guest). It names the mdev only by
 * its UUID. Throws INVALID_ARGUMENT for a malformed UUID; returns the element with a final newline.
 */
export function formatLibvirtHostdev(uuid: string): string {
  return (
    "<hostdev mode='subsystem' type='mdev' model='vfio-ap'>\n" +
    '  <source>\n' +
    `    <address uuid='${normalizeUuid(uuid)}'/>\n` +
    '  </source>\n' +
    '</hostdev>\n'
  )
}
