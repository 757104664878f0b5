"""The recipient's side of a share: ``safetunnel connect`` turns a ticket into a local port."""
