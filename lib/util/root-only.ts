/**
 * The one rule for files that only root on the node may write (the CNI's host configuration, the kubelet's
 * checkpoint) and their directories: owned by root (or by this process's user, for tests run as another user)
 * and not writable by group or others.
 */

/** Why a file or directory with this owner and mode could have been written by someone else, or undefined. */
export function ownerProblem(st: { uid: number; mode: number }): string | undefined {
  const euid = process.geteuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== euid) return `is owned by uid ${st.uid}, not root`;
  if (st.mode & 0o022) return `is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)})`;
  return undefined;
}
