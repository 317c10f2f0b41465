"""The model behind a small interface: chat messages in, text (or a stream of it) out."""
