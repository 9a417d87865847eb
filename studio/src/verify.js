// An audit bundle checked in the browser, as `events/bundle.py` `verify` checks it:
// the checkpoint's Ed25519 signature with the server's public key (a C2SP signed
// note's body, or the JSON statement of a checkpoint signed before those), every event's
// content hash, DAID hash and chain link recomputed from its fields (events/records.py,
// events/integrity.py), and each event's RFC 6962 inclusion proof against the signed
// root (events/merkle.py). WebCrypto only (SHA-256 and Ed25519 of crypto.subtle).
//
// Give the bundle as its JSON *text*: JSON.parse cannot tell 2 from 2.0 nor keep
// integers beyond 2^53, and the hashes cover Python's canonical JSON of those numbers
// (events/canonical.py: "2.0" for a float, exact digits for an int). A parsed object
// is accepted too, but then an event holding an integral float or a big integer is
// reported broken (never the other way round).
//
// Where Python accepts odd spellings that real bundles never contain (int() of "1_0",
// str() of a number where a string belongs, base64 with junk characters in a payload,
// times without an offset or in ISO basic format), this module refuses them: it may
// report a bundle broken that Python accepts, never accept one that Python refuses.
// Python gives up at the first break; this module carries on and lists every problem
// (problems[0] is the first break Python reports, in the same words). The events'
// C2SP receipts, which Python also checks, are left to Python: each holds the same
// inclusion proof and checkpoint that are checked here.

const LOG_NAME = "collab-audit-v1";
const FORMAT = "collab-audit-bundle/1";
const text = new TextEncoder();

/** A JSON number written with a fraction or an exponent: a Python float. */
export class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

// -- JSON text, numbers kept apart as Python's json.loads keeps them ----------------------

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const WORDS = [["null", null], ["true", true], ["false", false], ["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity]];

/** JSON text to values: objects, arrays, strings, booleans, null; integers as numbers
 * (BigInt beyond 2^53); numbers with a fraction or exponent as JsonFloat. */
export function parseJson(source) {
  let i = 0;
  const fail = (what) => { throw new SyntaxError(`${what} at character ${i}`); };
  const space = () => { while (i < source.length && " \t\n\r".includes(source[i])) i++; };
  const string = () => {
    STRING.lastIndex = i;
    const m = STRING.exec(source) ?? fail("bad string");
    i = STRING.lastIndex;
    return JSON.parse(m[0]); // escapes decoded as Python does (lone surrogates kept)
  };
  const value = () => {
    space();
    const c = source[i];
    if (c === '"') return string();
    if (c === "{" || c === "[") {
      const object = c === "{";
      const out = object ? {} : [];
      i++;
      space();
      if (source[i] === (object ? "}" : "]")) return i++, out;
      for (;;) {
        if (object) {
          space();
          if (source[i] !== '"') fail("expected a key");
          const key = string();
          space();
          if (source[i++] !== ":") fail("expected ':'");
          Object.defineProperty(out, key, { value: value(), enumerable: true, writable: true, configurable: true });
        } else out.push(value());
        space();
        const d = source[i++];
        if (d === (object ? "}" : "]")) return out;
        if (d !== ",") fail("expected ','");
      }
    }
    for (const [word, v] of WORDS) if (source.startsWith(word, i)) return i += word.length, typeof v === "number" ? new JsonFloat(v) : v;
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(source) ?? fail("unexpected character");
    i = NUMBER.lastIndex;
    if (m[1] || m[2]) return new JsonFloat(Number(m[0]));
    if (m[0].replace("-", "").length > 4300) fail("integer of more than 4300 digits"); // Python's limit
    const n = Number(m[0]);
    return Number.isSafeInteger(n) ? n : BigInt(m[0]);
  };
  const out = value();
  space();
  if (i < source.length) fail("extra data");
  return out;
}

// -- canonical JSON (events/canonical.py) ---------------------------------------------

/** Python's float as canonical JSON: the shortest round-trip digits (JS and Python pick
 * the same ones) in plain decimal notation, ".0" when integral, no negative zero. */
export function formatFloat(x) {
  if (!Number.isFinite(x)) throw new Error(`non-finite number ${x} is not valid JSON`);
  if (x === 0) return "0.0";
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x));
  let digits = m[2] + (m[3] ?? "");
  let point = m[2].length + Number(m[4] ?? 0);
  const lead = digits.match(/^0*/)[0].length;
  digits = digits.slice(lead).replace(/0+$/, "");
  point -= lead;
  const body = point <= 0 ? `0.${"0".repeat(-point)}${digits}`
    : point >= digits.length ? `${digits}${"0".repeat(point - digits.length)}.0`
    : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return m[1] + body;
}

const ESCAPES = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t" };
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function quote(s) {
  if (s.includes("\0")) throw new Error("strings may not contain NUL characters");
  if (LONE_SURROGATE.test(s)) throw new Error("a string holds a lone surrogate (not UTF-8)");
  return `"${s.replace(/["\\\x00-\x1f]/g, (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

// Python sorts keys by code point; JS strings compare by UTF-16 unit, which differs
// only between a surrogate and U+E000..U+FFFF: move surrogates above those.
const unit = (c) => (c >= 0xd800 && c <= 0xdfff ? c + 0x2000 : c >= 0xe000 ? c - 0x800 : c);
function byCodePoint(a, b) {
  for (let i = 0; i < a.length && i < b.length; i++) {
    if (a.charCodeAt(i) !== b.charCodeAt(i)) return unit(a.charCodeAt(i)) - unit(b.charCodeAt(i));
  }
  return a.length - b.length;
}

/** Canonical JSON text: sorted keys, compact, non-ASCII kept, Python's number forms. */
export function canonicalJson(value) {
  if (value === null) return "null";
  if (value === true) return "true";
  if (value === false) return "false";
  if (typeof value === "string") return quote(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return Number.isInteger(value) ? BigInt(value).toString() : formatFloat(value);
  if (value instanceof JsonFloat) return formatFloat(value.value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    return `{${Object.keys(value).sort(byCodePoint).map((k) => `${quote(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  throw new Error(`${typeof value} is not a JSON value`);
}

// -- RFC 8785 (events/canonical.py jcs_bytes) -----------------------------------------

/** RFC 8785 (JCS) text: the scheme takes its number and string forms from ECMAScript,
 * so JSON.stringify writes them, and its key order is JavaScript's own string order
 * (UTF-16 units). Written out rather than taken from a package because the values here
 * are parseJson's (JsonFloat, BigInt). An integer beyond 2^53 has no JCS form: the
 * server hashes such events in the older scheme, so one here is a tampered bundle. */
export function jcs(value) {
  if (value === null || value === true || value === false) return String(value);
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw new Error("a string holds a lone surrogate (not UTF-8)");
    return JSON.stringify(value);
  }
  if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`not representable in RFC 8785 JSON: ${value}`);
    }
    return JSON.stringify(Number(value));
  }
  const number = value instanceof JsonFloat ? value.value : value;
  if (typeof number === "number") {
    if (!Number.isFinite(number)) throw new Error(`not representable in RFC 8785 JSON: ${number}`);
    return JSON.stringify(number);
  }
  if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
  if (typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${jcs(k)}:${jcs(value[k])}`).join(",")}}`;
  }
  throw new Error(`${typeof value} is not a JSON value`);
}

/** The canonical form an event's hashes were taken over, by the scheme its metadata
 * names (events/records.py hashing). */
function hashingText(metadata) {
  const scheme = Object.hasOwn(metadata, "hash_scheme") ? metadata.hash_scheme : null;
  if (scheme === null) return canonicalJson;
  if (scheme === "rfc8785") return jcs;
  const shown = typeof scheme === "string" ? `'${scheme}'` : JSON.stringify(scheme);
  throw new UnknownScheme(`unknown hashing scheme ${shown} (known: 'rfc8785', or none)`);
}

class UnknownScheme extends Error {}

// -- bytes ----------------------------------------------------------------------------

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** bytes.fromhex: pairs of hex digits, ASCII whitespace allowed between them. */
export function fromHex(s) {
  if (typeof s !== "string" || !/^(?:[ \t\n\r\f\v]*[0-9a-fA-F]{2})*[ \t\n\r\f\v]*$/.test(s)) throw new Error(`not hex: ${JSON.stringify(s)}`);
  return Uint8Array.from(s.replace(/[ \t\n\r\f\v]/g, "").match(/../g) ?? [], (p) => parseInt(p, 16));
}

/** Strict base64 (Python's b64decode(validate=True), whitespace around ignored). */
export function fromBase64(s) {
  const t = typeof s === "string" ? s.trim() : "";
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4) throw new Error("not base64");
  return Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
}

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
export const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

function be64(...values) {
  const view = new DataView(new ArrayBuffer(8 * values.length));
  values.forEach((v, i) => {
    if (v < -(2n ** 63n) || v >= 2n ** 63n) throw new Error(`${v} does not fit 64 bits`);
    view.setBigInt64(8 * i, v);
  });
  return new Uint8Array(view.buffer);
}

// -- Python's conversions of bundle fields -------------------------------------------

/** int(value) for what a bundle can hold: integers, floats (truncated), booleans,
 * strings of ASCII digits. */
function pyInt(v) {
  if (typeof v === "bigint") return v;
  if (typeof v === "boolean") return BigInt(v);
  if (typeof v === "number" || v instanceof JsonFloat) {
    const n = typeof v === "number" ? v : v.value;
    if (Number.isFinite(n)) return BigInt(Math.trunc(n));
  }
  if (typeof v === "string" && /^\s*[+-]?[0-9]+(?:_[0-9]+)*\s*$/.test(v)) return BigInt(v.trim().replace(/_/g, "").replace(/^\+/, ""));
  throw new Error(`not an integer: ${JSON.stringify(String(v))}`);
}

/** str(value) where Python's str and the value agree (strings, integers, booleans, None). */
function pyStr(v) {
  if (v === undefined) throw new Error("a field is missing");
  if (typeof v === "string") return v;
  if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))) return BigInt(v).toString();
  if (typeof v === "boolean") return v ? "True" : "False";
  if (v === null) return "None";
  throw new Error(`not text: ${v instanceof JsonFloat ? v.value : typeof v}`);
}

/** str(UUID(text)): the lowercase hyphenated form. */
function pyUuid(v) {
  const hex = pyStr(v).replaceAll("urn:", "").replaceAll("uuid:", "").replace(/^[{}]+|[{}]+$/g, "").replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error("badly formed hexadecimal UUID string");
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");
// Days since 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's algorithms).
function daysFromCivil(y, m, d) {
  y -= m <= 2;
  const era = Math.floor(y / 400), yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}
function civilFromDays(z) {
  z += 719468;
  const era = Math.floor(z / 146097), doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100)), mp = Math.floor((5 * doy + 2) / 153);
  const m = mp + (mp < 10 ? 3 : -9);
  return [yoe + era * 400 + (m <= 2), m, doy - Math.floor((153 * mp + 2) / 5) + 1];
}

const TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:(Z)|([+-])(\d{2}):(\d{2})(?::(\d{2}))?)$/;

/** datetime.fromisoformat(text) as microseconds since the epoch (a BigInt). Only the
 * extended format with an offset (what isoformat() writes); anything else is refused. */
export function isoMicroseconds(s) {
  const m = TIME.exec(typeof s === "string" ? s : "");
  if (!m) throw new Error(`not an ISO time with an offset: ${JSON.stringify(String(s))}`);
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  const days = daysFromCivil(y, mo, d);
  const offset = m[8] ? 0 : (m[9] === "-" ? -1 : 1) * (Number(m[10]) * 3600 + Number(m[11]) * 60 + Number(m[12] ?? 0));
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || civilFromDays(days)[2] !== d || h > 23 || mi > 59 || sec > 59
    || Number(m[10] ?? 0) > 23 || Number(m[11] ?? 0) > 59 || Number(m[12] ?? 0) > 59) {
    throw new Error(`not a valid time: ${s}`);
  }
  const fraction = BigInt((m[7] ?? "").slice(0, 6).padEnd(6, "0"));
  return BigInt(days * 86400 + h * 3600 + mi * 60 + sec - offset) * 1000000n + fraction;
}

/** The time as the checkpoint statement writes it: UTC, microseconds, "+00:00". */
export function utcText(us) {
  const seconds = us / 1000000n - (us % 1000000n < 0n ? 1n : 0n);
  const micro = us - seconds * 1000000n;
  const days = Math.floor(Number(seconds) / 86400), rest = Number(seconds) - days * 86400;
  const [y, m, d] = civilFromDays(days);
  if (y < 1 || y > 9999) throw new Error("time out of range");
  return `${pad(y, 4)}-${pad(m)}-${pad(d)}T${pad(Math.floor(rest / 3600))}:${pad(Math.floor(rest / 60) % 60)}:${pad(rest % 60)}.${pad(micro, 6)}+00:00`;
}

// -- DAIDs (events/daid.py parse) -----------------------------------------------------

// Python's `$` also matches before a final newline: `\n?$` keeps that.
const DAID_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})([:-])(\d{2})\5(\d{2})(?:\.\d{1,9})?Z\n?$/;
const COMPONENT = /^[A-Za-z0-9._\-/@+=]{1,200}\n?$/;
const HASH16 = /^[0-9a-f]{16}\n?$/;

/** The hash16 of a well-formed DAID; throws saying which part is malformed. */
export function daidHash16(daid) {
  if (!daid.startsWith("daid:")) throw new Error("malformed DAID prefix");
  if (!daid.startsWith("daid:v1.0:")) throw new Error("malformed DAID version");
  const parts = daid.slice(10).split(":");
  if (parts.length < 5) throw new Error("malformed DAID format: expected 7 ':'-separated parts");
  const [agent, type, id, hash16] = parts.splice(-4);
  const t = DAID_TIME.exec(parts.join(":"));
  try {
    if (!t) throw 0;
    isoMicroseconds(`${t[1]}-${t[2]}-${t[3]}T${t[4]}:${t[6]}:${t[7]}+00:00`);
  } catch {
    throw new Error("malformed DAID timestamp");
  }
  for (const [name, v] of [["agent_id", agent], ["entity_type", type], ["entity_id", id]]) {
    if (!COMPONENT.test(v)) throw new Error(`malformed DAID ${name}`);
  }
  if (!HASH16.test(hash16)) throw new Error("malformed DAID hash16");
  return hash16;
}

// -- the bundle ---------------------------------------------------------------------

function readEvent(e) {
  const proof = e.inclusion_proof ?? null;
  if (proof !== null && !Array.isArray(proof)) throw new Error("inclusion_proof is not a list");
  if (!Array.isArray(e.parents)) throw new Error("parents is not a list");
  const object = (v, name) => {
    if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof JsonFloat) throw new Error(`${name} is not an object`);
    return v;
  };
  if (e.payload !== null && typeof e.payload !== "string") throw new Error("payload is not base64 text");
  return {
    position: pyInt(e.position),
    streamId: pyStr(e.stream_id),
    version: pyInt(e.stream_version),
    eventId: pyUuid(e.event_id),
    type: pyStr(e.event_type),
    schemaVersion: pyInt(e.schema_version),
    data: object(e.data, "data"),
    payload: e.payload === null ? null : fromBase64(e.payload),
    metadata: object(e.metadata, "metadata"),
    daid: pyStr(e.daid),
    parents: e.parents.map(pyStr),
    recordedAt: isoMicroseconds(e.recorded_at),
    contentHash: fromHex(e.content_hash),
    prevHash: fromHex(e.prev_hash),
    hash: fromHex(e.hash),
    proof: proof && proof.map(fromHex),
  };
}

/** What Python's chain verifier recomputes for one event (the hashes it compares). */
async function recompute(e) {
  const body = {
    data: e.data,
    event_id: e.eventId,
    payload_sha256: e.payload === null ? null : toHex(await sha256(e.payload)),
    schema_version: e.schemaVersion,
    stream_id: e.streamId,
    type: e.type,
  };
  const out = {};
  try {
    const encode = hashingText(e.metadata);
    const document = { ...body, daid: e.daid, metadata: e.metadata, parents: e.parents };
    out.contentHash = await sha256(text.encode(encode(document)));
    const parents = [...new Set(e.parents)].sort(byCodePoint);
    out.hash16 = toHex(await sha256(text.encode(encode({ content: body, parents })))).slice(0, 16);
  } catch (error) {
    if (error instanceof UnknownScheme) out.schemeError = error.message;
    else out.canonicalError = error.message;
  }
  try {
    out.link = await sha256(concat(e.prevHash, e.contentHash, be64(e.version, e.position, e.recordedAt)));
  } catch (error) {
    out.linkError = error.message;
  }
  return out;
}

/** RFC 9162 2.1.3.2; null when the proof holds, else what is wrong (Python's words). */
export async function inclusionProblem(leaf, index, size, proof, root) {
  if (index < 0n || index >= size) return `leaf ${index} is not in a tree of ${size} leaves`;
  let fn = index, sn = size - 1n, current = leaf;
  for (const sibling of proof) {
    if (sn === 0n) return "inclusion proof is longer than the tree is deep";
    if (fn & 1n || fn === sn) {
      current = await nodeHash(sibling, current);
      while (fn && !(fn & 1n)) fn >>= 1n, sn >>= 1n;
    } else current = await nodeHash(current, sibling);
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) return "inclusion proof is shorter than the tree is deep";
  return equal(current, root) ? null : "inclusion proof leads to a different root";
}

const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));

/** The bytes the checkpoint's signature covers (events/checkpoints.py): the C2SP
 * checkpoint body (origin, size, base64 root, a line each), or for a checkpoint signed
 * before checkpoints were signed notes (no origin) the canonical JSON statement. */
export function statement(checkpoint) {
  if (checkpoint.origin !== null) {
    return text.encode(`${checkpoint.origin}\n${checkpoint.treeSize}\n${toBase64(checkpoint.root)}\n`);
  }
  return text.encode(canonicalJson({
    key_id: checkpoint.keyId, log: LOG_NAME, root: toHex(checkpoint.root),
    signed_at: utcText(checkpoint.signedAt), tree_size: checkpoint.treeSize,
  }));
}

/** The public key's raw 32 bytes, from base64 text as GET /api/audit/checkpoint gives
 * it (`public_key`), a signed-note verifier key as `collab audit public-key` prints it
 * (name+keyid+base64(0x01 || key), `verifier_key`), or the bytes themselves. */
export function publicKeyBytes(key) {
  const parts = typeof key === "string" ? verifierKeyParts(key) : null;
  const raw = parts ? parts.raw : typeof key === "string" ? fromBase64(key) : new Uint8Array(key);
  if (raw.length !== 32) throw new Error("expected 32 bytes");
  return raw;
}

function verifierKeyParts(key) {
  try {
    if (fromBase64(key).length === 32) return null; // base64 of a raw key
  } catch {
    // not base64: a verifier key, or nothing
  }
  const match = /^([^+\s]+)\+([0-9a-fA-F]{8})\+([A-Za-z0-9+/=]+)$/.exec(key.trim());
  if (!match) return null;
  const typed = fromBase64(match[3]);
  if (typed[0] !== 1) throw new Error("not an Ed25519 verifier key (type byte 0x01)");
  return { name: match[1], hint: match[2].toLowerCase(), raw: typed.slice(1) };
}

async function signatureProblem(checkpoint, publicKey) {
  let raw;
  try {
    raw = publicKeyBytes(publicKey);
    const parts = typeof publicKey === "string" ? verifierKeyParts(publicKey) : null;
    if (parts) {
      const id = await sha256(concat(text.encode(`${parts.name}\n`), Uint8Array.of(1), raw));
      if (toHex(id.slice(0, 4)) !== parts.hint) throw new Error(`verifier key ${parts.name}: its key id does not match its key`);
    }
  } catch (error) {
    return `not an Ed25519 public key (base64 of 32 bytes, or a verifier key name+keyid+base64, expected): ${error.message}`;
  }
  const keyId = toHex(await sha256(raw)).slice(0, 16);
  const n = checkpoint.treeSize;
  if (checkpoint.keyId !== keyId) {
    return `checkpoint of ${n} events was signed by key ${checkpoint.keyId}, not by the given key ${keyId}`;
  }
  let valid;
  try {
    const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
    valid = await crypto.subtle.verify({ name: "Ed25519" }, key, checkpoint.signature, statement(checkpoint));
  } catch (error) {
    return error.name === "NotSupportedError"
      ? "this browser cannot check Ed25519 signatures (WebCrypto has no Ed25519)"
      : `checkpoint of ${n} events: the key or signature cannot be used: ${error.message}`;
  }
  return valid ? null : `checkpoint of ${n} events: signature does not verify`;
}

const breakText = (stream, position, check, expected, found) => `stream ${stream} position ${position}: ${check}: expected ${expected}, found ${found}`;

/**
 * Check an audit bundle (its JSON text, or the parsed object) against the server's
 * public key (base64, as `GET /api/audit/checkpoint` returns it).
 * @returns {Promise<{ok: boolean, events: number, proven: number, unproven: number, treeSize: number, problems: string[]}>}
 */
export async function verifyBundle(bundle, publicKey) {
  const report = { ok: false, events: 0, proven: 0, unproven: 0, treeSize: 0, problems: [] };
  const fromText = typeof bundle === "string";
  if (!globalThis.crypto?.subtle) {
    report.problems.push("this page has no WebCrypto (crypto.subtle needs HTTPS or localhost): nothing was checked");
    return report;
  }
  let checkpoint, events, streamId;
  try {
    if (fromText) bundle = parseJson(bundle);
    if (bundle === null || typeof bundle !== "object") throw new Error("a bundle is a JSON object");
  } catch (error) {
    report.problems.push(`not a ${FORMAT} bundle: ${error.message}`);
    return report;
  }
  if (bundle.format !== FORMAT) {
    report.problems.push(`not a ${FORMAT} bundle (format is ${JSON.stringify(bundle.format ?? null)})`);
    return report;
  }
  const raw = bundle.checkpoint;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    report.problems.push("the bundle has no signed checkpoint: nothing to prove against");
    return report;
  }
  try {
    streamId = pyStr(bundle.stream_id ?? null);
    const n = raw.tree_size; // int(str(value)): "3.0" and "True" are refused
    if (typeof n === "boolean" || n instanceof JsonFloat || (typeof n === "number" && !Number.isInteger(n))) throw new Error("tree_size is not an integer");
    checkpoint = {
      treeSize: pyInt(raw.tree_size),
      root: fromHex(pyStr(raw.root)),
      signedAt: isoMicroseconds(pyStr(raw.signed_at)),
      keyId: pyStr(raw.key_id),
      signature: fromBase64(pyStr(raw.signature)),
      origin: raw.origin === undefined || raw.origin === null ? null : pyStr(raw.origin),
    };
    if (!Array.isArray(bundle.events)) throw new Error("events is not a list");
    events = bundle.events.map((e, index) => {
      try {
        return readEvent(e);
      } catch (error) {
        throw new Error(`event ${index + 1}: ${error.message}`);
      }
    });
  } catch (error) {
    report.problems.push(`malformed bundle: ${error.message}`);
    return report;
  }
  const size = checkpoint.treeSize;
  report.events = events.length;
  report.treeSize = Number(size);
  report.unproven = events.filter((e) => e.position > size).length;

  const problem = (...args) => report.problems.push(breakText(...args));
  const hint = fromText ? "" : " (give the bundle as JSON text: a parsed object cannot tell 2 from 2.0)";
  const signed = await signatureProblem(checkpoint, publicKey);
  if (signed) problem("(checkpoint)", size, "signature", "valid", signed);
  // A verifier key names its log: a checkpoint of another log (same key) is not this one's.
  let named = null;
  try {
    named = typeof publicKey === "string" ? verifierKeyParts(publicKey)?.name ?? null : null;
  } catch {
    named = null; // reported by the signature check
  }
  if (!signed && named !== null && checkpoint.origin !== null && checkpoint.origin !== named) {
    problem("(checkpoint)", size, "origin", named, checkpoint.origin);
  }

  // The hashes of all events at once (WebCrypto works in parallel), then the checks in order.
  const facts = await Promise.all(events.map(async (e) => ({
    ...(await recompute(e)),
    proofProblem: e.position > size || e.proof === null ? null
      : await inclusionProblem(await leafHash(e.hash), e.position - 1n, size, e.proof, checkpoint.root),
  })));
  let state = { version: 0n, hash: new Uint8Array(32) }; // the stream's last event
  let lastPosition = 0n;
  events.forEach((e, index) => {
    const f = facts[index];
    const broken = (check, expected, found) => problem(e.streamId, e.position, check, expected, found);
    if (e.streamId !== streamId) return broken("stream", streamId, e.streamId);
    const chained = (() => {
      if (e.position <= lastPosition) return broken("position order", `> ${lastPosition}`, e.position), false;
      if (e.version !== state.version + 1n) return broken("stream version", state.version + 1n, e.version), false;
      if (f.schemeError) return broken("hash scheme", "none or rfc8785", f.schemeError), false;
      if (f.canonicalError) return broken("content hash", "canonical JSON", f.canonicalError), false;
      if (!equal(f.contentHash, e.contentHash)) return broken("content hash", toHex(f.contentHash), toHex(e.contentHash) + hint), false;
      let hash16;
      try {
        hash16 = daidHash16(e.daid);
      } catch (error) {
        return broken("daid", "a well-formed DAID", `${JSON.stringify(e.daid)} (${error.message})`), false;
      }
      if (hash16 !== f.hash16) return broken("daid hash", f.hash16, hash16 + hint), false;
      if (!equal(e.prevHash, state.hash)) return broken("previous-event hash", toHex(state.hash), toHex(e.prevHash)), false;
      if (f.linkError) return broken("event hash", "a 64-bit version, position and time", f.linkError), false;
      if (!equal(f.link, e.hash)) return broken("event hash", toHex(f.link), toHex(e.hash)), false;
      return true;
    })();
    // Python stops at the first break; here the chain goes on from the event as stored,
    // so that one changed event is reported once rather than breaking all that follow.
    lastPosition = e.position;
    state = { version: e.version, hash: e.hash };
    if (e.position > size) return;
    if (e.proof === null) return broken("inclusion proof", "a proof", "none");
    if (f.proofProblem) return broken("inclusion in the signed log", "valid", f.proofProblem);
    if (chained && !signed) report.proven += 1;
  });
  report.ok = report.problems.length === 0;
  return report;
}
