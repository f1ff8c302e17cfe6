/* global require, __filename */
// Injected into dist/cli/commands.cjs by tools/bundle.js: `import.meta.url` of the ES modules
// bundled there, which find files beside them with it (package.json, the native addon).
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the script's own CommonJS require
export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;
