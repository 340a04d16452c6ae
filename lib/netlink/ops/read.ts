/** Reading links: one by name or ifindex, or all of them (RTM_GETLINK), decoded into `Link` records. */
import { IFLA_EXT_MASK, IFLA_IFNAME, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, RTEXT_FILTER_SKIP_STATS, RTM_GETLINK } from '../constants';
import { NetlinkError } from '../errors';
import { decodeLink, describeRef, Link, LinkRef } from '../link';
import { MessageBuilder } from '../message';
import type { NsTarget, Operation } from '../operation';

/** A dump the kernel reports as interrupted (NLM_F_DUMP_INTR) is retried this often. */
const DUMP_RETRIES = 5;

export function isMissing(err: unknown): boolean {
  return err instanceof NetlinkError && (err.code === 'ENODEV' || err.code === 'ENOENT');
}

/** RTM_GETLINK for one link; statistics skipped (the largest part of the reply, never used here). */
export function getLinkRequest(ref: LinkRef): Buffer {
  const m = new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(typeof ref === 'number' ? ref : 0);
  if (typeof ref === 'string') m.string(IFLA_IFNAME, ref);
  return m.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS).finish();
}

/** The link, or null if there is none; in the handle's namespace or in `where`. */
export function* getLinkOp(ref: LinkRef, where?: NsTarget): Operation<Link | null> {
  try {
    const messages = yield { request: getLinkRequest(ref), operation: 'get link', link: describeRef(ref), in: where };
    return messages.length ? decodeLink(messages[0]) : null;
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

/** The link; a missing one fails with ENODEV, named after `operation`. */
export function* requireLinkOp(ref: LinkRef, operation: string): Operation<Link> {
  const messages = yield { request: getLinkRequest(ref), operation, link: describeRef(ref) };
  return decodeLink(messages[0]);
}

export function* listLinksOp(): Operation<Link[]> {
  const request = new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP)
    .ifinfo(0)
    .u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    .finish();
  for (let attempt = 1; ; attempt++) {
    try {
      const messages = yield { request, operation: 'list links', link: '' };
      return messages.map(decodeLink);
    } catch (err) {
      // NLM_F_DUMP_INTR: links changed during the dump; the kernel asks us to dump again.
      if (!(err instanceof NetlinkError && err.code === 'EINTR') || attempt >= DUMP_RETRIES) throw err;
    }
  }
}
