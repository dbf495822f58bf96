// Parse an AsyncAPI document with the AsyncAPI project's own parser and report.
// Usage: node .ci/asyncapi-validate.cjs FILE
// Prints {"errors": [...], "warnings": [...]} as JSON (each a diagnostic with its
// code, message and path) and exits 1 when there is an error, 2 on a usage problem.
// The parser is installed into .ci/node/ by .ci/services/asyncapi-parser.sh.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: node asyncapi-validate.cjs FILE");
    return 2;
  }
  const where = process.env.ASYNCAPI_PARSER_DIR || path.join(__dirname, "node");
  const { Parser, DiagnosticSeverity } = require(
    path.join(where, "node_modules", "@asyncapi", "parser")
  );
  const parser = new Parser();
  const { diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"), {
    source: path.resolve(file),
  });
  const shown = (d) => ({ code: d.code, message: d.message, path: d.path.join(".") });
  const report = {
    errors: diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map(shown),
    warnings: diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).map(shown),
  };
  console.log(JSON.stringify(report, null, 2));
  return report.errors.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error && error.stack ? error.stack : String(error));
    process.exit(2);
  }
);
