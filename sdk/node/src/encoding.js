// Strict decoders: canonical unpadded base64url, canonical decimals, and a
// JSON parser that refuses duplicate member names.
//
// "Strict" means one encoding per value. A lenient decoder lets an attacker
// produce many byte strings for one meaning, and a lenient JSON reader lets
// the verifier and a later reader disagree on what was signed (JSON.parse
// silently keeps the last of two members with the same name).

const B64URL_ALPHABET = /^[A-Za-z0-9_-]*$/;

/**
 * Decodes canonical unpadded base64url (RFC 4648 section 5): no padding, no
 * whitespace, no character outside the alphabet, no length of 1 mod 4 and
 * no non-zero bits after the last full octet. Returns null when `text` is
 * not canonical.
 * @param {string} text
 * @returns {Buffer | null}
 */
export function b64urlDecode(text) {
  if (typeof text !== 'string' || text.length % 4 === 1 || !B64URL_ALPHABET.test(text)) {
    return null;
  }
  const bytes = Buffer.from(text, 'base64url');
  // Buffer.from ignores stray low bits in the last character; encoding back
  // and comparing is the simplest exact test that `text` is the one
  // encoding of these bytes.
  return bytes.toString('base64url') === text ? bytes : null;
}

/**
 * Encodes bytes as unpadded base64url.
 * @param {Uint8Array} bytes
 */
export function b64urlEncode(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

const CANONICAL_DECIMAL = /^(?:0|[1-9][0-9]{0,14})$/;

/**
 * Parses a canonical decimal: ASCII digits, no sign, no leading zero
 * (except "0" itself), at most 15 digits, so always a safe integer.
 * Returns null otherwise.
 * @param {string} text
 * @returns {number | null}
 */
export function parseCanonicalDecimal(text) {
  return typeof text === 'string' && CANONICAL_DECIMAL.test(text) ? Number(text) : null;
}

// Rust's `str::trim` (Unicode White_Space), which the reference
// implementation applies to configuration values. String.prototype.trim
// differs: it also strips U+FEFF and keeps U+0085.
const RUST_WHITESPACE =
  /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** Trims what Rust's `str::trim` trims. @param {string} text */
export function trimWhitespace(text) {
  return text.replace(RUST_WHITESPACE, '');
}

// ---------------------------------------------------------------------------
// Strict JSON

/** A JSON number, kept as its literal so integers beyond 2^53 stay exact. */
export class JsonNumber {
  /** @param {string} text @param {boolean} integer */
  constructor(text, integer) {
    /** The literal as written. */
    this.text = text;
    /** True when the literal has no fraction and no exponent. */
    this.integer = integer;
  }
}

/** Why a strict JSON parse failed. Carries no input. */
export class JsonError extends Error {
  /** @param {'utf8' | 'not_object' | 'syntax' | 'duplicate_member' | 'too_deep'} reason */
  constructor(reason) {
    super(`json: ${reason.replace('_', ' ')}`);
    this.name = 'JsonError';
    this.reason = reason;
  }
}

/** Deepest nesting of arrays and objects accepted, as the Rust crate. */
export const MAX_JSON_DEPTH = 16;

// `ignoreBOM: true` keeps a leading U+FEFF in the text, so the parser
// refuses it as the Rust crate does, instead of the decoder dropping it.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses UTF-8 bytes holding exactly one JSON object (RFC 8259), refusing
 * invalid UTF-8, lone surrogate escapes, duplicate member names (compared
 * after unescaping) at any depth, and nesting deeper than MAX_JSON_DEPTH.
 *
 * Objects become Maps (so no member name can reach a prototype), numbers
 * become JsonNumber, the rest their JavaScript values.
 * @param {Uint8Array} bytes
 * @returns {Map<string, unknown>}
 * @throws {JsonError}
 */
export function parseStrictJsonObject(bytes) {
  let text;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new JsonError('utf8');
  }
  const parser = new Parser(text);
  parser.skipWhitespace();
  if (text.charCodeAt(parser.at) !== 0x7b /* { */) throw new JsonError('not_object');
  const value = parser.value(0);
  parser.skipWhitespace();
  if (parser.at !== text.length) throw new JsonError('syntax');
  return /** @type {Map<string, unknown>} */ (value);
}

class Parser {
  /** @param {string} text */
  constructor(text) {
    this.text = text;
    this.at = 0;
  }

  skipWhitespace() {
    const text = this.text;
    let at = this.at;
    for (;;) {
      const c = text.charCodeAt(at);
      // JSON whitespace only: space, tab, LF, CR.
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) at++;
      else break;
    }
    this.at = at;
  }

  /** @param {number} depth @returns {unknown} */
  value(depth) {
    const c = this.text.charCodeAt(this.at);
    switch (c) {
      case 0x7b: // {
        return this.object(depth);
      case 0x5b: // [
        return this.array(depth);
      case 0x22: // "
        return this.string();
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        throw new JsonError('syntax');
    }
  }

  /** @param {string} word @param {unknown} result */
  literal(word, result) {
    if (!this.text.startsWith(word, this.at)) throw new JsonError('syntax');
    this.at += word.length;
    return result;
  }

  /** @param {number} depth */
  object(depth) {
    if (depth >= MAX_JSON_DEPTH) throw new JsonError('too_deep');
    this.at++; // {
    const members = new Map();
    this.skipWhitespace();
    if (this.text.charCodeAt(this.at) === 0x7d /* } */) {
      this.at++;
      return members;
    }
    for (;;) {
      if (this.text.charCodeAt(this.at) !== 0x22) throw new JsonError('syntax');
      const name = this.string();
      if (members.has(name)) throw new JsonError('duplicate_member');
      this.skipWhitespace();
      if (this.text.charCodeAt(this.at) !== 0x3a /* : */) throw new JsonError('syntax');
      this.at++;
      this.skipWhitespace();
      members.set(name, this.value(depth + 1));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.at++);
      if (c === 0x7d /* } */) return members;
      if (c !== 0x2c /* , */) throw new JsonError('syntax');
      this.skipWhitespace();
    }
  }

  /** @param {number} depth */
  array(depth) {
    if (depth >= MAX_JSON_DEPTH) throw new JsonError('too_deep');
    this.at++; // [
    const items = [];
    this.skipWhitespace();
    if (this.text.charCodeAt(this.at) === 0x5d /* ] */) {
      this.at++;
      return items;
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.at++);
      if (c === 0x5d /* ] */) return items;
      if (c !== 0x2c /* , */) throw new JsonError('syntax');
      this.skipWhitespace();
    }
  }

  string() {
    const text = this.text;
    let at = this.at + 1; // opening quote
    let out = '';
    let start = at;
    for (;;) {
      if (at >= text.length) throw new JsonError('syntax');
      const c = text.charCodeAt(at);
      if (c === 0x22 /* " */) {
        out += text.slice(start, at);
        this.at = at + 1;
        return out;
      }
      if (c < 0x20) throw new JsonError('syntax'); // raw control characters
      if (c !== 0x5c /* \ */) {
        at++;
        continue;
      }
      out += text.slice(start, at);
      const e = text.charCodeAt(at + 1);
      at += 2;
      switch (e) {
        case 0x22: out += '"'; break;
        case 0x5c: out += '\\'; break;
        case 0x2f: out += '/'; break;
        case 0x62: out += '\b'; break;
        case 0x66: out += '\f'; break;
        case 0x6e: out += '\n'; break;
        case 0x72: out += '\r'; break;
        case 0x74: out += '\t'; break;
        case 0x75: { // u
          const unit = hex4(text, at);
          at += 4;
          if (unit >= 0xdc00 && unit <= 0xdfff) throw new JsonError('syntax'); // lone trailing surrogate
          if (unit >= 0xd800 && unit <= 0xdbff) {
            // A leading surrogate must be followed by an escaped trailing
            // one: the result must be well-formed Unicode, as in serde_json.
            if (text.charCodeAt(at) !== 0x5c || text.charCodeAt(at + 1) !== 0x75) {
              throw new JsonError('syntax');
            }
            const low = hex4(text, at + 2);
            if (low < 0xdc00 || low > 0xdfff) throw new JsonError('syntax');
            at += 6;
            out += String.fromCharCode(unit, low);
          } else {
            out += String.fromCharCode(unit);
          }
          break;
        }
        default:
          throw new JsonError('syntax');
      }
      start = at;
    }
  }

  number() {
    const text = this.text;
    const begin = this.at;
    let at = begin;
    if (text.charCodeAt(at) === 0x2d) at++; // -
    const first = text.charCodeAt(at);
    if (first === 0x30) {
      at++; // a leading 0 stands alone
    } else if (first >= 0x31 && first <= 0x39) {
      while (isDigit(text.charCodeAt(at))) at++;
    } else {
      throw new JsonError('syntax');
    }
    let integer = true;
    if (text.charCodeAt(at) === 0x2e /* . */) {
      integer = false;
      at++;
      if (!isDigit(text.charCodeAt(at))) throw new JsonError('syntax');
      while (isDigit(text.charCodeAt(at))) at++;
    }
    const e = text.charCodeAt(at);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      at++;
      const sign = text.charCodeAt(at);
      if (sign === 0x2b || sign === 0x2d) at++;
      if (!isDigit(text.charCodeAt(at))) throw new JsonError('syntax');
      while (isDigit(text.charCodeAt(at))) at++;
    }
    this.at = at;
    return new JsonNumber(text.slice(begin, at), integer);
  }
}

/** @param {number} c */
function isDigit(c) {
  return c >= 0x30 && c <= 0x39;
}

/** @param {string} text @param {number} at */
function hex4(text, at) {
  let unit = 0;
  for (let i = 0; i < 4; i++) {
    const c = text.charCodeAt(at + i);
    let digit;
    if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) digit = c - 0x57;
    else if (c >= 0x41 && c <= 0x46) digit = c - 0x37;
    else throw new JsonError('syntax');
    unit = unit * 16 + digit;
  }
  return unit;
}
