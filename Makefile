# The two commands of the README:
#   make demo   install everything, load the demo data, serve on http://127.0.0.1:8000 (SQLite, no services)
#   make test   install test dependencies and run the whole suite against PostgreSQL and Redis
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/cloudbench
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
# xdist workers of the parallel group; each takes Redis database 10, 11, ... (at most six)
TEST_WORKERS ?= 2

.PHONY: demo test install install-test system-packages frontend-assets services lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The project's packages go in with uv (from PyPI, into the virtualenv): it installs them in
# seconds where pip takes most of a minute.
$(BIN)/uv: $(BIN)/python
	$(BIN)/pip install --quiet 'uv>=0.9,<1'

install: $(BIN)/uv system-packages
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e .
	$(MAKE) --no-print-directory frontend-assets

install-test: $(BIN)/uv system-packages
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	$(MAKE) --no-print-directory frontend-assets

# Debian packages: CJK fonts for PDFs and the broadcast picture, gettext for the catalogs,
# chromium for the browser tests. Installed only when missing, and only where we may (root).
system-packages:
	@sh .ci/system-packages

frontend-assets:
	@if [ -f frontend/package.json ]; then cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build; fi

demo: install
	@mkdir -p var
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py demo_data
	$(BIN)/python manage.py collectstatic --no-input -v 0
	@echo ""
	@echo "Cloud Bench is at http://$(HOST):$(PORT)/  (text messages the demo 'sends': http://$(HOST):$(PORT)/dev/sms/)"
	DJANGO_DEBUG=1 DEMO_SHOWCASE=1 $(BIN)/python -m cloudbench.webserver -b $(HOST) -p $(PORT) asgi:application

services:
	@sh .ci/services-up

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# pytest runs twice (docs/testing.md): the parallel group on $(TEST_WORKERS) xdist workers, then the
# serial group (browser, fault, media and deploy tests) on two workers, with the tests that time
# media against the clock one at a time. Both always run and either failing fails the target;
# exit 5 is pytest's "nothing selected", as when PYTEST_ARGS names one group's test. Each group
# ends with its slowest tests.
test: install-test services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# against the server's own database, which always exists (the suite's are made by pytest)
	DATABASE_URL=$(dir $(TEST_DATABASE_URL))postgres REDIS_URL=$(TEST_REDIS_URL) CELERY_EAGER=1 \
		$(BIN)/python manage.py makemigrations --check --dry-run
	export DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_EAGER=1; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" --durations=15 $(PYTEST_ARGS); parallel=$$?; \
	$(BIN)/pytest -n 2 --dist loadgroup -m serial --durations=25 $(PYTEST_ARGS); serial=$$?; \
	echo "pytest: parallel group exit $$parallel, serial group exit $$serial"; \
	case "$$parallel$$serial" in 00|05|50) exit 0;; *) exit 1;; esac
