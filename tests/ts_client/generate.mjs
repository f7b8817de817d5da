// Generates TypeScript types from the gateway's OpenAPI document with openapi-typescript.
//   node generate.mjs <spec URL or file> <out.d.ts> [--blob]
// --blob types `format: binary` as Blob (what a browser or Node sends as a multipart file);
// without it the output is exactly what `npx openapi-typescript` writes.
import { writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";
import ts from "typescript";

const [source, out, ...flags] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: node generate.mjs <spec URL or file> <out.d.ts> [--blob]");
  process.exit(2);
}
const BLOB = ts.factory.createTypeReferenceNode(ts.factory.createIdentifier("Blob"));
const location = /^https?:/.test(source) ? new URL(source) : pathToFileURL(source);
const options = flags.includes("--blob")
  ? { transform: (schema) => (schema.format === "binary" ? BLOB : undefined) }
  : {};
const ast = await openapiTS(location, options);
await writeFile(out, astToString(ast));
