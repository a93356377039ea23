"""Supervision (督办) of cases: stage deadlines and their overruns, escalation to the street,
supervision notices, hearing reminders, and the coordinators' statistics.

services.py writes (alerts, notices), selectors.py reads, reminders.py sends hearing reminders,
statistics.py computes the dashboard, exports.py streams CSV/XLSX, periodic.py guards the
Celery beat jobs in mediation_room.tasks."""
