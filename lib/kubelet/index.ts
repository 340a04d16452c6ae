/** What the node's kubelet knows, read from its files (never through gRPC: the CNI path stays lean). */
export * from './checkpoint';
