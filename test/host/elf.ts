/**
 * ELF facts read with binutils' readelf (it reads every architecture's ELF, unlike a native objdump): the
 * machine, the interpreter, the NEEDED libraries and the versioned symbols a file imports.
 */
import { spawnSync } from 'node:child_process';

export interface VersionedImport {
  symbol: string;
  version: string;
}

function readelf(args: string[], file: string): string {
  const r = spawnSync('readelf', ['-W', ...args, file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`readelf ${args.join(' ')} ${file}: ${r.stderr}`);
  return r.stdout;
}

/** `Machine:` of the ELF header, e.g. "Advanced Micro Devices X86-64" or "AArch64". */
export function elfMachine(file: string): string {
  return /^\s*Machine:\s+(.+)$/m.exec(readelf(['-h'], file))?.[1].trim() ?? '';
}

/** The program interpreter (PT_INTERP), if any. */
export function elfInterpreter(file: string): string | undefined {
  return /\[Requesting program interpreter: (.+)\]/.exec(readelf(['-l'], file))?.[1];
}

/** The NEEDED entries of the dynamic section. */
export function elfNeeded(file: string): string[] {
  return [...readelf(['-d'], file).matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]);
}

/** Every undefined dynamic symbol that names a version (`mknod@GLIBC_2.33`). */
export function elfVersionedImports(file: string): VersionedImport[] {
  const out: VersionedImport[] = [];
  for (const line of readelf(['--dyn-syms'], file).split('\n')) {
    const m = /\sUND\s+(\S+?)@+(\w+_[\d.]+)(?:\s|$)/.exec(line);
    if (m) out.push({ symbol: m[1], version: m[2] });
  }
  return out;
}

/** `GLIBC_2.28` -> [2, 28]; compares version tuples. */
export function versionParts(version: string): number[] {
  return (/_([\d.]+)$/.exec(version)?.[1] ?? '').split('.').map(Number);
}

export function compareVersions(a: string, b: string): number {
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** The newest version of each family (GLIBC, GLIBCXX, CXXABI, ...) among the imports. */
export function newestByFamily(imports: VersionedImport[]): Map<string, string> {
  const newest = new Map<string, string>();
  for (const { version } of imports) {
    const family = version.replace(/_[\d.]+$/, '');
    const current = newest.get(family);
    if (!current || compareVersions(version, current) > 0) newest.set(family, version);
  }
  return newest;
}

/**
 * The imports above the allowed version of their family (families not in `allowed` are not limited),
 * as `symbol@VERSION`, sorted.
 */
export function importsAbove(imports: VersionedImport[], allowed: Map<string, string>): string[] {
  return imports
    .filter(({ version }) => {
      const limit = allowed.get(version.replace(/_[\d.]+$/, ''));
      return limit !== undefined && compareVersions(version, limit) > 0;
    })
    .map(({ symbol, version }) => `${symbol}@${version}`)
    .sort();
}
