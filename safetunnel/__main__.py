"""``python -m safetunnel``."""

from safetunnel.cli import main

if __name__ == "__main__":
    main()
