"""distill: minimal, shell-free container images from Debian packages."""

__version__ = "0.1.0"
