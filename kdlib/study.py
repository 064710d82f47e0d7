"""`python -m kdlib.study` is the driver's earlier name, kept so existing commands work: see kdlib.driver."""
import sys

from .driver import main

if __name__ == "__main__":
    sys.exit(main())
