-- fsmc for Neovim's built-in LSP client (Neovim 0.7 or later, no plugin needed).
-- Put this file in ~/.config/nvim/plugin/ (or `:luafile` it); set FSMC_COMMAND to use an
-- fsmc from a virtual environment, e.g. FSMC_COMMAND=/path/to/.venv/bin/fsmc.
local fsmc = os.getenv("FSMC_COMMAND") or "fsmc"
local group = vim.api.nvim_create_augroup("fsmc", { clear = true })

vim.api.nvim_create_autocmd({ "BufRead", "BufNewFile" }, {
  group = group, pattern = "*.fsm", command = "setfiletype fsm",
})

vim.api.nvim_create_autocmd("FileType", {
  group = group,
  pattern = "fsm",
  callback = function(args)
    -- One server per buffer is fine: it starts in ~0.3 s and holds only that document.
    local id = vim.lsp.start_client({ name = "fsmc", cmd = { fsmc, "lsp" },
                                      root_dir = vim.fn.getcwd() })
    if id then vim.lsp.buf_attach_client(args.buf, id) end
    vim.bo[args.buf].commentstring = "# %s"
    local map = function(keys, action) vim.keymap.set("n", keys, action, { buffer = args.buf }) end
    map("K", vim.lsp.buf.hover)
    map("gd", vim.lsp.buf.definition)
    map("gr", vim.lsp.buf.references)
    map("<leader>rn", vim.lsp.buf.rename)
    map("<leader>ca", vim.lsp.buf.code_action)
    map("<leader>f", function() vim.lsp.buf.formatting_sync(nil, 5000) end)
  end,
})
