"""ClusterRaidiamIssuer and the issuer policy: which authorization server a RaidiamClient may
make the operator talk to. Pure: the namespace's labels and the issuer object come from the
caller.

A RaidiamClient reaches an authorization server in one of two ways:

- **inline**, `spec.issuer` (and maybe `spec.tokenEndpoint`): whoever may create the client
  chooses the URL. The operator's `--issuer-policy` decides whether that is allowed: `any`
  (the default), `allowlist` (only under an `--allowed-issuer` prefix) or `references-only`
  (never).
- **by reference**, `spec.issuerRef`: the platform team's ClusterRaidiamIssuer supplies the
  issuer, token endpoint, CA bundle and default assertion audience, and says which namespaces
  may use it (`namespaces` and/or `namespaceSelector`, like External Secrets Operator's
  ClusterSecretStore conditions).

Every refusal is a `ConfigurationError` with reason `IssuerNotAllowed` (or `IssuerNotFound`),
raised before any request is built, so a refused client sends nothing at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args
from urllib.parse import SplitResult, unquote, urlsplit

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.rules import (
    AUTH_METHODS,
    AssertionAudience,
    AuthMethod,
    shown_url,
    url_problem,
)
from raidiam_operator.core.spec import CABundleRef, ClientSpec, check_assertion_audience
from raidiam_operator.core.texts import URL_LIMIT, quoted_server_text

ISSUER_PLURAL = "clusterraidiamissuers"
ISSUER_KIND = "ClusterRaidiamIssuer"

IssuerPolicyMode = Literal["any", "allowlist", "references-only"]
ISSUER_POLICY_MODES: tuple[IssuerPolicyMode, ...] = get_args(IssuerPolicyMode)


# -- the ClusterRaidiamIssuer -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One of a label selector's matchExpressions."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        inside = self.key in labels and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside

    def describe(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{self.key} {self.operator}"
        return f"{self.key} {self.operator} ({', '.join(sorted(self.values))})"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    match_labels: Mapping[str, str]
    expressions: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: every label and every expression must hold; {} matches all."""
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.holds(labels) for e in self.expressions
        )

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        parts += [e.describe() for e in self.expressions]
        return ", ".join(parts) or "any labels"


@dataclass(frozen=True, slots=True)
class NamespaceSelection:
    """Who may use an issuer: listed names, a label selector, both (either suffices), or
    neither (everyone)."""

    names: frozenset[str] = frozenset()
    selector: LabelSelector | None = None

    @property
    def everyone(self) -> bool:
        return not self.names and self.selector is None

    def needs_labels(self, namespace: str) -> bool:
        """Whether deciding for `namespace` needs its labels (a read of the Namespace)."""
        return not self.everyone and namespace not in self.names and self.selector is not None

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.everyone or namespace in self.names:
            return True
        return self.selector is not None and self.selector.matches(labels)

    def describe(self) -> str:
        parts = []
        if self.names:
            parts.append("namespaces " + ", ".join(sorted(self.names)))
        if self.selector is not None:
            parts.append(f"namespaces labelled {self.selector.describe()}")
        return " and ".join(parts) or "every namespace"


@dataclass(frozen=True, slots=True)
class ClusterIssuer:
    """A ClusterRaidiamIssuer's spec as typed values."""

    name: str
    issuer: str
    token_endpoint: str | None = None
    #: a ConfigMap in the operator's own namespace (the cluster resource namespace)
    ca_bundle: CABundleRef | None = None
    assertion_audience: AssertionAudience | None = None
    #: None: both methods
    allowed_auth_methods: tuple[AuthMethod, ...] | None = None
    selection: NamespaceSelection = NamespaceSelection()


def parse_issuer(body: Mapping[str, Any], *, cluster_resource_namespace: str) -> ClusterIssuer:
    """Read a ClusterRaidiamIssuer; raise `ConfigurationError` (InvalidIssuer) naming the field.

    The API server has checked the schema already; this keeps the operator honest against
    objects stored before a schema change.
    """
    name = str(body.get("metadata", {}).get("name", ""))
    spec = body.get("spec") or {}
    issuer = spec.get("issuer")
    problem = url_problem(issuer)
    if problem is not None or not isinstance(issuer, str):
        raise _invalid(name, f"spec.issuer {problem}")
    token_endpoint = spec.get("tokenEndpoint") or None
    problem = url_problem(token_endpoint) if token_endpoint is not None else None
    if problem is not None:
        raise _invalid(name, f"spec.tokenEndpoint {problem}")
    ca = spec.get("caBundle")
    audience = spec.get("assertionAudience")
    if audience not in (None, "issuer", "tokenEndpoint"):
        raise _invalid(name, "spec.assertionAudience must be issuer or tokenEndpoint")
    methods = spec.get("allowedAuthMethods")
    if methods is not None:
        unknown = [m for m in methods if m not in AUTH_METHODS]
        if unknown:
            raise _invalid(name, f"spec.allowedAuthMethods: {', '.join(map(str, unknown))} unknown")
    return ClusterIssuer(
        name=name,
        issuer=issuer,
        token_endpoint=token_endpoint,
        ca_bundle=(
            CABundleRef(
                ca["configMapName"], ca.get("key") or "ca.crt", namespace=cluster_resource_namespace
            )
            if ca
            else None
        ),
        assertion_audience=audience,
        allowed_auth_methods=tuple(methods) if methods is not None else None,
        selection=NamespaceSelection(
            names=frozenset(spec.get("namespaces") or ()),
            selector=_selector(spec.get("namespaceSelector"), name),
        ),
    )


def _selector(value: Mapping[str, Any] | None, name: str) -> LabelSelector | None:
    if value is None:
        return None
    expressions = []
    for expression in value.get("matchExpressions") or ():
        operator = expression.get("operator")
        values = frozenset(expression.get("values") or ())
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise _invalid(name, f"spec.namespaceSelector: unknown operator {operator!r}")
        if (operator in ("In", "NotIn")) != bool(values):
            raise _invalid(
                name,
                "spec.namespaceSelector: In and NotIn need values; Exists and DoesNotExist take none",
            )
        expressions.append(LabelRequirement(str(expression.get("key")), operator, values))
    labels = {str(k): str(v) for k, v in (value.get("matchLabels") or {}).items()}
    return LabelSelector(labels, tuple(expressions))


def _invalid(name: str, problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"ClusterRaidiamIssuer {name}: {problem}", reason=Reason.INVALID_ISSUER
    )


# -- the operator's policy for inline issuers -----------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuerPolicy:
    """`--issuer-policy` and its `--allowed-issuer` prefixes."""

    mode: IssuerPolicyMode = "any"
    allowed_prefixes: tuple[str, ...] = ()


def issuer_policy(mode: str, allowed_prefixes: Sequence[str]) -> IssuerPolicy:
    """The policy from the command line; `ConfigurationError` saying what to fix."""
    if mode not in ISSUER_POLICY_MODES:
        raise ConfigurationError(
            f"--issuer-policy {mode!r} is not one of {', '.join(ISSUER_POLICY_MODES)}"
        )
    if mode != "allowlist" and allowed_prefixes:
        raise ConfigurationError(
            "--allowed-issuer applies only with --issuer-policy allowlist; drop it or set the policy"
        )
    if mode == "allowlist" and not allowed_prefixes:
        raise ConfigurationError(
            "--issuer-policy allowlist needs at least one --allowed-issuer PREFIX, "
            "e.g. --allowed-issuer https://auth.sandbox.directory.openbankingbrasil.org.br"
        )
    for prefix in allowed_prefixes:
        parts = _url(prefix)
        if parts is None or parts.query or parts.fragment or _path_segments(parts.path) is None:
            raise ConfigurationError(
                f"--allowed-issuer {prefix!r} must be an https URL with a host and no query, "
                "fragment, user or dot segments, e.g. https://auth.example or "
                "https://auth.example/tenants/"
            )
    return IssuerPolicy(mode, tuple(allowed_prefixes))


#: what a tenant refused by the allowlist can do; the allowlist itself is the platform team's
#: business, and is not shown to tenants
_ALLOWLIST_ADVICE = (
    "Ask the platform team which issuers the operator allows, or use a ClusterRaidiamIssuer in "
    "spec.issuerRef (kubectl get clusterraidiamissuers lists them)"
)


def check_inline_issuer(policy: IssuerPolicy, spec: ClientSpec) -> None:
    """Raise IssuerNotAllowed if a RaidiamClient's own `spec.issuer` (and `spec.tokenEndpoint`,
    which a tenant could otherwise point anywhere, and `spec.caBundle`, which would let the tenant
    say who is an allowed host) breaks the policy."""
    if policy.mode == "any":
        return
    if policy.mode == "references-only":
        raise ConfigurationError(
            "the operator runs with --issuer-policy references-only: a RaidiamClient may not name "
            "its own issuer URL. Set spec.issuerRef to a ClusterRaidiamIssuer instead of "
            "spec.issuer (kubectl get clusterraidiamissuers lists them)",
            reason=Reason.ISSUER_NOT_ALLOWED,
        )
    for field, url in (("spec.issuer", spec.issuer), ("spec.tokenEndpoint", spec.token_endpoint)):
        if url is not None and not any(url_under(url, p) for p in policy.allowed_prefixes):
            raise ConfigurationError(
                f"{field} {shown_url(url)} is not an issuer the operator's policy allows "
                f"(--issuer-policy allowlist). {_ALLOWLIST_ADVICE}",
                reason=Reason.ISSUER_NOT_ALLOWED,
            )
    if spec.ca_bundle is not None:
        raise ConfigurationError(
            "spec.caBundle is not allowed with --issuer-policy allowlist: the operator checks an "
            "allowed issuer's TLS certificate against its own trust store, so that a client "
            "cannot choose whom to trust for it. Remove spec.caBundle; for a server with a "
            "private CA, ask the platform team to add the CA to the operator's trust store or "
            "to set up a ClusterRaidiamIssuer with its CA bundle",
            reason=Reason.ISSUER_NOT_ALLOWED,
        )


def check_discovered_endpoint(
    allowed_prefixes: Sequence[str], *, issuer: str, field: str, url: str
) -> None:
    """Raise DiscoveredEndpointNotAllowed if the endpoint a discovery document names (`field`)
    lies outside the allowlist: the transport certificate and the assertion would go there."""
    if any(url_under(url, prefix) for prefix in allowed_prefixes):
        return
    raise ConfigurationError(
        f"the discovery document of {issuer} gives {field} "
        f"{quoted_server_text(url, limit=URL_LIMIT)}, which is not under an issuer the "
        "operator's policy allows (--issuer-policy allowlist), so no token request was sent to "
        "it. Ask the platform team to allow that endpoint too (--allowed-issuer), or use a "
        "ClusterRaidiamIssuer in spec.issuerRef (kubectl get clusterraidiamissuers lists them)",
        reason=Reason.DISCOVERED_ENDPOINT_NOT_ALLOWED,
    )


def url_under(url: str, prefix: str) -> bool:
    """Whether `url` is `prefix` or below it, compared by host, port and whole path segments.

    Stricter than a string prefix: https://auth.example does not cover
    https://auth.example.evil.test, https://auth.example@evil.test or
    https://auth.example/a/../../admin. A URL is never covered with a query or fragment (a `?` in
    an issuer would shape the request path), nor with a path that a server might read as another
    one: a dot segment in any encoding (`..`, `%2e%2e`, `%252e%252e`, `..;x`), an empty segment,
    an encoded slash or backslash, or a character outside printable ASCII once decoded. What is
    left means the same to every server, so the prefix test on it is the test on what the
    server serves.
    """
    target, base = _url(url), _url(prefix)
    if target is None or base is None or target.query or target.fragment or "?" in url:
        return False
    if (target.hostname, _port(target)) != (base.hostname, _port(base)):
        return False
    segments, base_segments = _path_segments(target.path), _path_segments(base.path)
    if segments is None or base_segments is None:
        return False
    if base_segments and base_segments[-1] == "":  # a prefix ending in / covers what is below
        base_segments = base_segments[:-1]
    return segments[: len(base_segments)] == base_segments


#: percent-encodings undone (%252e: twice) before a path that still holds one is refused
_DECODING_ROUNDS = 3
#: an encoded slash or backslash: a server may decode it before it resolves the path
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)
#: a decoded path: printable ASCII after its leading slash
_URL_PATH = re.compile(r"(/[!-~]*)?")


def _path_segments(path: str) -> list[str] | None:
    """The path's segments, decoded; None for a path a server might resolve differently.

    A trailing slash leaves a last empty segment; an empty path has no segments.
    """
    decoded = path
    for _ in range(_DECODING_ROUNDS):
        if "%" not in decoded:
            break
        if _ENCODED_SEPARATOR.search(decoded):
            return None
        try:
            decoded = unquote(decoded, errors="strict")
        except UnicodeDecodeError:  # an overlong or broken UTF-8 sequence: %c0%ae
            return None
    if "%" in decoded or "\\" in decoded or not _URL_PATH.fullmatch(decoded):
        return None
    segments = decoded.split("/")[1:]
    for index, segment in enumerate(segments):
        bare = segment.split(";", 1)[0]  # matrix parameters: Tomcat reads ..;x as ..
        if bare in (".", "..") or (not segment and index != len(segments) - 1):
            return None
    return segments


def _url(text: str) -> SplitResult | None:
    if url_problem(text) is not None or "#" in text:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if "%" in parts.netloc:
        return None
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or 443


# -- a client and its issuer ----------------------------------------------------------------


def check_issuer_use(
    issuer: ClusterIssuer, spec: ClientSpec, *, namespace: str, labels: Mapping[str, str]
) -> None:
    """Raise IssuerNotAllowed unless `issuer` serves this namespace and this auth method."""
    if not issuer.selection.selects(namespace, labels):
        raise ConfigurationError(
            f"ClusterRaidiamIssuer {issuer.name} may not be used from namespace {namespace}: it "
            f"serves {_shorten(issuer.selection.describe())}. Ask the platform team to add this "
            "namespace to its namespaces or namespaceSelector, or use another issuer",
            reason=Reason.ISSUER_NOT_ALLOWED,
        )
    allowed = issuer.allowed_auth_methods
    if allowed is not None and spec.auth_method not in allowed:
        raise ConfigurationError(
            f"ClusterRaidiamIssuer {issuer.name} allows only "
            f"{', '.join(allowed) or 'no auth method'}, not {spec.auth_method}; change "
            "spec.authMethod or use another issuer",
            reason=Reason.ISSUER_NOT_ALLOWED,
        )


def resolve_spec(spec: ClientSpec, issuer: ClusterIssuer) -> ClientSpec:
    """The client's spec with its issuer's settings in place: what the request is built from.

    The issuer's default audience applies only to clients that sign assertions: a
    tls_client_auth client sends none, so its request (and its token) stays as it is."""
    takes_default = spec.auth_method == "private_key_jwt" and not spec.assertion_audience_explicit
    resolved = replace(
        spec,
        issuer=issuer.issuer,
        token_endpoint=issuer.token_endpoint,
        ca_bundle=issuer.ca_bundle,
        assertion_audience=(
            issuer.assertion_audience or "issuer" if takes_default else spec.assertion_audience
        ),
    )
    check_assertion_audience(resolved)
    return resolved


def effective_spec(
    spec: ClientSpec,
    *,
    namespace: str,
    policy: IssuerPolicy,
    issuer: ClusterIssuer | None,
    labels: Mapping[str, str],
) -> ClientSpec:
    """The spec a request may be built from, or IssuerNotAllowed / IssuerNotFound.

    `issuer` is the ClusterRaidiamIssuer `spec.issuerRef` names (None if there is none by that
    name); `labels` are the namespace's, needed only when `issuer.selection.needs_labels`.
    """
    if spec.issuer_ref is None:
        check_inline_issuer(policy, spec)
        if policy.mode == "allowlist":
            return replace(spec, endpoint_allowlist=policy.allowed_prefixes)
        return spec
    if issuer is None:
        raise ConfigurationError(
            f"ClusterRaidiamIssuer {spec.issuer_ref} (from spec.issuerRef) does not exist; "
            "kubectl get clusterraidiamissuers lists those there are. A token still valid stays "
            "in the Secret",
            reason=Reason.ISSUER_NOT_FOUND,
        )
    check_issuer_use(issuer, spec, namespace=namespace, labels=labels)
    return resolve_spec(spec, issuer)


_MAX_DESCRIPTION = 300


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_DESCRIPTION else text[: _MAX_DESCRIPTION - 1] + "…"
