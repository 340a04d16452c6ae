/** macvtap-cni: the library. See README.md ("Library API"). */
export * from './netlink';
