/**
 * The one error class of the netlink layer. The native addon constructs it (it receives this class at load
 * time), so `err instanceof NetlinkError` holds for every kernel or syscall failure.
 */
export class NetlinkError extends Error {
  /** Positive errno value, e.g. 17. */
  readonly errno: number;
  /** Symbolic errno name, e.g. `EEXIST`, `ENODEV`. */
  readonly code: string;
  /** What was being done, e.g. `create macvtap`. */
  readonly operation: string;
  /** The link, namespace or path concerned, when there is one. */
  readonly link: string | undefined;
  /** The kernel's extended-ACK text, when it sent one. */
  readonly extack: string | undefined;

  constructor(message: string, errno: number, code: string, operation: string, link?: string, extack?: string) {
    super(message);
    this.name = 'NetlinkError';
    this.errno = errno;
    this.code = code;
    this.operation = operation;
    this.link = link;
    this.extack = extack;
  }
}
