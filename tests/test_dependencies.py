"""pyproject.toml says what runs here: every requirement is met by what is installed, and the
libraries whose internals we touch are held to the releases the code was written for."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from django.conf import settings
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PROJECT = tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [Requirement(r) for r in PROJECT["dependencies"]] + [
    Requirement(r) for r in PROJECT["optional-dependencies"]["test"]
]
# cloudbench.webserver (daphne's Server, autobahn's frames, Twisted's buffers), the pub/sub
# channel layer, the agreement PDF, and the media plane's aiortc internals.
THROUGH_INTERNALS = {
    "daphne",
    "autobahn",
    "twisted",
    "channels-redis",
    "reportlab",
    "aiortc",
    "aioice",
}


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=str)
def test_the_installed_release_meets_the_requirement(requirement):
    try:
        installed = version(requirement.name)
    except PackageNotFoundError:
        pytest.fail(f"{requirement.name} is not installed")
    assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)


def test_libraries_used_through_their_internals_have_an_upper_bound():
    bounded = {
        r.name.lower()
        for r in REQUIREMENTS
        if any(spec.operator in ("<", "<=", "==", "~=") for spec in r.specifier)
    }
    assert THROUGH_INTERNALS <= bounded, THROUGH_INTERNALS - bounded


@pytest.mark.parametrize(
    "module",
    [
        "cloudbench.internals.autobahn_private",
        "cloudbench.internals.twisted_private",
        "streaming.node.internals.aiortc_private",
        "streaming.node.internals.aioice_private",
    ],
)
def test_each_internals_module_names_the_range_of_its_pin(module):
    import importlib

    checked = importlib.import_module(module)
    pins = {r.name.lower(): str(r.specifier) for r in REQUIREMENTS}
    library = module.rsplit(".", 1)[1].removesuffix("_private")
    assert SpecifierSet(checked.WRITTEN_FOR) == SpecifierSet(pins[library]), (module, pins[library])
