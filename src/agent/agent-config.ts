/**
 * Settings of `apmatrix agent`: each a flag and an environment variable (flags win), validated once at
 * start; a bad value stops the agent with a message naming the setting (exit 2).
 */
import { AP_CONFIG_LOCK_PATH } from '../bus/ap-config-lock.js'
import { WATCH_MODES, type WatchMode } from '../bus/change-watcher.js'
import { ConfigError } from '../settings.js'
import type { HostBusServerTls } from '../hostbus/tls.js'
import { AGENT_TLS_SETTINGS, loadServerTls } from '../hostbus/tls-settings.js'

/** The agent's settings: env name, flag, default, help. */
export const AGENT_SETTINGS = {
  addr: {
    env: 'APMATRIX_AGENT_ADDR',
    flag: 'addr',
    def: '127.0.0.1:50152',
    help: 'listen address HOST:PORT; port 0 picks a free port. Any address but loopback needs mutual TLS (--tls-cert, --tls-key, --tls-ca) or --insecure-no-tls',
  },
  sysfsRoot: {
    env: 'APMATRIX_AGENT_SYSFS_ROOT',
    flag: 'sysfs-root',
    def: '/sys',
    help: "the directory served as /sys: this LPAR's /sys, or a mount of one (the emulator's FUSE view)",
  },
  lockPath: {
    env: 'APMATRIX_AGENT_LOCK_PATH',
    flag: 'lock-path',
    def: AP_CONFIG_LOCK_PATH,
    help: 'the s390-tools AP configuration lock (chzdev, mdevctl/ap-check) taken around writes; "none" disables it',
  },
  pollMs: {
    env: 'APMATRIX_AGENT_POLL_MS',
    flag: 'poll-ms',
    def: '1000',
    help: 'poll period of bus/ap/scans, bindings, masks and the matrix device list (poll mode)',
  },
  watch: {
    env: 'APMATRIX_AGENT_WATCH',
    flag: 'watch',
    def: 'auto',
    help: `change detection: ${WATCH_MODES.join('|')} (auto: udevadm monitor when the root is /sys and udevadm exists, else polling)`,
  },
  bootIdFile: {
    env: 'APMATRIX_AGENT_BOOT_ID_FILE',
    flag: 'boot-id-file',
    def: '',
    help: 'file holding the boot id (default /proc/sys/kernel/random/boot_id for /sys; a stable id for other roots)',
  },
  lockMaxHoldMs: {
    env: 'APMATRIX_AGENT_LOCK_MAX_HOLD_MS',
    flag: 'lock-max-hold-ms',
    def: '120000',
    help: 'longest a service may hold the AP configuration lock in one session before the agent releases it',
  },
  ...AGENT_TLS_SETTINGS,
} as const

export type AgentSettingName = keyof typeof AGENT_SETTINGS

/** The validated settings. */
export interface AgentConfig {
  addr: string
  sysfsRoot: string
  /** Null: no lock (`none`). */
  lockPath: string | null
  pollMs: number
  watch: WatchMode
  bootIdFile: string | undefined
  lockMaxHoldMs: number
  /** Mutual TLS; undefined: plaintext (loopback, or --insecure-no-tls). */
  tls: HostBusServerTls | undefined
  /** True when a non-loopback address was allowed without TLS (the agent logs it at start). */
  insecureNoTls: boolean
}

function ms(label: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new ConfigError(`${label}: '${v.slice(0, 40)}' must be an integer number of milliseconds in ${min}..${max}`)
  return Number(v)
}

/** Builds the agent's settings from flags over the environment over defaults; throws ConfigError naming the first bad one. */
export function loadAgentConfig(flags: Partial<Record<AgentSettingName, string>>, env: NodeJS.ProcessEnv): AgentConfig {
  const get = (k: AgentSettingName): string => flags[k] ?? env[AGENT_SETTINGS[k].env] ?? AGENT_SETTINGS[k].def
  const label = (k: AgentSettingName) => `--${AGENT_SETTINGS[k].flag} / ${AGENT_SETTINGS[k].env}`

  const addr = get('addr')
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(addr)
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${label('addr')}: '${addr.slice(0, 100)}' is not HOST:PORT (port 0..65535)`)
  const sysfsRoot = get('sysfsRoot')
  if (!sysfsRoot.startsWith('/') || sysfsRoot.includes('\0'))
    throw new ConfigError(`${label('sysfsRoot')}: '${sysfsRoot.slice(0, 200)}' is not an absolute directory path`)
  const lock = get('lockPath')
  if (lock !== 'none' && (!lock.startsWith('/') || lock.endsWith('/')))
    throw new ConfigError(`${label('lockPath')}: '${lock.slice(0, 200)}' is not an absolute file path or 'none'`)
  const watch = get('watch')
  if (!(WATCH_MODES as readonly string[]).includes(watch))
    throw new ConfigError(`${label('watch')}: '${watch.slice(0, 40)}' is not one of ${WATCH_MODES.join(', ')}`)
  const bootIdFile = get('bootIdFile')
  if (bootIdFile !== '' && !bootIdFile.startsWith('/'))
    throw new ConfigError(`${label('bootIdFile')}: '${bootIdFile.slice(0, 200)}' is not an absolute file path`)
  const { tls, insecureNoTls } = loadServerTls(get, label, m[1]!)
  return {
    addr,
    tls,
    insecureNoTls,
    sysfsRoot,
    lockPath: lock === 'none' ? null : lock,
    pollMs: ms(label('pollMs'), get('pollMs'), 10, 3_600_000),
    watch: watch as WatchMode,
    bootIdFile: bootIdFile || undefined,
    lockMaxHoldMs: ms(label('lockMaxHoldMs'), get('lockMaxHoldMs'), 100, 3_600_000),
  }
}
