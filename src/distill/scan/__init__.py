"""Vulnerability scanning behind one small interface (:class:`~distill.scan.findings.Scanner`).

``findings`` holds what a scan reports; ``trivy`` is today's one implementation (trivy's
own offline database, run as a subprocess). A scanner of distill's own can take its place
by implementing ``Scanner``; nothing above this package names trivy.
"""
