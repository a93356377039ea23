"""Production settings pass Django's deployment checks; the admin serves every model."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib import admin
from django.urls import reverse


def test_production_settings_pass_check_deploy():
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "HTTPS": "1",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 20 + "production-like-secret-key-with-enough-entropy-1234567890",
        "ALLOWED_HOSTS": "bench.example.cn",
        "FILE_MASTER_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {**os.environ, "HTTPS": "1", "DJANGO_SECRET_KEY": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='cloudbench.settings'; django.setup()",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_a_file_master_key():
    env = {
        **os.environ,
        "HTTPS": "1",
        "DJANGO_SECRET_KEY": "z" * 60,
        "FILE_MASTER_KEY": "",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='cloudbench.settings'; django.setup()",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "FILE_MASTER_KEY" in result.stderr


@pytest.mark.django_db
def test_admin_lists_and_adds_every_model(admin_client):
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert admin_client.get(changelist).status_code == 200, changelist
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert admin_client.get(add).status_code in (200, 403), add
