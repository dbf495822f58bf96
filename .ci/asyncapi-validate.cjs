// Parse AsyncAPI documents with the AsyncAPI project's own parser and report.
// Usage: node .ci/asyncapi-validate.cjs FILE...
// Prints {"FILE": {"errors": [...], "warnings": [...]}, ...} as JSON (each diagnostic
// with its code, message and path) and exits 1 when a document has an error, 2 on a
// usage problem. The parser is installed into .ci/node/ by
// .ci/services/asyncapi-parser.sh (or set ASYNCAPI_PARSER_DIR to where it is).
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node asyncapi-validate.cjs FILE...");
    return 2;
  }
  const where = process.env.ASYNCAPI_PARSER_DIR || path.join(__dirname, "node");
  const { Parser, DiagnosticSeverity } = require(
    path.join(where, "node_modules", "@asyncapi", "parser")
  );
  const parser = new Parser();
  const shown = (d) => ({ code: d.code, message: d.message, path: d.path.join(".") });
  const reports = {};
  let failed = false;
  for (const file of files) {
    const { diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"), {
      source: path.resolve(file),
    });
    const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
    const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning);
    reports[file] = { errors: errors.map(shown), warnings: warnings.map(shown) };
    failed = failed || errors.length > 0;
  }
  console.log(JSON.stringify(reports, null, 2));
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error && error.stack ? error.stack : String(error));
    process.exit(2);
  }
);
