"""Share 127.0.0.1:8000 for ten minutes from Python.

Calling safetunnel.share() is the confirmation: it never prompts. Host-key rules still apply
(pin an SSH host first with `safetunnel hosts trust HOST`), stored secrets are used as for the
CLI, and with no host configured the built-in loopback gateway is used.
"""

from __future__ import annotations

import safetunnel


def main() -> None:
    with safetunnel.share(8000, ttl="10m") as tunnel:
        print(f"remote port {tunnel.remote_port}, expires {tunnel.expires_at}")
        print(f"token (shown once): {tunnel.token}")
        print(
            f"on the SSH host: curl -H 'X-Safetunnel-Token: {tunnel.token}' "
            f"http://127.0.0.1:{tunnel.remote_port}/"
        )
        tunnel.wait()  # returns when the TTL ends (or `safetunnel kill` stops it)


if __name__ == "__main__":
    main()
