import os

from celery import Celery

from cloudbench import logs  # noqa: F401  (connects the request id's task signals)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")

app = Celery("cloudbench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Tasks that live in a package below an app (not found by the default per-app discovery).
app.autodiscover_tasks(["mediation_room.agreements"])
