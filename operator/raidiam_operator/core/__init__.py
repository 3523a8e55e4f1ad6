"""The pure bottom every other package may import: the RaidiamClient API as typed values
(`spec`), which authorization server a client may use (`issuers`: ClusterRaidiamIssuer and the
issuer policy), the rules on a client's settings (`rules`), the one error tree (`errors`), time
(`times`) and the operator's options (`options`).

No I/O and no third-party imports (the import-linter contract in pyproject.toml holds it).
"""
