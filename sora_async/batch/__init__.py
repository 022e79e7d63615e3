"""The bulk runner's parts, a wing above the public client (the CLI drives it)."""
