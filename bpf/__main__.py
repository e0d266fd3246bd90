"""``python3 -m bpf``: the node agent (same as ``python3 -m bpf.agent``)."""

import sys

from bpf.agent import main

if __name__ == "__main__":
    sys.exit(main())
