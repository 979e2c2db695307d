"""Application packaging: a project directory (Python, Node.js, Java, ELF binaries) as
layers on a distroless base (``distill package``, the spec's ``app:`` section)."""
