"""SSH side of safetunnel: targets, host keys, the client session and the built-in gateway."""
