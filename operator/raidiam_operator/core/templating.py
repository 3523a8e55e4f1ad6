"""The template language of `spec.tokenSecret.template`: extra Secret keys made from the token. Pure.

Logic-free on purpose: `${field}` puts in one of `FIELDS`, `$$` writes a dollar sign, and
nothing else is special. A template can read no file, no environment, no attribute and no other
object, loops and conditions do not exist, and rendering cannot run away: its output is at most
the template with each field put in. It is Python's `string.Template`, limited to braces so
that every placeholder is visible and the CRD's CEL rule can check the same grammar at admission.

Values are put in as they are, without escaping. A value put in must be printable ASCII without a
quote, backslash, `$` or backtick, which keeps it inside a JSON string, an HTTP header line or a
double-quoted env-file line, and a value outside that is refused rather than written: a stray
quote or newline from a broken server would otherwise change the meaning of the document the
workload reads. Every valid value passes: a scope has none of those characters, and neither has
an access token that fits RFC 6750's Bearer syntax (b64token). The access token is not held to
b64token itself: RFC 6749 allows any printable character in one, and such a token still works
in a JSON document or an env file; a resource server that wants b64token says so itself.

The rendered size is known before anything is rendered (each placeholder times the length of
its value), so a template that multiplies a long token is refused without building its output.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.texts import byte_size

#: the fields a template may use, in the order the docs list them
FIELDS: tuple[str, ...] = (
    "access_token",
    "token_type",
    "expires_at",
    "expires_in",
    "scope",
    "certificate_thumbprint",
    "client_name",
    "client_namespace",
)
#: Secret data keys the operator writes itself; a template may not replace them
RESERVED_KEYS: tuple[str, ...] = (
    "access_token",
    "token_type",
    "expires_at",
    "scope",
    "tls.crt",
    "tls.key",
    "ca.crt",
)
MAX_TEMPLATES = 32
MAX_TEMPLATE_LENGTH = 4096
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# Printable ASCII except the characters that end or escape a quoted string or start a shell
# expansion: a value with one of these could change what the rendered document means.
_SAFE_VALUE = re.compile(r"[\x20-\x7e]*")
_UNSAFE_CHARACTERS = frozenset("\"'\\$`")


class _Template(string.Template):
    # Braces only: `$name` without them is an error, so "${a}b" and "$ab" cannot be confused.
    pattern = r"""
    \$(?:
      (?P<escaped>\$) |
      \{(?P<braced>[_a-z][_a-z0-9]*)\} |
      (?P<named>(?!)) |
      (?P<invalid>)
    )
    """  # type: ignore[assignment]


# string.Template's metaclass compiles the class's pattern
_PLACEHOLDER: re.Pattern[str] = _Template.pattern  # type: ignore[assignment]


def check_templates(templates: Mapping[str, str]) -> None:
    """Refuse a template the operator could never render, naming the key and what to fix.

    The CRD checks the same at admission; this catches objects written before that rule, and
    gives `raidiam-operator check` and unit tests one place to ask.
    """
    if len(templates) > MAX_TEMPLATES:
        raise _invalid(f"spec.tokenSecret.template.data has more than {MAX_TEMPLATES} keys")
    for key, text in templates.items():
        check_key(key)
        if len(text) > MAX_TEMPLATE_LENGTH:
            raise _invalid(
                f"spec.tokenSecret.template.data[{key}] is longer than {MAX_TEMPLATE_LENGTH} "
                "characters"
            )
        template = _Template(text)
        if not template.is_valid():
            raise _invalid(
                f"spec.tokenSecret.template.data[{key}] has a '$' that starts no field: write "
                "${field} to put in a field, or $$ for a dollar sign"
            )
        unknown = [name for name in template.get_identifiers() if name not in FIELDS]
        if unknown:
            raise _invalid(
                f"spec.tokenSecret.template.data[{key}] uses the unknown field "
                f"${{{unknown[0]}}}; the fields are {', '.join(FIELDS)}"
            )


def check_key(key: str) -> None:
    """A Secret data key the API server accepts and the operator does not write itself."""
    if (
        len(key) > 253
        or not _SECRET_KEY.fullmatch(key)
        or key in (".", "..")
        or key.startswith("..")
    ):
        raise _invalid(
            f"spec.tokenSecret.template.data: {key[:80]!r} is not a valid Secret key: use "
            "letters, digits, '-', '_' and '.' (at most 253), not starting with '..'"
        )
    if key in RESERVED_KEYS:
        raise _invalid(
            f"spec.tokenSecret.template.data: the key {key!r} is written by the operator; "
            "choose another name"
        )


def render_templates(
    templates: Mapping[str, str], fields: Mapping[str, str], *, room: int
) -> dict[str, str]:
    """Each template with the token's fields put in, in at most `room` bytes in all.

    Raises `ConfigurationError` naming the field whose value cannot be put in safely (never the
    value itself: it may be the token), or, before any output is built, the key that makes the
    rendered templates larger than `room`.
    """
    for name in _used_fields(templates):
        value = fields[name]
        if not _SAFE_VALUE.fullmatch(value) or _UNSAFE_CHARACTERS.intersection(value):
            raise ConfigurationError(
                f"the token's {name} contains a quote, backslash, '$', backtick or control "
                "character, which no valid value of that field has; the template is not "
                "rendered. Check what the authorization server returns, or remove "
                f"${{{name}}} from spec.tokenSecret.template",
                reason=Reason.TEMPLATE_RENDER_FAILED,
            )
    lengths = {name: len(value.encode()) for name, value in fields.items()}
    sizes = {key: _rendered_size(text, lengths) for key, text in templates.items()}
    total = sum(sizes.values())
    if total > room:
        largest = max(sizes, key=sizes.__getitem__)
        raise ConfigurationError(
            f"spec.tokenSecret.template.data would render to {byte_size(total)}, more than the "
            f"{byte_size(max(room, 0))} left in the token Secret (a Secret holds at most 1 MiB); "
            f"data[{largest}] alone would be {byte_size(sizes[largest])}. Use ${{access_token}} "
            "fewer times, or in fewer keys",
            reason=Reason.TEMPLATE_RENDER_FAILED,
        )
    return {key: _Template(text).substitute(fields) for key, text in templates.items()}


def _rendered_size(text: str, lengths: Mapping[str, int]) -> int:
    """The UTF-8 size of `text` rendered with fields of these `lengths`, without rendering it."""
    size, end = 0, 0
    for match in _PLACEHOLDER.finditer(text):
        size += len(text[end : match.start()].encode())
        name = match.group("braced")
        size += lengths[name] if name is not None else len("$")
        end = match.end()
    return size + len(text[end:].encode())


def _used_fields(templates: Mapping[str, str]) -> set[str]:
    return {name for text in templates.values() for name in _Template(text).get_identifiers()}


def _invalid(message: str) -> ConfigurationError:
    return ConfigurationError(message, reason=Reason.INVALID_TOKEN_SECRET)
