"""The case models and the agreement models: one imports the other, never both ways."""

import ast
from pathlib import Path

import mediation_room

APP = Path(mediation_room.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_agreement_models_do_not_import_the_case_models():
    imported = _imported_modules(APP / "agreements" / "models.py")
    assert not imported & {"..models", "mediation_room.models", ".."}, imported


def test_agreement_models_are_registered_with_the_app():
    from django.apps import apps

    names = {m.__name__ for m in apps.get_app_config("mediation_room").get_models()}
    assert {"Agreement", "AgreementSignature", "FollowUp", "Case", "Party"} <= names
    agreement = apps.get_model("mediation_room", "Agreement")
    assert agreement._meta.get_field("case").related_model is apps.get_model(
        "mediation_room", "Case"
    )
