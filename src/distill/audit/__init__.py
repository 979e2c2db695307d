"""Vulnerability audits of images: the drivers that join what ``analyze`` reads from an
image with what ``scan`` knows of advisories.

``packages`` turns a catalog (or the CycloneDX document ``compare`` hands a scanner) into
the scanner's :class:`~distill.scan.model.ImagePackage` list; ``scan`` gathers advisories
from the DB and the mirror's changelogs and matches them (``distill scan``); ``scanner`` is
distill's own :class:`~distill.scan.findings.Scanner` for ``distill compare``.
"""
