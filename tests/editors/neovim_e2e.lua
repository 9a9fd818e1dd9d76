-- Drives Neovim's built-in LSP client against `fsmc lsp` (run headless by
-- tests/test_editor_neovim.py): open a broken spec, read the diagnostics, apply the quick fix,
-- rename a state, format. Writes what it saw to $FSMC_NVIM_OUT as JSON.
local out = {}
local function fail(message)
  out.error = message
  vim.fn.writefile({vim.fn.json_encode(out)}, os.getenv("FSMC_NVIM_OUT"))
  vim.cmd("qa!")
end
local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n"
end

vim.cmd("edit " .. os.getenv("FSMC_NVIM_SPEC"))
local buf = vim.api.nvim_get_current_buf()
local id = vim.lsp.start_client({
  name = "fsmc", cmd = {os.getenv("FSMC_BIN"), "lsp"}, root_dir = vim.fn.getcwd(),
})
vim.lsp.buf_attach_client(buf, id)
local client = vim.lsp.get_client_by_id(id)

-- 1. Diagnostics of the broken spec.
if not vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 20) then
  fail("no diagnostics")
end
out.diagnostics = {}
for _, d in ipairs(vim.diagnostic.get(buf)) do
  table.insert(out.diagnostics, {line = d.lnum, col = d.col, code = d.code, message = d.message})
end

-- 2. Hover on the initial state.
local hover = client.request_sync("textDocument/hover", {
  textDocument = {uri = vim.uri_from_bufnr(buf)}, position = {line = 1, character = 13},
}, 10000, buf)
out.hover = hover and hover.result and hover.result.contents.value or vim.NIL

-- 3. The quick fix for the did-you-mean hint.
local lsp_diagnostics = vim.lsp.diagnostic.get_line_diagnostics(buf, out.diagnostics[1].line)
local actions = client.request_sync("textDocument/codeAction", {
  textDocument = {uri = vim.uri_from_bufnr(buf)},
  range = lsp_diagnostics[1].range, context = {diagnostics = lsp_diagnostics},
}, 10000, buf)
if not actions or not actions.result or #actions.result == 0 then fail("no code action") end
out.action = actions.result[1].title
vim.lsp.util.apply_workspace_edit(actions.result[1].edit, client.offset_encoding)
out.after_fix = buffer_text(buf)
if not vim.wait(20000, function() return #vim.diagnostic.get(buf) == 0 end, 20) then
  fail("diagnostics stayed after the fix")
end

-- 4. Rename the state `Open` (line 3) to `Ajar`.
local renamed = client.request_sync("textDocument/rename", {
  textDocument = {uri = vim.uri_from_bufnr(buf)}, position = {line = 2, character = 11},
  newName = "Ajar",
}, 10000, buf)
if not renamed or not renamed.result then fail("rename refused") end
vim.lsp.util.apply_workspace_edit(renamed.result, client.offset_encoding)
out.after_rename = buffer_text(buf)

-- 5. Format the buffer (as `fsmc fmt`).
vim.lsp.buf.formatting_sync(nil, 10000)
out.after_format = buffer_text(buf)

vim.fn.writefile({vim.fn.json_encode(out)}, os.getenv("FSMC_NVIM_OUT"))
vim.cmd("qa!")
