/** containerd's defaults, as its clients (and AWS's CLI) use them; no gRPC is loaded for these. */
export const DEFAULT_ADDRESS = '/run/containerd/containerd.sock';
export const DEFAULT_NAMESPACE = 'default';
