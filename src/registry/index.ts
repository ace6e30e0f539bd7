/**
 * Public API of the OCI distribution client. Import from here:
 *   import { RegistryClient, defaultCredentials } from '../registry/index.js';
 */
export { RegistryClient } from './client.js';
export { digestOf, isDigest, checkDigest } from '../oci/digest.js';
export { referrersTag, type BlobData, type PushBlobOptions } from './push.js';
export { pullScope, pushScope, normalizeScopes } from './auth.js';
export { parseChallenge, type Challenge } from './challenge.js';
export { staticCredentials, envCredentials, dockerConfigCredentials, chainCredentials, defaultCredentials } from './credentials.js';
export { redactUrl } from './transport.js';
export { RegistryHosts, type RegistryHostsOptions } from './hosts.js';
export { withRequestHeaders } from './request-headers.js';
export {
  MEDIA_TYPES,
  MANIFEST_ACCEPT,
  type Descriptor,
  type Manifest,
  type Credentials,
  type CredentialProvider,
  type RetryOptions,
  type RegistryClientOptions,
} from './types.js';
