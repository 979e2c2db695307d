"""Vulnerability data and reports; reads no images.

``findings`` holds what ``compare`` counts and the :class:`~distill.scan.findings.Scanner`
protocol (``trivy`` is the subprocess implementation; distill's own is
``distill.audit.scanner``). ``model`` is what distill's scanner works with: advisories,
image packages, findings; ``db`` stores advisories, ``changelog`` derives them from the
mirror, ``match`` makes findings; ``result`` is one scan, ``report``/``sarif``/``vex`` write it.
"""
