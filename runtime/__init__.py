"""fsmc runtime."""
