"""Project-wide pytest configuration; fixtures live in tests/support/ modules.

The fixture modules are registered here once (rather than imported into test modules)
so every test can ask for a running S3 server, local runtime or bridge by name.
"""

import os

# Never let a test reach a proxy or anything but loopback.
for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"

pytest_plugins = ["tests.support.s3", "tests.support.local_runtime", "tests.support.bridge"]
