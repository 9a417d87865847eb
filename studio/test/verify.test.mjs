// The browser's bundle verification (src/verify.js) on a bundle made by the repository's
// Python code (make_fixture.py), untouched and tampered with. Where the repository's
// venv exists, Python's events.bundle.verify judges the same bundles and must agree.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

import { canonicalJson, fromBase64, jcs, parseJson, verifyBundle } from "../src/verify.js";

const fixture = (name) => readFileSync(new URL(`fixtures/${name}`, import.meta.url), "utf8");
const TEXT = fixture("bundle.json");
const KEY = fixture("public_key.txt"); // with its newline, as `collab audit public-key > f` writes it

/** The fixture changed by `change(tree)`, as JSON text (canonical JSON keeps 2.0 a float). */
function tampered(change) {
  const tree = parseJson(TEXT);
  change(tree);
  return canonicalJson(tree);
}

async function otherKey() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  return Buffer.from(await crypto.subtle.exportKey("raw", pair.publicKey)).toString("base64");
}

const CASES = {
  "a changed event field": () => tampered((b) => { b.events[0].data.metadata.text += "!"; }),
  "a changed recorded_at": () => tampered((b) => { b.events[4].recorded_at = b.events[4].recorded_at.replace(/\d\+/, (m) => `${(+m[0] + 1) % 10}+`); }),
  "a dropped proof step": () => tampered((b) => { b.events[3].inclusion_proof.pop(); }),
  "a swapped event order": () => tampered((b) => { [b.events[1], b.events[2]] = [b.events[2], b.events[1]]; }),
  "a changed checkpoint root": () => tampered((b) => { b.checkpoint.root = "00".repeat(32); }),
  "a changed payload": () => tampered((b) => { b.events[1].payload = "AAE="; }),
  "reordered parents": () => tampered((b) => { b.events[2].parents.reverse(); }),
  "a dropped event": () => tampered((b) => { b.events.splice(2, 1); }),
  "a dropped hash scheme": () => tampered((b) => { delete b.events[1].metadata.hash_scheme; }),
  "an unknown hash scheme": () => tampered((b) => { b.events[2].metadata.hash_scheme = "sha3-json"; }),
  "a changed checkpoint origin": () => tampered((b) => { b.checkpoint.origin = "elsewhere.example/log"; }),
  "a checkpoint passed off as signed before signed notes": () => tampered((b) => { b.checkpoint.origin = null; }),
};
// The same log under a checkpoint signed before checkpoints were signed notes (its
// signature covers the JSON statement), with the same key.
const LEGACY = fixture("bundle_legacy.json");

// Other spellings of the same values: Python reads them to the same bytes.
const SAME = {
  "the checkpoint time in another offset": () => tampered((b) => { b.checkpoint.signed_at = "2026-03-01T14:00:00.123456+01:00"; }),
  "a recorded_at in another offset": () => tampered((b) => { b.events[0].recorded_at = "2026-03-01T13:00:00.123487+01:00"; }),
  "an upper-case event id and hashes": () => tampered((b) => { b.events[3].event_id = b.events[3].event_id.toUpperCase(); b.events[3].hash = b.events[3].hash.toUpperCase(); }),
};

test("the good bundle verifies", async () => {
  const report = await verifyBundle(TEXT, KEY);
  assert.deepEqual(report, { ok: true, events: 8, proven: 7, unproven: 1, treeSize: 10, problems: [] });
});

test("the bundle as `collab audit export` writes it (non-ASCII as \\u escapes) verifies", async () => {
  const ascii = TEXT.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  assert.notEqual(ascii, TEXT);
  assert.equal((await verifyBundle(ascii, KEY)).ok, true);
});

test("a checkpoint signed as JSON, before signed notes, verifies", async () => {
  const report = await verifyBundle(LEGACY, KEY);
  assert.deepEqual(report, { ok: true, events: 8, proven: 7, unproven: 1, treeSize: 10, problems: [] });
  assert.equal(parseJson(LEGACY).checkpoint.origin, null);
});

test("the key as base64 of its raw bytes verifies too", async () => {
  const raw = Buffer.from(fromBase64(parseJson(TEXT).public_key)).toString("base64");
  assert.equal((await verifyBundle(TEXT, raw)).ok, true);
  const forged = KEY.replace(/\+[0-9a-f]{8}\+/, "+00000000+");
  assert.match((await verifyBundle(TEXT, forged)).problems[0], /its key id does not match its key/);
});

test("RFC 8785's own examples come out as the RFC writes them", () => {
  // Appendix B's numbers (IEEE 754 bits and canonical text) and section 3.2.2's example
  const numbers = [["0000000000000000", "0"], ["8000000000000000", "0"], ["0000000000000001", "5e-324"],
    ["7fefffffffffffff", "1.7976931348623157e+308"], ["4430000000000000", "295147905179352830000"],
    ["44b52d02c7e14af6", "1e+23"], ["444b1ae4d6e2ef50", "1e+21"], ["3eb0c6f7a0b5ed8c", "9.999999999999997e-7"],
    ["3eb0c6f7a0b5ed8d", "0.000001"], ["41b3de4355555557", "333333333.33333343"],
    ["becbf647612f3696", "-0.0000033333333333333333"], ["43143ff3c1cb0959", "1424953923781206.2"]];
  for (const [bits, want] of numbers) assert.equal(jcs(Buffer.from(bits, "hex").readDoubleBE(0)), want, bits);
  const example = parseJson('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
    + ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}');
  assert.equal(jcs(example), '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    + '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
  assert.equal(jcs({ "\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\ud83d\ude00": 5, "\u0080": 6, "\u00f6": 7 }),
    '{"\\r":2,"1":4,"\u0080":6,"ö":7,"€":1,"😀":5,"\ufb33":3}');
});

test("other spellings of the same values verify", async () => {
  for (const [name, make] of Object.entries(SAME)) assert.equal((await verifyBundle(make(), KEY)).ok, true, name);
});

test("canonical JSON matches Python's byte for byte", () => {
  const value = parseJson('{"b":[1e16,2.0,-0.0,5e-324,1e-7,1.5e300,123,-0,18446744073709551616],'
    + '"a":"\\u00e9\\u0001\\u001f\\u2028\\u007f\\"\\\\/","\\ue000":1,"\\ud83d\\ude00":2,"z":{"y":[true,false,null]}}');
  // events.canonical.canonical_json of json.loads of the same text
  const python = '{"a":"é\\u0001\\u001f\u2028\u007f\\"\\\\/","b":[10000000000000000.0,2.0,0.0,0.'
    + `${"0".repeat(323)}5,0.0000001,15${"0".repeat(299)}.0,123,0,18446744073709551616],`
    + '"z":{"y":[true,false,null]},"\ue000":1,"😀":2}';
  assert.equal(canonicalJson(value), python);
  assert.equal(canonicalJson({ "😀": 2, "\uffff": 1, "\uf900": 0 }), '{"\uf900":0,"\uffff":1,"😀":2}'); // code point order
  assert.throws(() => canonicalJson({ a: "\0" }), /NUL/);
  assert.throws(() => canonicalJson(["\ud800"]), /lone surrogate/);
});

test("a changed event field is reported at its event", async () => {
  const report = await verifyBundle(CASES["a changed event field"](), KEY);
  assert.equal(report.ok, false);
  assert.equal(report.problems.length, 1);
  assert.match(report.problems[0], /^stream project-\S+ position 1: content hash: expected [0-9a-f]{64}, found [0-9a-f]{64}$/);
  const time = await verifyBundle(CASES["a changed recorded_at"](), KEY);
  assert.deepEqual(time.problems.map((p) => p.match(/position (\d+): ([^:]+):/).slice(1)), [["7", "event hash"]]);
});

test("a dropped proof step is reported at its event", async () => {
  const report = await verifyBundle(CASES["a dropped proof step"](), KEY);
  assert.equal(report.ok, false);
  assert.deepEqual(report.problems, [`stream ${parseJson(TEXT).stream_id} position 6: inclusion in the signed log: `
    + "expected valid, found inclusion proof is shorter than the tree is deep"]);
  assert.equal(report.proven, 6);
});

test("a swapped event order is reported", async () => {
  const report = await verifyBundle(CASES["a swapped event order"](), KEY);
  assert.equal(report.ok, false);
  assert.match(report.problems[0], /position 5: stream version: expected 2, found 3$/);
  assert.ok(report.problems.some((p) => /position 3: position order: expected > 5, found 3$/.test(p)), report.problems);
});

test("a changed checkpoint root fails the signature and every proof", async () => {
  const report = await verifyBundle(CASES["a changed checkpoint root"](), KEY);
  assert.equal(report.ok, false);
  assert.match(report.problems[0], /^stream \(checkpoint\) position 10: signature: expected valid, found checkpoint of 10 events: signature does not verify$/);
  assert.equal(report.problems.filter((p) => /inclusion proof leads to a different root/.test(p)).length, 7);
  assert.equal(report.proven, 0);
});

test("a wrong public key is reported", async () => {
  const report = await verifyBundle(TEXT, await otherKey());
  assert.equal(report.ok, false);
  assert.equal(report.proven, 0);
  assert.deepEqual(report.problems.length, 1);
  assert.match(report.problems[0], /^stream \(checkpoint\) position 10: signature: expected valid, found checkpoint of 10 events was signed by key [0-9a-f]{16}, not by the given key [0-9a-f]{16}$/);
  const garbled = await verifyBundle(TEXT, "not a key");
  assert.match(garbled.problems[0], /not an Ed25519 public key/);
});

test("a bundle signed by another key with its id fails the signature itself", async () => {
  const key = await otherKey();
  const id = Buffer.from(await crypto.subtle.digest("SHA-256", Buffer.from(key, "base64"))).toString("hex").slice(0, 16);
  const report = await verifyBundle(tampered((b) => { b.checkpoint.key_id = id; }), key);
  assert.match(report.problems[0], /signature: expected valid, found checkpoint of 10 events: signature does not verify$/);
});

test("a parsed object loses 2.0 and is reported broken, never accepted", async () => {
  const report = await verifyBundle(JSON.parse(TEXT), KEY);
  assert.equal(report.ok, false);
  assert.ok(report.problems.every((p) => /content hash: .*give the bundle as JSON text/.test(p)), report.problems);
});

test("not a bundle", async () => {
  assert.match((await verifyBundle("{", KEY)).problems[0], /^not a collab-audit-bundle\/1 bundle/);
  assert.match((await verifyBundle({ format: "x" }, KEY)).problems[0], /format is "x"/);
  const bare = tampered((b) => { b.checkpoint = null; });
  assert.match((await verifyBundle(bare, KEY)).problems[0], /no signed checkpoint/);
  const broken = tampered((b) => { b.events[2].hash = "zz"; });
  assert.match((await verifyBundle(broken, KEY)).problems[0], /^malformed bundle: event 3: not hex/);
});

const PYTHON = fileURLToPath(new URL("../../.venv/bin/python", import.meta.url));
const JUDGE = `
import json, sys
from events import bundle
from events.checkpoints import parse_public_key
out = []
for case in json.load(sys.stdin):
    report = bundle.verify(json.loads(case["bundle"]), parse_public_key(case["key"]))
    out.append({"ok": report.ok, "first": None if report.ok else str(report.first_break)})
json.dump(out, sys.stdout)
`;

test("Python's events.bundle.verify agrees on every case", async () => {
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing: create the repository's .venv first (.ci/run does)`);
  const cases = [["the good bundle", TEXT, KEY], ["a wrong public key", TEXT, await otherKey()],
    ["a checkpoint signed as JSON", LEGACY, KEY],
    ...Object.entries({ ...CASES, ...SAME }).map(([name, make]) => [name, make(), KEY])];
  const run = spawnSync(PYTHON, ["-c", JUDGE], {
    input: JSON.stringify(cases.map(([, bundle, key]) => ({ bundle, key }))),
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    encoding: "utf8",
  });
  assert.equal(run.status, 0, run.stderr);
  const python = JSON.parse(run.stdout);
  for (const [index, [name, bundle, key]] of cases.entries()) {
    const report = await verifyBundle(bundle, key);
    assert.equal(report.ok, python[index].ok, name);
    if (!report.ok) assert.equal(report.problems[0], python[index].first, name);
  }
});
