// Starts `fsmc lsp` (the command is the `fsmc.command` setting) for .fsm files. The server
// provides everything else: diagnostics, hover, definition, references, rename, completion,
// symbols, formatting, quick fixes and the "Show diagram" code lens.
"use strict";
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function start() {
  const [command, ...args] = vscode.workspace.getConfiguration("fsmc").get("command");
  client = new LanguageClient("fsmc", "fsmc", { command, args }, {
    documentSelector: [{ scheme: "file", language: "fsm" }, { scheme: "untitled", language: "fsm" }],
  });
  return client.start();
}

function activate(context) {
  context.subscriptions.push(vscode.commands.registerCommand("fsmc.restartServer", async () => {
    if (client) await client.stop();
    await start();
  }));
  return start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
