"""The embedded default: an OSCAR-compatible runtime built on local processes.

It lets the suite (and users without a cluster) run OSCAR services on one machine
behind OSCAR's own REST API, so every client written for OSCAR works unchanged. The
pieces are small modules composed by `bridge.local.runtime.LocalRuntime`; see
docs/architecture.md for the contract. Nothing is imported here on purpose: importing
`bridge.local` must stay cheap and must not pull Flask or the S3 client into callers
that only need, say, the Limiter.
"""
