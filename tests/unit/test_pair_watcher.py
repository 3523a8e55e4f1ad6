"""The node test's in-pod checker agrees with the test PKI on thumbprints and reads cnf."""

from __future__ import annotations

import jwt

from raidiam_devenv.pki import TestPKI
from tests.e2e.pair_watcher import bound_to, thumbprint


def test_the_checker_computes_the_thumbprint_the_token_is_bound_to(pki: TestPKI) -> None:
    issued = pki.client_certificate("pair-watcher")
    token = jwt.encode({"cnf": {"x5t#S256": issued.x5t_s256}}, "k" * 32, algorithm="HS256")

    assert thumbprint(issued.cert_pem.decode() + pki.ca_pem.decode()) == issued.x5t_s256
    assert bound_to(token) == issued.x5t_s256
    assert bound_to("opaque-token") is None
