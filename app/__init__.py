"""The composition root: CLI, settings, logging and the Telegram wiring."""
