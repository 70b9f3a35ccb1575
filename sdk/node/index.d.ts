// Hand-written types for @stellaops/envelope (no build step). The
// Fastify plugin has its own entry point and types: fastify.d.ts.

/// <reference types="node" />

import type { IncomingMessage, ServerResponse } from 'node:http';

// ---------------------------------------------------------------------------
// Vocabulary

/** The codes of SPEC.md section 5, one per check. */
export type EnvelopeErrorCode =
  | 'missing_header'
  | 'duplicate_header'
  | 'header_too_large'
  | 'malformed_header'
  | 'unsupported_alg'
  | 'unknown_kid'
  | 'alg_not_allowed_for_key'
  | 'malformed_timestamp'
  | 'malformed_signature'
  | 'bad_signature'
  | 'malformed_payload'
  | 'unsupported_version'
  | 'timestamp_mismatch'
  | 'bad_lifetime'
  | 'expired'
  | 'issued_in_future'
  | 'issuer_mismatch'
  | 'audience_mismatch'
  | 'request_mismatch';

export type Alg = 'HS256' | 'EdDSA';
export type AuthMethod = 'bearer' | 'dpop' | 'mtls' | 'spiffe' | 'anonymous' | 'bypass';
export type TrustModeName = 'ServiceEnforced' | 'Hybrid' | 'GatewayEnforced';
export type RejectionCode = 'envelope_required' | 'envelope_invalid' | 'envelope_audience_mismatch';

/** An environment: process.env or any object of the same shape. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Where log lines go: console, pino, fastify.log, ... */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/**
 * Request headers in any of the forms verify reads: node's flat
 * `req.rawHeaders` (the only form that shows a header sent twice), an array
 * of [name, value] pairs, an object such as `req.headers` (an array value
 * is one field line per element), or a Map / fetch Headers.
 */
export type HeaderInput =
  | readonly string[]
  | ReadonlyArray<readonly [string, string | Uint8Array]>
  | Readonly<Record<string, string | readonly string[] | undefined>>
  | ReadonlyMap<string, string>
  | Headers;

// ---------------------------------------------------------------------------
// Strict decoding

/** Canonical unpadded base64url, or null. */
export function b64urlDecode(text: string): Buffer | null;
export function b64urlEncode(bytes: Uint8Array): string;
/** Canonical decimal (digits, no sign, no leading zero, at most 15 digits), or null. */
export function parseCanonicalDecimal(text: string): number | null;

/** A JSON number kept as its literal. */
export class JsonNumber {
  readonly text: string;
  /** No fraction and no exponent. */
  readonly integer: boolean;
  constructor(text: string, integer: boolean);
}
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | Map<string, JsonValue>;

export class JsonError extends Error {
  readonly reason: 'utf8' | 'not_object' | 'syntax' | 'duplicate_member' | 'too_deep';
}
export const MAX_JSON_DEPTH: number;
/** One JSON object from UTF-8 bytes; refuses duplicate member names at any depth. */
export function parseStrictJsonObject(bytes: Uint8Array): Map<string, JsonValue>;

// ---------------------------------------------------------------------------
// Headers and errors

export const HEADER_ENVELOPE: 'X-StellaOps-Identity-Envelope';
export const HEADER_SIGNATURE: 'X-StellaOps-Identity-Envelope-Signature';
export const HEADER_ALG: 'X-StellaOps-Identity-Envelope-Alg';
export const HEADER_KID: 'X-StellaOps-Identity-Envelope-Kid';
export const HEADER_IAT: 'X-StellaOps-Identity-Envelope-Iat';
export const HEADER_EXP: 'X-StellaOps-Identity-Envelope-Exp';
export const HEADER_NAMES: readonly string[];
export const MAX_ENVELOPE_LEN: number;
export const MAX_SMALL_HEADER_LEN: number;
export const SIGNING_DOMAIN: 'StellaOps-Identity-Envelope/1';

/** The six header values of one envelope, as received. */
export interface EnvelopeHeaders {
  envelope: string;
  signature: string;
  alg: string;
  kid: string;
  iat: string;
  exp: string;
}

/** A failed envelope check. The message never echoes a header value. */
export class EnvelopeError extends Error {
  readonly name: 'EnvelopeError';
  readonly code: EnvelopeErrorCode;
  /** The header concerned, for the header checks (check 1). */
  readonly header: string | null;
}

/** Check 1: null when none of the six headers is present. */
export function extractEnvelopeHeaders(headers: HeaderInput): EnvelopeHeaders | null | EnvelopeError;
/** The exact string signed (SPEC.md section 3). */
export function signingInput(headers: EnvelopeHeaders): string;

// ---------------------------------------------------------------------------
// Keys

export const MIN_HMAC_SECRET_LEN: number;
export const MAX_KID_LEN: number;
export function isValidKid(kid: unknown): kid is string;

export class KeyError extends Error {
  readonly reason:
    | 'bad_kid'
    | 'unknown_form'
    | 'encoding'
    | 'short_secret'
    | 'ed25519_length'
    | 'ed25519_key'
    | 'list_entry'
    | 'duplicate_kid';
}

/** One key: a kid and exactly one algorithm. Material is never shown. */
export class Key {
  private constructor();
  readonly kid: string;
  readonly kind: 'hs256' | 'ed25519-public' | 'ed25519-private';
  readonly alg: Alg;
  /** `hs256:`, `ed25519-public:` or `ed25519-private:` followed by base64url. */
  static parse(kid: string, spec: string): Key;
  /** As parse, or else the text's UTF-8 bytes as an HS256 secret (Router__IdentityEnvelopeSigningKey). */
  static parseCompat(kid: string, text: string): Key;
  static hmac(kid: string, secret: Uint8Array): Key;
  static ed25519Public(kid: string, publicKey: Uint8Array): Key;
  static ed25519FromSeed(kid: string, seed: Uint8Array): Key;
  /** Constant time for HMAC. */
  verify(message: string, signature: Uint8Array): boolean;
  sameAs(other: Key): boolean;
  toJSON(): { kid: string; kind: Key['kind']; alg: Alg };
}

/** The accepted keys, by kid. Immutable. */
export class Keyring {
  constructor(keys?: Iterable<Key>);
  /** `kid=key;kid=key` (`;` or `,`). */
  static parseList(text: string): Keyring;
  get(kid: string): Key | undefined;
  /** Sorted. */
  kids(): string[];
  keys(): Key[];
  readonly size: number;
  sameKeys(other: Keyring): boolean;
}

// ---------------------------------------------------------------------------
// Verification

/** The payload members exactly as signed (SPEC.md section 2). */
export interface EnvelopePayload {
  readonly ver: number;
  readonly iss: string;
  readonly aud: string;
  readonly sub: string | null;
  readonly tenant: string | null;
  readonly client_id: string | null;
  readonly scopes: readonly string[];
  readonly roles: readonly string[];
  readonly auth_method: AuthMethod;
  readonly cnf: {
    readonly jkt: string | null;
    readonly 'x5t#S256': string | null;
    readonly spiffe_id: string | null;
  };
  readonly method: string;
  readonly path: string;
  readonly request_id: string;
  readonly iat: number;
  readonly exp: number;
}

export const AUTH_METHODS: readonly AuthMethod[];
export const VERSION: 1;
export const DEFAULT_CLOCK_SKEW_SECONDS: number;
export const DEFAULT_MAX_LIFETIME_SECONDS: number;

/** Check 8 alone, with iat/exp exact as bigints. */
export function decodePayload(envelope: string): { payload: EnvelopePayload; iat: bigint; exp: bigint } | EnvelopeError;

/**
 * An envelope that passed every check. Only Verifier.verify makes one, so
 * holding one is proof of the check. Frozen.
 */
export class VerifiedIdentity {
  private constructor();
  /** `sub`; null for anonymous callers. */
  readonly subject: string | null;
  readonly tenant: string | null;
  readonly clientId: string | null;
  readonly scopes: readonly string[];
  readonly roles: readonly string[];
  readonly authMethod: AuthMethod;
  readonly confirmation: {
    readonly jkt: string | null;
    readonly x5tS256: string | null;
    readonly spiffeId: string | null;
  };
  readonly issuer: string;
  readonly audience: string;
  readonly requestId: string;
  /** The accepted key that verified it. */
  readonly kid: string;
  readonly alg: Alg;
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly payload: EnvelopePayload;
  hasScope(scope: string): boolean;
  hasRole(role: string): boolean;
}

/** The result of looking for and verifying an envelope on one request. */
export type EnvelopeCheck =
  | { readonly kind: 'absent' }
  | { readonly kind: 'valid'; readonly identity: VerifiedIdentity }
  | { readonly kind: 'invalid'; readonly error: EnvelopeError };

export interface VerifierSettings {
  keyring: Keyring;
  /** This service's name; `aud` must equal it. */
  audience: string;
  /** The expected `iss`; any when null (the default). */
  issuer?: string | null;
  clockSkewSeconds?: number;
  maxLifetimeSeconds?: number;
}

export class Verifier {
  constructor(settings: VerifierSettings);
  readonly keyring: Keyring;
  readonly audience: string;
  readonly issuer: string | null;
  readonly clockSkewSeconds: number;
  readonly maxLifetimeSeconds: number;
  /**
   * Every check of SPEC.md section 5, in order, against the request as
   * received (`path` without the query), at `now` in unix seconds.
   * Pure: reads no clock, does no I/O. `extraKeys` (the keys fetched from
   * a JWKS URL) are looked up after the verifier's keyring: a kid in both
   * is the keyring's.
   */
  verify(headers: HeaderInput, method: string, path: string, now: number, extraKeys?: Keyring | null): EnvelopeCheck;
  /** Checks 2 to 16 on headers already extracted. */
  verifyHeaders(
    headers: EnvelopeHeaders,
    method: string,
    path: string,
    now: number,
    extraKeys?: Keyring | null,
  ): EnvelopeCheck;
}

/** verify, or with no verifier (no key configured) any envelope is `unknown_kid`. */
export function checkRequest(
  verifier: Verifier | null,
  headers: HeaderInput,
  method: string,
  path: string,
  now: number,
  extraKeys?: Keyring | null,
): EnvelopeCheck;

// ---------------------------------------------------------------------------
// Keys from a JWKS URL (SPEC.md 7.6)

export const DEFAULT_JWKS_REFRESH_SECONDS: 300;
export const DEFAULT_JWKS_COOLDOWN_SECONDS: 30;
export const JWKS_FETCH_TIMEOUT_MS: 5000;
export const JWKS_MAX_BYTES: 65536;
/** Longest a request with an unknown kid waits for a refetch. */
export const UNKNOWN_KID_WAIT_MS: 2000;

/** A refused JWKS URL, fetch or document. Never carries key material, the URL or the document. */
export class JwksError extends Error {}

export interface JwksSettings {
  readonly url: string;
  readonly refreshSeconds: number;
  readonly cooldownSeconds: number;
}

/** `text` if it is an http or https URL with a host and no credentials; throws JwksError. */
export function checkJwksUrl(text: string): string;
/**
 * The Ed25519 keys of a JWK Set. Other keys (EC, RSA, `use` not `sig`, no
 * kid) are skipped; a duplicate kid, a bad `x` or a private key refuses the
 * document (JwksError).
 */
export function parseJwks(bytes: Uint8Array): Keyring;
/** GET, 200 only, no redirects, at most `maxBytes` within `timeoutMs`; rejects with JwksError. */
export function fetchJwks(url: string, options?: { timeoutMs?: number; maxBytes?: number }): Promise<Buffer>;

/** The keys of one JWKS URL, fetched at start, refreshed, refetched for unknown kids. */
export class JwksKeys {
  constructor(
    settings: JwksSettings,
    options?: { logger?: Logger; fetch?: (url: string) => Promise<Uint8Array>; clock?: () => number },
  );
  readonly settings: JwksSettings;
  /** The key set in use (empty until the first successful fetch). */
  keys(): Keyring;
  readonly fetchedAt: Date | null;
  readonly lastError: string | null;
  /** Fetches ended, successful or not. */
  readonly fetches: number;
  retune(refreshSeconds: number, cooldownSeconds: number): void;
  /** The fetch to wait for (never rejects), or null within the cooldown. */
  refetchForUnknownKid(): Promise<void> | null;
  close(): void;
}

// ---------------------------------------------------------------------------
// Trust modes

export const TrustMode: {
  readonly ServiceEnforced: 'ServiceEnforced';
  readonly Hybrid: 'Hybrid';
  readonly GatewayEnforced: 'GatewayEnforced';
};
/** Case-insensitive, `_` and `-` ignored; null when unknown. */
export function parseTrustMode(text: string): TrustModeName | null;

export interface Rejection {
  readonly status: 401 | 403;
  readonly code: RejectionCode;
  /** The failed check; null for `envelope_required`. */
  readonly cause: EnvelopeError | null;
}

export type Action =
  | { readonly action: 'use_envelope'; readonly identity: VerifiedIdentity }
  /** The service authenticates the caller itself; `ignored` is an invalid envelope, to log. */
  | { readonly action: 'service_auth'; readonly ignored: EnvelopeError | null }
  | { readonly action: 'reject'; readonly rejection: Rejection };

/** The trust-mode table of SPEC.md section 6 as a function. */
export function decide(mode: TrustModeName, check: EnvelopeCheck): Action;

export const PROBLEM_CONTENT_TYPE: 'application/problem+json';
/** `{"envelope_error":...,"error":...,"status":...,"title":...,"type":"about:blank"}` */
export function problemBody(rejection: Rejection): string;
export function problemHeaders(body: string): Record<'content-type' | 'cache-control' | 'content-length', string>;

// ---------------------------------------------------------------------------
// Configuration

export const ENV_ENABLED: 'Router__Enabled';
export const ENV_TRUST_MODE: 'Router__AuthorizationTrustMode';
export const ENV_SIGNING_KEY: 'Router__IdentityEnvelopeSigningKey';
export const ENV_SIGNING_KEY_ID: 'Router__IdentityEnvelopeSigningKeyId';
export const ENV_ACCEPTED_KEYS: 'Router__IdentityEnvelopeAcceptedKeys';
export const ENV_CLOCK_SKEW: 'Router__IdentityEnvelopeClockSkewSeconds';
export const ENV_MAX_LIFETIME: 'Router__IdentityEnvelopeMaxLifetimeSeconds';
export const ENV_AUDIENCE: 'Router__IdentityEnvelopeAudience';
export const ENV_ISSUER: 'Router__IdentityEnvelopeIssuer';
export const ENV_JWKS_URL: 'Router__IdentityEnvelopeJwksUrl';
export const ENV_JWKS_REFRESH: 'Router__IdentityEnvelopeJwksRefreshSeconds';
export const ENV_JWKS_COOLDOWN: 'Router__IdentityEnvelopeJwksCooldownSeconds';
export const ENV_CONFIG_FILE: 'Router__ConfigFile';
export const FILE_VARIABLES: readonly string[];

/** Case-insensitive, `_` ignored. */
export function foldEnvName(name: string): string;

/** One problem, as `VARIABLE: problem` by toString(). Never holds a value. */
export class ConfigProblem {
  constructor(variable: string, problem: string);
  readonly variable: string;
  readonly problem: string;
  toString(): string;
}

export interface FileEntry {
  /** The canonical variable name. */
  readonly name: string;
  /** Unquoted; empty removes the variable from the environment. */
  readonly value: string;
  readonly line: number;
}

/** A service's envelope settings, checked and frozen. */
export class ServiceConfig {
  constructor(settings: {
    enabled: boolean;
    mode: TrustModeName;
    verifier: Verifier | null;
    jwks?: { url: string; refreshSeconds?: number; cooldownSeconds?: number } | null;
  });
  readonly enabled: boolean;
  readonly mode: TrustModeName;
  /** null when no key and no JWKS URL is configured (only in ServiceEnforced, or disabled). */
  readonly verifier: Verifier | null;
  /** Router__IdentityEnvelopeJwksUrl and its intervals; a ConfigHandle fetches the keys. */
  readonly jwks: JwksSettings | null;
  /** The kids of the static keys (not those fetched from the JWKS). */
  acceptedKids(): string[];
  sameSettings(other: ServiceConfig): boolean;
  toJSON(): {
    enabled: boolean;
    mode: TrustModeName;
    acceptedKids: string[];
    audience: string | null;
    issuer: string | null;
    jwks: boolean;
  };
}

export type ConfigResult = { ok: true; config: ServiceConfig } | { ok: false; errors: ConfigProblem[] };

/** The env-file text of a Router__ConfigFile: the lines that parse, and a problem per line that does not. */
export function parseConfigFile(text: string): { entries: FileEntry[]; errors: ConfigProblem[] };
/** `env` overlaid by the file's text (null: no file). Pure. */
export function configFromEnvAndFile(env: Env, fileText: string | null): ConfigResult;
/** `env` alone; a Router__ConfigFile in it is a problem. */
export function configFromEnv(env: Env): ConfigResult;
/** The path Router__ConfigFile names, or null. */
export function configFilePath(env: Env): string | null;
export function readConfigFile(env: Env): { ok: true; text: string | null } | { ok: false; errors: ConfigProblem[] };
/** configFromEnvAndFile with the file read from disk. */
export function loadConfig(env?: Env): ConfigResult;

// ---------------------------------------------------------------------------
// Reload

/** Problems that stopped the configuration from loading; exit with `exitCode` (2). */
export class EnvelopeConfigError extends Error {
  readonly problems: ConfigProblem[];
  readonly exitCode: 2;
}

export type ReloadResult =
  | { readonly outcome: 'applied'; readonly generation: number }
  | { readonly outcome: 'unchanged'; readonly generation: number }
  | { readonly outcome: 'refused'; readonly generation: number; readonly errors: ConfigProblem[] };

export interface ReloadStatus {
  readonly config: ServiceConfig;
  /** 1 at start, one more per applied reload. */
  readonly generation: number;
  readonly lastApplied: Date | null;
  readonly lastRejected: Date | null;
  /** The problems of the latest reload if it was refused. */
  readonly lastErrors: ConfigProblem[] | null;
}

export interface ReloadTriggers {
  /** The file whose changes reload, or null. */
  readonly watchedFile: string | null;
  /** Removes the SIGHUP listener and the file watch. */
  close(): void;
}

export interface WatchOptions {
  /**
   * Reload on SIGHUP (default false: a listener replaces node's default
   * action, exit, for the whole process). While installed, SIGHUP never
   * ends the process.
   */
  sighup?: boolean;
  /** Reload when the file changes (default true). */
  file?: boolean;
  /** Quiet time before a change is reloaded (default 200). */
  debounceMs?: number;
}

/** The reloadable configuration: a frozen ServiceConfig replaced whole. */
export class ConfigHandle {
  /** Loads from `env` (default process.env) and its Router__ConfigFile; throws EnvelopeConfigError. */
  constructor(options?: { env?: Env; logger?: Logger });
  /** A handle on process.env, or log every problem and exit 2. */
  static loadOrExit(options?: { logger?: Logger }): ConfigHandle;
  /** The configuration in use now. Take it once per request. */
  current(): ServiceConfig;
  /** The configuration and the fetcher of its JWKS keys, read together. */
  currentWithJwks(): { config: ServiceConfig; jwks: JwksKeys | null };
  /** The fetcher of the JWKS keys in use, or null without Router__IdentityEnvelopeJwksUrl. */
  readonly jwks: JwksKeys | null;
  /** Stops fetching JWKS keys. */
  close(): void;
  readonly configFile: string | null;
  status(): ReloadStatus;
  /** Re-reads env and file; keeps the configuration in use on any problem. Never throws. */
  reload(): ReloadResult;
  /** SIGHUP and file-change triggers (SPEC.md 7.1). */
  watch(options?: WatchOptions): ReloadTriggers;
}

// ---------------------------------------------------------------------------
// Middleware

export interface MiddlewareOptions {
  /** A ConfigHandle (read once per request) or a fixed ServiceConfig. */
  config: ConfigHandle | ServiceConfig;
  /** Unix seconds; defaults to the system clock. */
  clock?: () => number;
  /** Where rejected and ignored envelopes are logged (default console). */
  logger?: Logger;
}

/** What the middleware concluded, as the Rust layer's EnvelopeOutcome. */
export type EnvelopeOutcome =
  | { readonly kind: 'trusted'; readonly identity: VerifiedIdentity }
  /**
   * The handler must authenticate the caller itself. `ignoredInvalid` is
   * set when an invalid envelope was ignored (ServiceEnforced).
   */
  | { readonly kind: 'service_auth'; readonly ignoredInvalid: EnvelopeError | null };

/** The properties the middleware sets on a request it lets through. */
export interface StellaRequestProperties {
  /** The verified identity when the trust mode trusts the envelope, else null. */
  stellaIdentity?: VerifiedIdentity | null;
  stellaEnvelope?: EnvelopeOutcome;
  /** The configuration snapshot this request is decided and served with. */
  stellaConfig?: ServiceConfig;
}

// On IncomingMessage, so Express's Request (which extends it) has them too.
declare module 'http' {
  interface IncomingMessage extends StellaRequestProperties {}
}

/** Wraps a node:http request handler. */
export function withEnvelope<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>(
  handler: (req: Req, res: Res) => unknown,
  options: MiddlewareOptions,
): (req: Req, res: Res) => unknown;

/** Express middleware (Express 4 and 5). */
export function expressEnvelope(
  options: MiddlewareOptions,
): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** The path of a request target without the query, as compared with the envelope's `path`. */
export function requestPath(target: string): string;
/** Unix seconds from Date.now(). */
export function systemClock(): number;
