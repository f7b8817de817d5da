"""A worker that reads its request and never answers (for the worker time-limit test)."""

import sys
import time

if __name__ == "__main__":
    sys.stdin.readline()
    time.sleep(3600)
