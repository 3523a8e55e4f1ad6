"""OAuth 2.0 client credentials, as Raidiam Connect servers speak it.

Pure modules (`credentials`, `assertion`, `metadata`, `request`, `tokens`) say what is sent and
what an answer means; `client` is the only module that talks HTTP (httpx) to authorization
servers. Nothing here knows about Kubernetes.
"""
