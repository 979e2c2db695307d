"""Licence names as packages declare them, mapped to SPDX.

Debian names licences its own way (``GPL-2+``, ``Expat``, ``BSD-3-clause``): a small table plus
a rule for the GNU family map those to SPDX ids, and an exact (case-insensitive) match against
the SPDX licence list takes the rest. Python and npm metadata usually hold SPDX expressions
already; those that parse are kept. Anything else becomes ``LicenseRef-<name>``, which the
writers declare (SPDX ``hasExtractedLicensingInfos``, a CycloneDX licence ``name``): a claim is
never dropped, and never dressed up as an SPDX id it is not.

Nothing heavy is loaded up front: the SPDX ids come from the licence list cyclonedx-python-lib
ships (a 60 kB JSON file, read on first use), and its expression validator, which builds the
whole ScanCode licence index (~50 ms), only for a name made of SPDX ids and operators alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from distill.analyze.components import Component

NOASSERTION = "NOASSERTION"
NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9.]+")


class LicenseKind(StrEnum):
    ID = "id"  # one SPDX licence id
    EXPRESSION = "expression"  # a valid compound SPDX expression
    REF = "ref"  # no SPDX equivalent: a LicenseRef-


# Debian short names (DEP-5 §7.8, lower-cased) whose SPDX id is not the same name in other case.
_DEBIAN_LICENSES = {
    "expat": "MIT",
    "mit/x11": "MIT",
    "apache-2": "Apache-2.0",
    "artistic-2": "Artistic-2.0",
    "bsl-1": "BSL-1.0",
    "cc0": "CC0-1.0",
    "mpl-1.1": "MPL-1.1",
    "mpl-2": "MPL-2.0",
    "psf-2": "PSF-2.0",
    "python-2": "Python-2.0",
    "zope-2.1": "ZPL-2.1",
    "gfdl-niv-1.3": "GFDL-1.3-no-invariants-only",
    "gfdl-niv-1.3+": "GFDL-1.3-no-invariants-or-later",
    "gfdl-1.3+-no-invariant": "GFDL-1.3-no-invariants-or-later",
}
# GNU licences: Debian writes GPL-2 / GPL-2+ / GPL-2.0+, SPDX GPL-2.0-only / GPL-2.0-or-later.
_GNU = re.compile(r"^(A?GPL|LGPL|GFDL)-?(\d+(?:\.\d+)?)(\+|-or-later|-only)?$", re.IGNORECASE)


@cache
def _spdx_ids() -> dict[str, str]:
    """Every id of the SPDX licence list (licences and exceptions), by its lower-case form:
    the list and the lookup ``cyclonedx.spdx.fixup_id`` uses, without importing that module
    (it builds the expression validator as it loads)."""
    from cyclonedx.schema._res import SPDX_JSON

    with open(SPDX_JSON, encoding="utf-8") as schema:
        ids: list[str] = json.load(schema).get("enum", [])
    return {id_.lower(): id_ for id_ in ids}


_OPERATORS = frozenset({"and", "or", "with"})
_EXPRESSION_TOKEN = re.compile(r"[^\s()]+")


def _is_expression(raw: str) -> bool:
    """Whether ``raw`` is a valid SPDX licence expression.

    The validator (license-expression, through cyclonedx-python-lib) is costly to load, so a
    name with a word that is neither an operator nor on the SPDX list (``+`` and
    ``LicenseRef-``/``DocumentRef-`` allowed) is turned down first: no valid SPDX expression
    holds one. Debian's ``GPL-3+ with Bison exception`` ends there; ``MIT OR Apache-2.0`` is
    passed on for its grammar and for which ids are exceptions. (The validator alone also took
    ScanCode's aliases, ``GPL OR MIT`` or ``BSD-2 OR MIT``, which are not SPDX: those are now
    declared as ``LicenseRef-`` names instead of written out as invalid expressions.)
    """
    ids = _spdx_ids()
    for token in _EXPRESSION_TOKEN.findall(raw):
        word = token.lower()
        if word in _OPERATORS or word.removesuffix("+") in ids:
            continue
        if not word.startswith(("licenseref-", "documentref-")):
            return False
    from cyclonedx.spdx import is_expression

    return bool(is_expression(raw))


def spdx_id(name: str) -> str | None:
    """The SPDX licence id a single licence name stands for, or None."""
    key = name.strip()
    mapped = _DEBIAN_LICENSES.get(key.lower())
    if mapped is None:
        gnu = _GNU.match(key)
        if gnu:
            family, number, suffix = gnu.groups()
            number = number if "." in number else f"{number}.0"
            later = suffix in ("+", "-or-later")
            mapped = f"{family.upper()}-{number}-{'or-later' if later else 'only'}"
    return _spdx_ids().get((mapped or key).lower())


def license_ref(name: str) -> str:
    """``LicenseRef-`` plus the name with only the characters SPDX allows there."""
    cleaned = NOT_ID_CHARS.sub("-", name.replace("+", "-plus")).strip("-")
    return f"LicenseRef-{cleaned or 'unnamed'}"


@dataclass(frozen=True, slots=True)
class License:
    raw: str  # as the package wrote it
    spdx: str  # an SPDX id, a valid SPDX expression, or a LicenseRef-
    kind: LicenseKind


def classify(raw: str) -> License:
    """One declared licence: an SPDX id, else a valid SPDX expression, else a reference."""
    single = spdx_id(raw)
    if single:
        return License(raw, single, LicenseKind.ID)
    if " " in raw.strip() and _is_expression(raw):
        return License(raw, raw.strip(), LicenseKind.EXPRESSION)
    return License(raw, license_ref(raw), LicenseKind.REF)


def component_licenses(component: Component) -> list[License]:
    """The distinct licences of a package, in the order it declares them."""
    found: dict[str, License] = {}
    for raw in component.licenses:
        lic = classify(raw)
        found.setdefault(lic.spdx, lic)
    return list(found.values())


def spdx_license_expression(component: Component) -> str:
    """All the licences a package declares, ANDed: each covers some of its files."""
    licenses = component_licenses(component)
    if len(licenses) <= 1:
        return licenses[0].spdx if licenses else NOASSERTION
    return " AND ".join(
        f"({lic.spdx})" if lic.kind is LicenseKind.EXPRESSION else lic.spdx for lic in licenses
    )
