"""``python -m tinydgm``: see tinydgm/cli.py."""
import sys

from tinydgm.cli import main

if __name__ == "__main__":
    sys.exit(main())
