/** Deleting a link (RTM_DELLINK). */
import { IFLA_IFNAME, NLM_F_ACK, NLM_F_REQUEST, RTM_DELLINK } from '../constants';
import { describeRef, LinkRef } from '../link';
import { MessageBuilder } from '../message';
import type { Operation } from '../operation';

export function deleteLinkRequest(ref: LinkRef): Buffer {
  const m = new MessageBuilder(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(typeof ref === 'number' ? ref : 0);
  if (typeof ref === 'string') m.string(IFLA_IFNAME, ref);
  return m.finish();
}

/** The ack is the whole reply: nothing to decode. A missing link fails with ENODEV. */
export function* deleteLinkOp(ref: LinkRef): Operation<void> {
  yield { request: deleteLinkRequest(ref), operation: 'delete link', link: describeRef(ref) };
}
