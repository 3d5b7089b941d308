// Check that the Azure Blob endpoint at $AZURITE_BLOB_STORAGE_URL (Azurite) honours the
// conditional PUTs atomwrite relies on, with plain HTTP requests signed with the emulator's
// well-known SharedKey (no SDK, no object_store: an independent witness).
//
//   node ci/azurite/check_conditional.mjs CONTAINER
//
// Creates CONTAINER if missing, then: a create-only Put Blob (If-None-Match: *) on an
// existing blob must be refused (409 BlobAlreadyExists, or 412), and a Put Blob with a stale
// If-Match ETag must be refused with 412; the right ETag must update. A server that ignores
// either header would turn a lost race into an overwrite and make the conformance suite's
// create-only and compare-and-swap tests pass vacuously, so this runs on every start and
// exits non-zero loudly.
import crypto from "node:crypto";

const ACCOUNT = process.env.AZURE_STORAGE_ACCOUNT_NAME || "devstoreaccount1";
const KEY =
  process.env.AZURE_STORAGE_ACCOUNT_KEY ||
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const base = (process.env.AZURITE_BLOB_STORAGE_URL || "http://127.0.0.1:10000").replace(/\/$/, "");
const container = process.argv[2];
if (!container) {
  console.error("usage: check_conditional.mjs CONTAINER");
  process.exit(2);
}

async function request(method, path, query, headers, body) {
  const url = new URL(`${base}/${ACCOUNT}/${path}`);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const h = {
    "x-ms-date": new Date().toUTCString(),
    "x-ms-version": "2021-12-02",
    ...headers,
  };
  const len = body ? Buffer.byteLength(body) : 0;
  if (body !== undefined) {
    h["content-length"] = String(len);
    h["content-type"] = "application/octet-stream";
    body = Buffer.from(body);
  }
  const canonHeaders = Object.keys(h)
    .filter((k) => k.startsWith("x-ms-"))
    .sort()
    .map((k) => `${k}:${h[k]}\n`)
    .join("");
  let canonResource = `/${ACCOUNT}${url.pathname}`;
  for (const k of Object.keys(query).sort()) canonResource += `\n${k.toLowerCase()}:${query[k]}`;
  const toSign = [
    method,
    "", // Content-Encoding
    "", // Content-Language
    len ? String(len) : "",
    "", // Content-MD5
    h["content-type"] || "",
    "", // Date (x-ms-date is used)
    "", // If-Modified-Since
    h["if-match"] || "",
    h["if-none-match"] || "",
    "", // If-Unmodified-Since
    "", // Range
  ].join("\n") + "\n" + canonHeaders + canonResource;
  const sig = crypto
    .createHmac("sha256", Buffer.from(KEY, "base64"))
    .update(toSign, "utf8")
    .digest("base64");
  h.authorization = `SharedKey ${ACCOUNT}:${sig}`;
  const r = await fetch(url, { method, headers: h, body, signal: AbortSignal.timeout(30000) });
  const text = await r.text();
  return { status: r.status, etag: r.headers.get("etag"), text };
}

const put = (blob, body, headers = {}) =>
  request("PUT", `${container}/${blob}`, {}, { "x-ms-blob-type": "BlockBlob", ...headers }, body);
const get = (blob) => request("GET", `${container}/${blob}`, {}, {});
const del = (blob) => request("DELETE", `${container}/${blob}`, {}, {});

const failures = [];
const c = await request("PUT", container, { restype: "container" }, {}, "");
if (c.status !== 201 && c.status !== 409) {
  console.error(`check_conditional: creating container ${container} returned ${c.status}: ${c.text}`);
  process.exit(1);
}
const key = "atomwrite-conditional-check/k";
await del(key);
const one = await put(key, "one", { "if-none-match": "*" });
if (one.status !== 201) failures.push(`create-only PUT of a new blob returned ${one.status}: ${one.text}`);
let st = (await put(key, "two", { "if-none-match": "*" })).status;
if (st !== 409 && st !== 412) failures.push(`If-None-Match: * on an existing blob returned ${st}, expected 409`);
let body = (await get(key)).text;
if (body !== "one") failures.push(`create-only PUT overwrote the blob: ${JSON.stringify(body)}`);
st = (await put(key, "three", { "if-match": '"0x8DEADBEEF000000"' })).status;
if (st !== 412) failures.push(`If-Match with a wrong ETag returned ${st}, expected 412`);
const four = await put(key, "four", { "if-match": one.etag });
body = (await get(key)).text;
if (four.status !== 201 || body !== "four")
  failures.push(`If-Match with the right ETag did not update: ${four.status} ${JSON.stringify(body)}`);
st = (await put(key, "five", { "if-match": one.etag })).status;
if (st !== 412) failures.push(`If-Match with a stale ETag returned ${st}, expected 412`);
body = (await get(key)).text;
if (body !== "four") failures.push(`a refused stale If-Match PUT still changed the blob: ${JSON.stringify(body)}`);
st = (await put(key + "-absent", "x", { "if-match": one.etag })).status;
if (st !== 412 && st !== 404) failures.push(`If-Match on a missing blob returned ${st}, expected 412 or 404`);
await del(key);
await del(key + "-absent");

if (failures.length) {
  for (const f of failures) console.error("conditional-put check FAILED:", f);
  process.exit(1);
}
console.log("conditional-put check: If-None-Match and If-Match are honoured by Azurite");
