"""Project-wide pytest configuration; fixtures live in tests/support/ modules."""

import os

# Never let a test reach a proxy or anything but loopback.
for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
