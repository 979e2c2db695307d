"""The network stack is imported only when something is downloaded: a warm `distill
package` or `distill build` names its downloads but fetches none, and importing requests
and urllib3 was a third of its run (docs/benchmarks.md). Nor do the modules of the package
path load PyYAML, packaging, installer, the email parser or zipfile: a warm run finds what
they would compute remembered in the cache (build.spec_text, package.pymemo)."""

from __future__ import annotations

import subprocess
import sys

from distill.registry.reference import TRANSPORT_PREFIX

HEAVY = (
    "requests",
    "urllib3",
    "difflib",
    "yaml",
    "platformdirs",
    "ctypes",
    "email.parser",
    "packaging",
    "installer",
    "zipfile",
    "importlib.readers",
)


def test_the_package_path_imports_no_network_stack() -> None:
    code = (
        "import sys\n"
        "import distill.cli, distill.cli.package, distill.package.core\n"
        "import distill.package.python, distill.package.pypi, distill.package.node\n"
        "import distill.build.unpack, distill.build.pipeline, distill.debian.lock\n"
        "import distill.build.spec, distill.package.baseimage\n"
        "import distill.transports.oci, distill.transports.containers_storage\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_the_network_stack_still_loads_where_it_is_used() -> None:
    code = "import sys, distill.net.download\nprint('requests' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_the_cli_checks_docker_names_by_the_registry_prefix() -> None:
    # cli.options tests for "docker://" without importing the registry code.
    assert TRANSPORT_PREFIX == "docker://"
