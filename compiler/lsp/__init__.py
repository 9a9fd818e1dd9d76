"""The language server behind `fsmc lsp`: what a spec means at each position (`index`), the
editor features as pure functions over it (`features`), positions in the client's units
(`positions`), guard and action methods in Python sources (`hooks`), and the pygls wiring
(`server`, the only module that needs the `lsp` extra besides `lsprotocol` types)."""
